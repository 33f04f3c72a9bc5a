#pragma once
// A tiny Llama with random weights, built in code (no file): the model of fast tests.

#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/llama_weights.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace piecrust {

/// 2 layers, hidden 128, 2 query heads and 1 KV head of dim 64 (GQA), FFN 256, vocabulary 512.
/// head_dim 64 is the smallest size the attention kernels are built for. `family` picks the switches:
///   llama, qwen2 (QKV bias, half-split RoPE), qwen3 (QK-norm, half-split RoPE, untied head),
///   gemma3 (QK-norm, post-norms, GELU, scaled embeddings; layer 0 local with a window of 7 positions and
///   RoPE base 10000, layer 1 global with base 1e6), mistral (llama with a window of 7 on every layer),
///   llama3 (llama with Llama-3 RoPE frequency scaling, factor 8 over an original context of 64).
[[nodiscard]] inline LlamaConfig tiny_llama_config(std::string family = "llama") {
  LlamaConfig c;
  std::string const arch = family == "mistral" || family == "llama3" ? "llama" : family;
  c.arch = arch;
  c.vocab_size = 512;
  c.hidden = 128;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  c.ffn = 256;
  c.context_length = 1024;
  c.rms_eps = 1e-5f;
  c.rope.theta = 10000.0f;
  c.rope.style = arch == "llama" ? RopeStyle::adjacent_pairs : RopeStyle::half_split;
  c.tied_embeddings = arch != "qwen2" && arch != "qwen3";
  c.qkv_bias = arch == "qwen2";
  c.qk_norm = arch == "qwen3" || arch == "gemma3";
  if (arch == "gemma3") {
    c.post_norms = true;
    c.activation = FfnActivation::gelu_tanh;
    c.embedding_scale = std::sqrt(static_cast<float>(c.hidden));
    c.rope.theta = 1e6f;
    c.rope_local_theta = 10000.0f;
    c.sliding_window = 7;
    c.sliding_window_pattern = 2;
  }
  if (family == "mistral") c.sliding_window = 7;
  if (family == "llama3") {  // a short original context, so that the tiny model's positions see the scaling
    c.rope.llama3.factor = 8.0f;
    c.rope.llama3.low_freq_factor = 1.0f;
    c.rope.llama3.high_freq_factor = 4.0f;
    c.rope.llama3.original_max_position = 64;
  }
  return c;
}

[[nodiscard]] inline LlamaWeights tiny_llama_weights(std::uint64_t seed = 1, GgmlType type = GgmlType::f32,
                                                      std::string family = "llama") {
  return LlamaWeights::random(tiny_llama_config(std::move(family)), seed, type);
}

}  // namespace piecrust
