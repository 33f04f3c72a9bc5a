#pragma once
// LlamaWeights: views of every weight of a Llama-family model, either memory-mapped from a GGUF file
// (tensor names: llama.cpp src/llama-arch.cpp LLM_TENSOR_NAMES) or generated in code (random, for tests).
// Matrices stay in their stored type (the kernels read every supported type directly); norms and biases
// are f32.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/weight_matrix.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/quantize.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piecrust {

struct LlamaLayerWeights {
  std::span<float const> attn_norm;  // [hidden]
  WeightMatrix wq;                   // [num_heads * head_dim][hidden]
  WeightMatrix wk;                   // [num_kv_heads * head_dim][hidden]
  WeightMatrix wv;                   // [num_kv_heads * head_dim][hidden]
  WeightMatrix wo;                   // [hidden][num_heads * head_dim]
  std::span<float const> bq, bk, bv;  // [rows of wq / wk / wv], empty without QKV bias
  std::span<float const> q_norm, k_norm;  // [head_dim] each, empty without QK-norm
  std::span<float const> post_attn_norm;  // [hidden], empty without post-norms
  std::span<float const> ffn_norm;   // [hidden]
  std::span<float const> post_ffn_norm;   // [hidden], empty without post-norms
  WeightMatrix gate;                 // [ffn][hidden]
  WeightMatrix up;                   // [ffn][hidden]
  WeightMatrix down;                 // [hidden][ffn]
};

class LlamaWeights {
 public:
  LlamaConfig config;
  WeightMatrix token_embd;             // [vocab][hidden]
  WeightMatrix lm_head;                // [vocab][hidden] (token_embd when tied)
  std::span<float const> output_norm;  // [hidden]
  std::vector<LlamaLayerWeights> layers;

  // Move-only: the views point into storage this object owns.
  LlamaWeights() = default;
  LlamaWeights(LlamaWeights&&) noexcept = default;
  LlamaWeights& operator=(LlamaWeights&&) noexcept = default;
  LlamaWeights(LlamaWeights const&) = delete;
  LlamaWeights& operator=(LlamaWeights const&) = delete;

  /// Views into `file` (kept alive by the returned object). FormatError for a missing tensor, one whose
  /// shape does not match the config or one of a layer the config lacks, Unsupported for a storage type with
  /// no kernel; every tensor is checked before any of them is read.
  [[nodiscard]] static LlamaWeights from_gguf(std::shared_ptr<GgufFile const> file) {
    LlamaWeights w;
    auto const& f = *file;
    w.config = LlamaConfig::from_gguf(f);
    auto const& c = w.config;
    check_tensors(f, c);
    std::size_t const q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
    w.token_embd = w.matrix(f, "token_embd.weight", c.vocab_size, c.hidden);
    w.lm_head = c.tied_embeddings ? w.token_embd : w.matrix(f, "output.weight", c.vocab_size, c.hidden);
    w.output_norm = w.vector(f, "output_norm.weight", c.hidden);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      auto const n = [&](char const* s) { return "blk." + std::to_string(l) + "." + s; };
      LlamaLayerWeights L;
      L.attn_norm = w.vector(f, n("attn_norm.weight"), c.hidden);
      L.wq = w.matrix(f, n("attn_q.weight"), q_dim, c.hidden);
      L.wk = w.matrix(f, n("attn_k.weight"), kv_dim, c.hidden);
      L.wv = w.matrix(f, n("attn_v.weight"), kv_dim, c.hidden);
      L.wo = w.matrix(f, n("attn_output.weight"), c.hidden, q_dim);
      if (c.qkv_bias) {
        L.bq = w.vector(f, n("attn_q.bias"), q_dim);
        L.bk = w.vector(f, n("attn_k.bias"), kv_dim);
        L.bv = w.vector(f, n("attn_v.bias"), kv_dim);
      }
      if (c.qk_norm) {
        L.q_norm = w.vector(f, n("attn_q_norm.weight"), c.head_dim);
        L.k_norm = w.vector(f, n("attn_k_norm.weight"), c.head_dim);
      }
      if (c.post_norms) {
        L.post_attn_norm = w.vector(f, n("post_attention_norm.weight"), c.hidden);
        L.post_ffn_norm = w.vector(f, n("post_ffw_norm.weight"), c.hidden);
      }
      L.ffn_norm = w.vector(f, n("ffn_norm.weight"), c.hidden);
      L.gate = w.matrix(f, n("ffn_gate.weight"), c.ffn, c.hidden);
      L.up = w.matrix(f, n("ffn_up.weight"), c.ffn, c.hidden);
      L.down = w.matrix(f, n("ffn_down.weight"), c.hidden, c.ffn);
      w.layers.push_back(L);
    }
    w.file_ = std::move(file);
    return w;
  }

  /// A model with random weights (no file): matrices ~ U(-a, a), a = 1/sqrt(fan_in), stored as `type`
  /// (F32, F16, BF16, Q8_0 or Q4_1); norms (QK and post norms too, where the config has them)
  /// ~ 1 + U(-0.1, 0.1); biases ~ U(-0.1, 0.1). Deterministic in seed.
  [[nodiscard]] static LlamaWeights random(LlamaConfig const& c, std::uint64_t seed, GgmlType type = GgmlType::f32) {
    c.validate();
    LlamaWeights w;
    w.config = c;
    std::mt19937_64 rng(seed);
    std::size_t const q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
    auto mat = [&](std::size_t rows, std::size_t cols) {
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      float const a = 1.0f / std::sqrt(static_cast<float>(cols));
      std::vector<float> v(rows * cols);  // [rows][cols]
      for (auto& x : v) x = a * u(rng);
      return w.own_matrix(v, rows, cols, type);
    };
    auto vec = [&](std::size_t n, float center, float spread) {
      std::uniform_real_distribution<float> u(-spread, spread);
      std::vector<float> v(n);
      for (auto& x : v) x = center + u(rng);
      return w.own_vector(std::move(v));
    };
    // Embeddings ~ U(-1, 1) so that activations have unit scale, as trained models' do after the first norm.
    {
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      std::vector<float> v(c.vocab_size * c.hidden);  // [vocab][hidden]
      for (auto& x : v) x = u(rng);
      w.token_embd = w.own_matrix(v, c.vocab_size, c.hidden, type);
    }
    w.lm_head = c.tied_embeddings ? w.token_embd : mat(c.vocab_size, c.hidden);
    w.output_norm = vec(c.hidden, 1.0f, 0.1f);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      LlamaLayerWeights L;
      L.attn_norm = vec(c.hidden, 1.0f, 0.1f);
      L.wq = mat(q_dim, c.hidden);
      L.wk = mat(kv_dim, c.hidden);
      L.wv = mat(kv_dim, c.hidden);
      L.wo = mat(c.hidden, q_dim);
      if (c.qkv_bias) {
        L.bq = vec(q_dim, 0.0f, 0.1f);
        L.bk = vec(kv_dim, 0.0f, 0.1f);
        L.bv = vec(kv_dim, 0.0f, 0.1f);
      }
      if (c.qk_norm) {
        L.q_norm = vec(c.head_dim, 1.0f, 0.1f);
        L.k_norm = vec(c.head_dim, 1.0f, 0.1f);
      }
      if (c.post_norms) {
        L.post_attn_norm = vec(c.hidden, 1.0f, 0.1f);
        L.post_ffn_norm = vec(c.hidden, 1.0f, 0.1f);
      }
      L.ffn_norm = vec(c.hidden, 1.0f, 0.1f);
      L.gate = mat(c.ffn, c.hidden);
      L.up = mat(c.ffn, c.hidden);
      L.down = mat(c.hidden, c.ffn);
      w.layers.push_back(L);
    }
    return w;
  }

  /// Row r of a matrix as f32 (any supported type). Used by the reference forward pass.
  static void dequantize_matrix_row(WeightMatrix const& m, std::size_t r, std::span<float> out) {
    dequantize_row(static_cast<GgmlType>(m.type), {m.row(r), m.row_bytes()}, out);
  }

 private:
  static WeightType weight_type(GgmlType t, std::string const& name, std::string const& source) {
    auto const wt = weight_type_from_id(static_cast<std::uint32_t>(t));
    if (!wt) {
      detail::fail<Unsupported>(source, ": tensor '", name, "' has type ", ggml_type_name(t), " (id ",
                                static_cast<std::uint32_t>(t), "), which piecrust does not support (supported: ",
                                supported_weight_types, ")");
    }
    return *wt;
  }

  // The shape and type of every tensor the config implies, and no tensor of a layer past it, before any read:
  // a token_embd with more rows than the vocabulary, or a projection of another width, would otherwise make
  // the forward pass read bytes that belong to another tensor.
  static void check_tensors(GgufFile const& f, LlamaConfig const& c) {
    std::size_t const q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
    check_matrix(f, "token_embd.weight", c.vocab_size, c.hidden, "[vocab_size][hidden]");
    if (!c.tied_embeddings) check_matrix(f, "output.weight", c.vocab_size, c.hidden, "[vocab_size][hidden]");
    check_vector(f, "output_norm.weight", c.hidden, "[hidden]");
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      auto const n = [&](char const* s) { return "blk." + std::to_string(l) + "." + s; };
      check_vector(f, n("attn_norm.weight"), c.hidden, "[hidden]");
      check_matrix(f, n("attn_q.weight"), q_dim, c.hidden, "[num_heads * head_dim][hidden]");
      check_matrix(f, n("attn_k.weight"), kv_dim, c.hidden, "[num_kv_heads * head_dim][hidden]");
      check_matrix(f, n("attn_v.weight"), kv_dim, c.hidden, "[num_kv_heads * head_dim][hidden]");
      check_matrix(f, n("attn_output.weight"), c.hidden, q_dim, "[hidden][num_heads * head_dim]");
      if (c.qkv_bias) {
        check_vector(f, n("attn_q.bias"), q_dim, "[num_heads * head_dim]");
        check_vector(f, n("attn_k.bias"), kv_dim, "[num_kv_heads * head_dim]");
        check_vector(f, n("attn_v.bias"), kv_dim, "[num_kv_heads * head_dim]");
      }
      if (c.qk_norm) {
        check_vector(f, n("attn_q_norm.weight"), c.head_dim, "[head_dim]");
        check_vector(f, n("attn_k_norm.weight"), c.head_dim, "[head_dim]");
      }
      if (c.post_norms) {
        check_vector(f, n("post_attention_norm.weight"), c.hidden, "[hidden]");
        check_vector(f, n("post_ffw_norm.weight"), c.hidden, "[hidden]");
      }
      check_vector(f, n("ffn_norm.weight"), c.hidden, "[hidden]");
      check_matrix(f, n("ffn_gate.weight"), c.ffn, c.hidden, "[ffn][hidden]");
      check_matrix(f, n("ffn_up.weight"), c.ffn, c.hidden, "[ffn][hidden]");
      check_matrix(f, n("ffn_down.weight"), c.hidden, c.ffn, "[hidden][ffn]");
    }
    for (auto const& t : f.tensors()) {
      std::string_view const name = t.name;
      if (name.substr(0, 4) != "blk.") continue;
      std::size_t layer = 0, digits = 0;
      while (4 + digits < name.size() && digits < 19 && name[4 + digits] >= '0' && name[4 + digits] <= '9') {
        layer = layer * 10 + static_cast<std::size_t>(name[4 + digits] - '0');
        ++digits;
      }
      if (digits > 0 && layer >= c.num_layers) {
        detail::fail<FormatError>(f.source(), ": tensor '", t.name, "' is for layer ", layer, " but block_count = ",
                                  c.num_layers);
      }
    }
  }

  static std::string shape_text(GgufTensorInfo const& t) {
    std::string out = "[";
    for (std::uint32_t d = t.n_dims; d-- > 0;) out += std::to_string(t.dims[d]) + (d == 0 ? "]" : "][");
    return out;
  }

  static void check_matrix(GgufFile const& f, std::string const& name, std::size_t rows, std::size_t cols,
                           char const* meaning) {
    auto const& t = f.tensor(name);
    if (t.dims[0] != cols || t.dims[1] != rows || t.dims[2] != 1 || t.dims[3] != 1) {
      detail::fail<FormatError>(f.source(), ": tensor '", name, "' has shape ", shape_text(t), ", expected [", rows,
                                "][", cols, "] ", meaning);
    }
    (void)weight_type(t.type, name, f.source());
  }

  static void check_vector(GgufFile const& f, std::string const& name, std::size_t n, char const* meaning) {
    auto const& t = f.tensor(name);
    if (t.dims[0] != n || t.num_rows() != 1) {
      detail::fail<FormatError>(f.source(), ": tensor '", name, "' has shape ", shape_text(t), ", expected [", n, "] ",
                                meaning);
    }
    (void)weight_type(t.type, name, f.source());  // the types dequantize_row decodes
  }

  WeightMatrix matrix(GgufFile const& f, std::string const& name, std::size_t rows, std::size_t cols) {
    auto const& t = f.tensor(name);
    if (t.dims[0] != cols || t.dims[1] != rows || t.dims[2] != 1 || t.dims[3] != 1) {
      detail::fail<FormatError>(f.source(), ": tensor '", name, "' has shape [", t.dims[1], "][", t.dims[0],
                                "], expected [", rows, "][", cols, "]");
    }
    WeightMatrix m{weight_type(t.type, name, f.source()), f.tensor_data(t).data(), rows, cols};
    m.validate(name);
    return m;
  }

  std::span<float const> vector(GgufFile const& f, std::string const& name, std::size_t n) {
    auto const& t = f.tensor(name);
    if (t.num_elements() != n) {
      detail::fail<FormatError>(f.source(), ": tensor '", name, "' has ", t.num_elements(), " elements, expected ", n);
    }
    std::vector<float> v(n);
    dequantize_row(t.type, f.tensor_data(t), v);
    return own_vector(std::move(v));
  }

  std::span<float const> own_vector(std::vector<float> v) {
    floats_.push_back(std::move(v));
    return floats_.back();
  }

  WeightMatrix own_matrix(std::vector<float> const& v, std::size_t rows, std::size_t cols, GgmlType type) {
    std::size_t const rb = ggml_row_bytes(type, cols);
    std::vector<std::byte> out(rows * rb);
    for (std::size_t r = 0; r < rows; ++r) {
      quantize_row(type, std::span<float const>(v).subspan(r * cols, cols), std::span<std::byte>(out).subspan(r * rb, rb));
    }
    WeightMatrix m{weight_type(type, "random", "LlamaWeights::random"), out.data(), rows, cols};
    bytes_.push_back(std::move(out));
    return m;
  }

  // Owned storage; moving a std::vector keeps its heap buffer, so the views above stay valid.
  std::shared_ptr<GgufFile const> file_;
  std::vector<std::vector<std::byte>> bytes_;
  std::vector<std::vector<float>> floats_;
};

}  // namespace piecrust
