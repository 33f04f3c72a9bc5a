#pragma once
// LlamaConfig: the hyper-parameters of a decoder of the Llama family (GGUF architectures `llama`, `qwen2`,
// `qwen3` and `gemma3`): one forward pass, whose family differences are the switches below (QK-norm,
// sandwich norms, the FFN activation, the embedding scale, sliding-window layers with their own RoPE base).
// Keys: llama.cpp src/llama-arch.cpp (LLM_KV_*), e.g. "{arch}.attention.head_count_kv"; the per-family
// constants llama.cpp fixes in code (src/llama-model.cpp, load_hparams) are noted where they are set.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/rope.hpp>
#include <piecrust/model/gguf_file.hpp>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <string>

namespace piecrust {

/// The activation of the gated FFN: silu (SwiGLU: Llama, Qwen) or GELU's tanh form (GeGLU: Gemma).
enum class FfnActivation { silu, gelu_tanh };

struct LlamaConfig {
  std::string arch = "llama";
  std::size_t vocab_size = 0;
  std::size_t hidden = 0;        // embedding_length
  std::size_t num_layers = 0;    // block_count
  std::size_t num_heads = 0;     // attention.head_count
  std::size_t num_kv_heads = 0;  // attention.head_count_kv (GQA when < num_heads)
  std::size_t head_dim = 0;      // hidden / num_heads unless attention.key_length says otherwise
  std::size_t ffn = 0;           // feed_forward_length
  std::size_t context_length = 0;
  float rms_eps = 1e-5f;         // attention.layer_norm_rms_epsilon
  RopeParams rope{};             // theta (rope.freq_base), style, rotary_dim, Llama-3 scaling
  bool tied_embeddings = true;   // no output.weight: the LM head is token_embd
  bool qkv_bias = false;         // qwen2: attn_{q,k,v}.bias
  // Family switches; the defaults are Llama's.
  bool qk_norm = false;          // attn_{q,k}_norm: RMSNorm of every query and key head before RoPE (Qwen3, Gemma 3)
  bool post_norms = false;       // post_attention_norm, post_ffw_norm: RMSNorm of each sublayer's output before
                                 // it joins the residual stream (Gemma 2 / 3)
  FfnActivation activation = FfnActivation::silu;
  float embedding_scale = 1.0f;  // the embedding rows times this (Gemma: sqrt(hidden))
  std::size_t sliding_window = 0;          // local layers attend to the last this many KV positions; 0: none
  std::size_t sliding_window_pattern = 0;  // > 0: layer l is global when (l + 1) % pattern == 0 (Gemma 3: 6);
                                           // 0: every layer is local when sliding_window > 0 (Mistral)
  float rope_local_theta = 0.0f;           // RoPE base of local layers (Gemma 3: 10000); 0: rope.theta

  /// Whether layer l attends through the sliding window.
  [[nodiscard]] bool is_local_layer(std::size_t l) const noexcept {
    return sliding_window > 0 && (sliding_window_pattern == 0 || (l + 1) % sliding_window_pattern != 0);
  }
  /// The RoPE of layer l: local layers take their own base (and no frequency scaling, as Gemma 3's).
  [[nodiscard]] RopeParams layer_rope(std::size_t l) const noexcept {
    if (!is_local_layer(l) || rope_local_theta == 0.0f) return rope;
    RopeParams r = rope;
    r.theta = rope_local_theta;
    r.llama3 = {};
    return r;
  }

  /// Throws InvalidArgument naming the first inconsistent field.
  void validate() const {
    auto need = [](bool ok, char const* what, std::size_t v) {
      if (!ok) detail::fail<InvalidArgument>("LlamaConfig: ", what, " = ", v, " is invalid");
    };
    need(vocab_size > 0, "vocab_size", vocab_size);
    need(hidden > 0, "hidden", hidden);
    need(num_layers > 0, "num_layers", num_layers);
    need(num_heads > 0, "num_heads", num_heads);
    need(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "num_kv_heads", num_kv_heads);
    need(head_dim > 0 && head_dim % 2 == 0, "head_dim", head_dim);
    need(ffn > 0, "ffn", ffn);
    need(rope.rotary_dim <= head_dim && rope.rotary_dim % 2 == 0, "rope.rotary_dim", rope.rotary_dim);
    if (!(std::isfinite(embedding_scale) && embedding_scale > 0.0f)) {
      detail::fail<InvalidArgument>("LlamaConfig: embedding_scale = ", embedding_scale, " is invalid");
    }
    if (!(std::isfinite(rope_local_theta) && rope_local_theta >= 0.0f)) {
      detail::fail<InvalidArgument>("LlamaConfig: rope_local_theta = ", rope_local_theta, " is invalid");
    }
    // The weights' sizes are these products: each must fit in 64 bits before anything is sized by it.
    auto fits = [](char const* a_name, std::size_t a, char const* b_name, std::size_t b, std::size_t times = 1) {
      auto const ab = detail::checked_mul(a, b);
      if (!ab || !detail::checked_mul(*ab, times)) {
        detail::fail<InvalidArgument>("LlamaConfig: ", a_name, " = ", a, " x ", b_name, " = ", b,
                                      times == 1 ? std::string() : detail::message(" x hidden = ", times), " overflows 64 bits");
      }
    };
    fits("vocab_size", vocab_size, "hidden", hidden);
    fits("num_heads", num_heads, "head_dim", head_dim, hidden);
    fits("num_kv_heads", num_kv_heads, "head_dim", head_dim, hidden);
    fits("ffn", ffn, "hidden", hidden);
  }

  [[nodiscard]] static LlamaConfig from_gguf(GgufFile const& f) {
    LlamaConfig c;
    c.arch = f.get<std::string>("general.architecture");
    if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3" && c.arch != "gemma3") {
      detail::fail<Unsupported>(f.source(), ": general.architecture = '", c.arch,
                                "' is not supported (llama, qwen2, qwen3, gemma3)");
    }
    auto const key = [&](char const* k) { return c.arch + "." + k; };
    c.hidden = f.get<std::size_t>(key("embedding_length"));
    c.num_layers = f.get<std::size_t>(key("block_count"));
    c.num_heads = f.get<std::size_t>(key("attention.head_count"));
    c.num_kv_heads = f.get_or<std::size_t>(key("attention.head_count_kv"), c.num_heads);
    c.ffn = f.get<std::size_t>(key("feed_forward_length"));
    c.context_length = f.get_or<std::size_t>(key("context_length"), 4096);
    c.rms_eps = f.get_or<float>(key("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (c.num_heads == 0) detail::fail<FormatError>(f.source(), ": ", key("attention.head_count"), " = 0");
    c.head_dim = f.get_or<std::size_t>(key("attention.key_length"), c.hidden / c.num_heads);
    c.rope.theta = f.get_or<float>(key("rope.freq_base"), 10000.0f);
    c.rope.rotary_dim = f.get_or<std::size_t>(key("rope.dimension_count"), c.head_dim);
    if (c.rope.rotary_dim == c.head_dim) c.rope.rotary_dim = 0;
    // llama.cpp llama_model_rope_type: LLM_ARCH_LLAMA -> NORM (adjacent pairs; the converter permuted
    // Q/K), QWEN2 / QWEN3 / GEMMA3 -> NEOX (half split).
    c.rope.style = c.arch == "llama" ? RopeStyle::adjacent_pairs : RopeStyle::half_split;
    c.sliding_window = f.get_or<std::size_t>(key("attention.sliding_window"), 0);
    if (c.arch == "qwen3" || c.arch == "gemma3") c.qk_norm = true;
    if (c.arch == "gemma3") {
      // llama.cpp fixes these for Gemma 3: every 6th layer global (a sliding_window_pattern key, as other
      // architectures have, may say otherwise), local layers' RoPE base 10000, GELU (tanh form) FFN,
      // embeddings times sqrt(n_embd); the converter has already added 1 to the norms.
      c.post_norms = true;
      c.activation = FfnActivation::gelu_tanh;
      c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
      c.sliding_window_pattern = f.get_or<std::size_t>(key("attention.sliding_window_pattern"), 6);
      c.rope_local_theta = f.get_or<float>(key("rope.freq_base_swa"), 10000.0f);
      if (f.contains(key("final_logit_softcapping")) || f.contains(key("attn_logit_softcapping"))) {
        detail::fail<Unsupported>(f.source(), ": logit soft-capping (Gemma 2) is not supported for gemma3");
      }
    }
    auto const scaling = f.get_or<std::string>(key("rope.scaling.type"), "none");
    if (scaling == "llama3" || f.contains(key("rope.scaling.low_freq_factor"))) {
      c.rope.llama3.factor = f.get_or<float>(key("rope.scaling.factor"), 8.0f);
      c.rope.llama3.low_freq_factor = f.get_or<float>(key("rope.scaling.low_freq_factor"), 1.0f);
      c.rope.llama3.high_freq_factor = f.get_or<float>(key("rope.scaling.high_freq_factor"), 4.0f);
      c.rope.llama3.original_max_position =
          f.get_or<std::uint32_t>(key("rope.scaling.original_context_length"), 8192);
    } else if (scaling != "none" && !(scaling == "linear" && f.get_or<float>(key("rope.scaling.factor"), 1.0f) == 1.0f)) {
      detail::fail<Unsupported>(f.source(), ": rope scaling '", scaling, "' is not supported (none, llama3)");
    }
    // The vocabulary comes from the tokenizer when the file has one (as llama.cpp's n_vocab does), so that a
    // token_embd of another row count is refused by the weights' shape check instead of defining the vocabulary.
    if (f.contains("tokenizer.ggml.tokens")) {
      c.vocab_size = f.array("tokenizer.ggml.tokens").values.size();
    } else if (f.contains(key("vocab_size"))) {
      c.vocab_size = f.get<std::size_t>(key("vocab_size"));
    } else {
      c.vocab_size = static_cast<std::size_t>(f.tensor("token_embd.weight").dims[1]);
    }
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.validate();
    if (auto const* rf = f.find_tensor("rope_freqs.weight")) check_rope_freqs(f, *rf, c);  // reads it: validated first
    return c;
  }

 private:
  // Llama-3.1 GGUFs bake the frequency scaling into a tensor of per-pair divisors (llama.cpp
  // LLM_TENSOR_ROPE_FREQS, written by convert_hf_to_gguf.py LlamaModel.generate_extra_tensors). Recognise
  // the Llama-3 scheme by recomputing those divisors; anything else is Unsupported.
  static void check_rope_freqs(GgufFile const& f, GgufTensorInfo const& t, LlamaConfig& c) {
    std::size_t const rot = c.rope.rotary_dim == 0 ? c.head_dim : c.rope.rotary_dim;
    if (t.type != GgmlType::f32 || t.num_elements() != rot / 2) {
      detail::fail<FormatError>(f.source(), ": rope_freqs.weight has type ", ggml_type_name(t.type), " and ",
                                t.num_elements(), " elements; it must be F32 with ", rot / 2, " elements");
    }
    auto const data = f.tensor_data(t);
    if (!c.rope.llama3.enabled()) {
      c.rope.llama3.factor = f.get_or<float>(c.arch + ".rope.scaling.factor", 8.0f);
      if (!(c.rope.llama3.factor > 1.0f)) c.rope.llama3.factor = 8.0f;
    }
    RopeParams plain = c.rope;
    plain.llama3 = {};
    auto const base = detail::rope_inv_freq(plain, rot);
    auto const scaled = detail::rope_inv_freq(c.rope, rot);
    for (std::size_t i = 0; i < rot / 2; ++i) {
      float div;
      std::memcpy(&div, data.data() + 4 * i, 4);
      double const want = base[i] / scaled[i];
      if (std::abs(div - want) > 1e-3 * want) {
        detail::fail<Unsupported>(f.source(), ": rope_freqs.weight[", i, "] = ", div,
                                  " does not match Llama-3 rope scaling (expected ", want, ")");
      }
    }
  }
};

}  // namespace piecrust
