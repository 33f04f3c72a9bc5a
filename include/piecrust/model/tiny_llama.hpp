#pragma once
// A tiny Llama with random weights, built in code (no file): the model of fast tests.

#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/llama_weights.hpp>

#include <cstdint>

namespace piecrust {

/// 2 layers, hidden 128, 2 query heads and 1 KV head of dim 64 (GQA), FFN 256, vocabulary 512.
/// head_dim 64 is the smallest size the attention kernels are built for.
[[nodiscard]] inline LlamaConfig tiny_llama_config(std::string arch = "llama") {
  LlamaConfig c;
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
  c.rope.style = arch == "qwen2" ? RopeStyle::half_split : RopeStyle::adjacent_pairs;
  c.tied_embeddings = arch != "qwen2";
  c.qkv_bias = arch == "qwen2";
  return c;
}

[[nodiscard]] inline LlamaWeights tiny_llama_weights(std::uint64_t seed = 1, GgmlType type = GgmlType::f32,
                                                      std::string arch = "llama") {
  return LlamaWeights::random(tiny_llama_config(std::move(arch)), seed, type);
}

}  // namespace piecrust
