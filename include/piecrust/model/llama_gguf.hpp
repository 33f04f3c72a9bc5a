#pragma once
// llama_to_gguf: a Llama-family model as a GGUF file, the way llama.cpp's converter writes the architecture
// (keys and tensor names of src/llama-arch.cpp): what LlamaWeights::from_gguf reads back as the same model.
// For models built in code (tests, tiny random families); the vocabulary is placeholder tokens "t0".."tN"
// unless `tokens` gives the real ones.

#include <piecrust/core/error.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/llama_weights.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace piecrust {

[[nodiscard]] inline std::vector<std::byte> llama_to_gguf(LlamaWeights const& w, std::vector<std::string> tokens = {}) {
  auto const& c = w.config;
  c.validate();
  if (c.arch == "gemma3" && (!c.post_norms || !c.qk_norm || c.activation != FfnActivation::gelu_tanh ||
                             c.embedding_scale != std::sqrt(static_cast<float>(c.hidden)))) {
    detail::fail<InvalidArgument>("llama_to_gguf: a gemma3 config must have Gemma 3's fixed switches (post-norms, "
                                  "QK-norm, gelu_tanh, embedding scale sqrt(hidden)): a file cannot say otherwise");
  }
  GgufWriter g;
  auto const key = [&](char const* k) { return c.arch + "." + k; };
  auto u32 = [](std::size_t v) { return GgufValue{static_cast<std::uint32_t>(v)}; };
  g.set("general.architecture", {c.arch});
  g.set(key("embedding_length"), u32(c.hidden));
  g.set(key("block_count"), u32(c.num_layers));
  g.set(key("attention.head_count"), u32(c.num_heads));
  g.set(key("attention.head_count_kv"), u32(c.num_kv_heads));
  g.set(key("attention.key_length"), u32(c.head_dim));
  g.set(key("attention.value_length"), u32(c.head_dim));
  g.set(key("feed_forward_length"), u32(c.ffn));
  g.set(key("context_length"), u32(c.context_length));
  g.set(key("attention.layer_norm_rms_epsilon"), {c.rms_eps});
  g.set(key("rope.freq_base"), {c.rope.theta});
  if (c.rope.rotary_dim != 0) g.set(key("rope.dimension_count"), u32(c.rope.rotary_dim));
  if (c.rope.llama3.enabled()) {
    g.set(key("rope.scaling.type"), {std::string("llama3")});
    g.set(key("rope.scaling.factor"), {c.rope.llama3.factor});
    g.set(key("rope.scaling.low_freq_factor"), {c.rope.llama3.low_freq_factor});
    g.set(key("rope.scaling.high_freq_factor"), {c.rope.llama3.high_freq_factor});
    g.set(key("rope.scaling.original_context_length"), u32(c.rope.llama3.original_max_position));
  }
  if (c.sliding_window > 0) g.set(key("attention.sliding_window"), u32(c.sliding_window));
  if (c.arch == "gemma3") {
    g.set(key("attention.sliding_window_pattern"), u32(c.sliding_window_pattern));
    if (c.rope_local_theta != 0.0f) g.set(key("rope.freq_base_swa"), {c.rope_local_theta});
  }
  if (tokens.empty()) {
    for (std::size_t i = 0; i < c.vocab_size; ++i) tokens.push_back("t" + std::to_string(i));
  }
  if (tokens.size() != c.vocab_size) {
    detail::fail<InvalidArgument>("llama_to_gguf: tokens.size() = ", tokens.size(), ", expected vocab_size = ", c.vocab_size);
  }
  g.set_string_array("tokenizer.ggml.tokens", tokens);

  auto matrix = [&](std::string name, WeightMatrix const& m) {
    g.add_tensor(std::move(name), {m.cols, m.rows}, static_cast<GgmlType>(m.type),
                 std::span(static_cast<std::byte const*>(m.data), m.size_bytes()));
  };
  auto vector = [&](std::string name, std::span<float const> v) {
    if (!v.empty()) g.add_f32(std::move(name), {v.size()}, v);
  };
  matrix("token_embd.weight", w.token_embd);
  if (!c.tied_embeddings) matrix("output.weight", w.lm_head);
  vector("output_norm.weight", w.output_norm);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    auto const& L = w.layers[l];
    auto const n = [&](char const* s) { return "blk." + std::to_string(l) + "." + s; };
    vector(n("attn_norm.weight"), L.attn_norm);
    matrix(n("attn_q.weight"), L.wq);
    matrix(n("attn_k.weight"), L.wk);
    matrix(n("attn_v.weight"), L.wv);
    matrix(n("attn_output.weight"), L.wo);
    vector(n("attn_q.bias"), L.bq);
    vector(n("attn_k.bias"), L.bk);
    vector(n("attn_v.bias"), L.bv);
    vector(n("attn_q_norm.weight"), L.q_norm);
    vector(n("attn_k_norm.weight"), L.k_norm);
    vector(n("post_attention_norm.weight"), L.post_attn_norm);
    vector(n("ffn_norm.weight"), L.ffn_norm);
    vector(n("post_ffw_norm.weight"), L.post_ffn_norm);
    matrix(n("ffn_gate.weight"), L.gate);
    matrix(n("ffn_up.weight"), L.up);
    matrix(n("ffn_down.weight"), L.down);
  }
  return g.bytes();
}

}  // namespace piecrust
