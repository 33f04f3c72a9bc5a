#pragma once
// LlamaModel: the forward pass of Llama-family models (GGUF `llama`, `qwen2`) over a ragged batch with
// paged KV, built from the kernel layer.
//
// Per layer (Touvron et al., "LLaMA", 2023; llama.cpp src/models/llama.cpp, qwen2.cpp):
//   a = RMSNorm(x) ; q, k, v = a Wq^T (+bq), a Wk^T (+bk), a Wv^T (+bv) ; RoPE(q, k) at `positions`
//   append k, v to the pages ; o = PagedAttention(q) (GQA) ; x += o Wo^T
//   a = RMSNorm(x) ; x += (silu(a Wgate^T) * a Wup^T) Wdown^T
// then RMSNorm and the LM head only for the rows asked for.

#include <piecrust/core/error.hpp>
#include <piecrust/exec/buffer.hpp>
#include <piecrust/exec/execution_space.hpp>
#include <piecrust/kernels.hpp>
#include <piecrust/model/detail/llama_cpp_arithmetic.hpp>
#include <piecrust/model/detail/lora_apply.hpp>
#include <piecrust/model/detail/q8_activation_gemm.hpp>
#include <piecrust/model/detail/q8_interleaved_gemm.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/kv_cache.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/model_concept.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace piecrust {

struct LlamaModelOptions {
  /// Round each matmul input to 8-bit blocks first (Q8_1 before Q4_1 weights, Q8_0 before Q8_0 weights),
  /// as llama.cpp's CPU backend does (ggml-cpu type_traits vec_dot_type), so that logits and greedy
  /// tokens agree with it. Off: f32 activations (slightly more accurate, not llama.cpp's numbers).
  bool llama_cpp_activation_rounding = true;
  /// RoPE, attention and SwiGLU with llama.cpp's exact CPU arithmetic (detail/llama_cpp_arithmetic.hpp) instead
  /// of piecrust's kernels: with activation rounding on, logits equal llama.cpp's (AVX2 build, f32 KV
  /// cache, no flash attention) bit for bit, so greedy continuations are the same ids. Slower (a naive
  /// attention loop) and f32 KV only; meant for conformance checks. Off by default.
  bool llama_cpp_attention = false;
  /// With activation rounding on: keep a copy of every Q4_1 / Q8_0 matrix with its rows interleaved in
  /// groups of 8 (detail/q8_interleaved_gemm.hpp), made once at construction. The matmul then runs
  /// 1.5-3x faster on AVX2 for the price of a second copy of those weights in memory; results differ from
  /// the GGUF-order matmul only in float summation order. Ignored with llama_cpp_attention, which needs
  /// llama.cpp's exact summation order.
  bool interleaved_weights = true;
};

template <ExecutionSpace Space, class KvT = float>
  requires KvElement<KvT> && host_accessible_space<Space>
class LlamaModel {
 public:
  using model_type = LlamaModel;
  using kv_cache_type = KvCache<KvT>;

  LlamaModel(LlamaWeights weights, Space space = Space{}, LlamaModelOptions options = {})
      : w_(std::move(weights)), space_(std::move(space)), opt_(options) {
    w_.config.validate();
    if (opt_.llama_cpp_attention && !std::is_same_v<KvT, float>) {
      detail::fail<Unsupported>("LlamaModel: llama_cpp_attention needs an f32 KV cache (KvT = float)");
    }
    if (opt_.llama_cpp_attention && w_.config.rope.llama3.enabled()) {
      detail::fail<Unsupported>("LlamaModel: llama_cpp_attention does not reproduce Llama-3 RoPE scaling (factor = ",
                                w_.config.rope.llama3.factor, ")");
    }
    if (opt_.llama_cpp_activation_rounding && opt_.interleaved_weights && !opt_.llama_cpp_attention) pack_weights();
  }

  [[nodiscard]] LlamaConfig const& config() const noexcept { return w_.config; }
  [[nodiscard]] LlamaWeights const& weights() const noexcept { return w_; }
  [[nodiscard]] Space const& space() const noexcept { return space_; }
  [[nodiscard]] ModelShape shape() const noexcept {
    auto const& c = w_.config;
    return {c.vocab_size, c.num_layers, c.num_kv_heads, c.head_dim, c.context_length};
  }
  [[nodiscard]] kv_cache_type make_kv_cache(std::size_t num_pages, std::size_t page_size) const {
    auto const& c = w_.config;
    return kv_cache_type(c.num_layers, num_pages, page_size, c.num_kv_heads, c.head_dim);
  }

  /// One step. logits: [batch.logit_rows.size()][vocab_size]. Throws (before touching the cache) on a
  /// token id >= vocab, mismatched sizes, a logit row >= num_tokens, or a page table that does not
  /// cover the new tokens.
  void forward(kv_cache_type& kv, ForwardBatch const& batch, std::span<float> logits) {
    auto const& c = w_.config;
    std::size_t const T = batch.tokens.size();
    std::size_t const R = batch.logit_rows.size();
    std::size_t const H = c.num_heads, KH = c.num_kv_heads, D = c.head_dim, E = c.hidden, F = c.ffn;
    check(kv, batch, logits);
    if (T == 0) return;

    // KV slots of the new tokens: request b's token i goes to KV position kv_len - qo_len + i.
    std::vector<std::uint32_t> ids(T), batch_idx(T), kv_pos(T);  // [T] each
    for (std::size_t t = 0; t < T; ++t) ids[t] = static_cast<std::uint32_t>(batch.tokens[t]);
    auto const& pb = batch.pages;
    for (std::size_t b = 0; b < pb.batch_size(); ++b) {
      std::size_t const q = pb.qo_len(b), L = pb.kv_len(b, kv.page_size());
      for (std::size_t i = 0; i < q; ++i) {
        batch_idx[pb.qo_indptr[b] + i] = static_cast<std::uint32_t>(b);
        kv_pos[pb.qo_indptr[b] + i] = static_cast<std::uint32_t>(L - q + i);
      }
    }
    auto const slots = append_kv_slots(kv.page_size(), batch_idx, kv_pos, pb.kv_indptr, pb.kv_indices);  // [T]

    Buffer<float> x(T * E);          // [T][E] residual stream
    Buffer<float> a(T * E);          // [T][E] normalized input of a sublayer
    Buffer<float> q(T * H * D);      // [T][H][D]
    Buffer<float> k(T * KH * D);     // [T][KH][D]
    Buffer<float> v(T * KH * D);     // [T][KH][D]
    Buffer<float> o(T * H * D);      // [T][H][D] attention output
    Buffer<float> lse(T * H);        // [T][H]
    Buffer<float> g(T * F);          // [T][F] gate, then silu(gate) * up
    Buffer<float> u(T * F);          // [T][F]

    embedding(space_, w_.token_embd, ids, x.view(T, E));
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      auto const& L = w_.layers[l];
      rms_norm(space_, x.view(T, E), ShapedView<float const, 1>(L.attn_norm), a.view(T, E), c.rms_eps);
      PackedLayer const* P = packed_.empty() ? nullptr : &packed_[l];
      matmul3(a.view(T, E), {{{&L.wq, P ? &P->wq : nullptr, q.view(T, H * D)},
                              {&L.wk, P ? &P->wk : nullptr, k.view(T, KH * D)},
                              {&L.wv, P ? &P->wv : nullptr, v.view(T, KH * D)}}});
      detail::apply_lora_qkv(batch, l, a.view(T, E), q.view(T, H * D), k.view(T, KH * D), v.view(T, KH * D));
      if (c.qkv_bias) {
        add_bias(q.view(T, H * D), L.bq);
        add_bias(k.view(T, KH * D), L.bk);
        add_bias(v.view(T, KH * D), L.bv);
      }
      if (llama_cpp_attention()) {
        detail::llama_cpp::rope(q.view(T, H, D), batch.positions, c.rope);
        detail::llama_cpp::rope(k.view(T, KH, D), batch.positions, c.rope);
      } else {
        rope(space_, q.view(T, H, D), batch.positions, c.rope);
        rope(space_, k.view(T, KH, D), batch.positions, c.rope);
      }
      append_kv(space_, kv.layer(l), std::as_const(k).view(T, KH, D), std::as_const(v).view(T, KH, D), slots);
      if (llama_cpp_attention()) {
        if constexpr (std::is_same_v<KvT, float>) {  // the constructor refused the option for other KV types
          auto const layer = kv.layer(l);
          PagedKv<float const> const ro{layer.data, layer.num_pages, layer.page_size, layer.num_kv_heads, layer.head_dim};
          detail::llama_cpp::attention([&](std::size_t n, auto&& f) { split(n, f, 1); }, std::as_const(q).view(T, H, D), ro,
                                       batch.pages, batch.attention, o.view(T, H, D));
        }
      } else {
        paged_attention(space_, std::as_const(q).view(T, H, D), kv.layer(l), batch.pages, o.view(T, H, D), lse.view(T, H), {},
                        batch.attention);
      }
      matmul(o.view(T, H * D), L.wo, P ? &P->wo : nullptr, x.view(T, E), 1.0f);
      detail::apply_lora(batch, l, LoraTarget::o, o.view(T, H * D), x.view(T, E));
      rms_norm(space_, x.view(T, E), ShapedView<float const, 1>(L.ffn_norm), a.view(T, E), c.rms_eps);
      matmul3(a.view(T, E), {{{&L.gate, P ? &P->gate : nullptr, g.view(T, F)},
                              {&L.up, P ? &P->up : nullptr, u.view(T, F)},
                              {nullptr, nullptr, {}}}});
      if (llama_cpp_attention()) {
        detail::llama_cpp::swiglu(std::as_const(g).span(), std::as_const(u).span(), g.span());
      } else {
        swiglu(space_, std::as_const(g).view(T, F), std::as_const(u).view(T, F), g.view(T, F));
      }
      matmul(g.view(T, F), L.down, P ? &P->down : nullptr, x.view(T, E), 1.0f);
    }
    if (R == 0) return;
    Buffer<float> rows(R * E);  // [R][E]
    for (std::size_t r = 0; r < R; ++r) {
      std::copy_n(x.data() + std::size_t{batch.logit_rows[r]} * E, E, rows.data() + r * E);
    }
    rms_norm(space_, rows.view(R, E), ShapedView<float const, 1>(w_.output_norm), rows.view(R, E), c.rms_eps);
    matmul(rows.view(R, E), w_.lm_head, packed_.empty() ? nullptr : &packed_lm_head_,
           ShapedView<float, 2>(logits.data(), R, c.vocab_size));
  }

 private:
  void check(kv_cache_type const& kv, ForwardBatch const& batch, std::span<float> logits) const {
    auto const& c = w_.config;
    std::size_t const T = batch.tokens.size();
    if (kv.num_layers() != c.num_layers || kv.num_kv_heads() != c.num_kv_heads || kv.head_dim() != c.head_dim) {
      detail::fail<InvalidArgument>("LlamaModel::forward: kv cache has ", kv.num_layers(), " layers x ", kv.num_kv_heads(),
                                    " heads x ", kv.head_dim(), ", the model needs ", c.num_layers, " x ", c.num_kv_heads,
                                    " x ", c.head_dim);
    }
    if (batch.positions.size() != T) {
      detail::fail<InvalidArgument>("LlamaModel::forward: positions.size() = ", batch.positions.size(), " != tokens.size() = ", T);
    }
    for (std::size_t t = 0; t < T; ++t) {
      if (batch.tokens[t] < 0 || static_cast<std::size_t>(batch.tokens[t]) >= c.vocab_size) {
        detail::fail<OutOfRange>("LlamaModel::forward: tokens[", t, "] = ", batch.tokens[t], " is outside the vocabulary of ",
                                 c.vocab_size);
      }
    }
    for (std::size_t r = 0; r < batch.logit_rows.size(); ++r) {
      if (batch.logit_rows[r] >= T) {
        detail::fail<OutOfRange>("LlamaModel::forward: logit_rows[", r, "] = ", batch.logit_rows[r], " >= num_tokens = ", T);
      }
    }
    if (logits.size() != batch.logit_rows.size() * c.vocab_size) {
      detail::fail<InvalidArgument>("LlamaModel::forward: logits.size() = ", logits.size(), ", expected ",
                                    batch.logit_rows.size(), " x ", c.vocab_size);
    }
    auto const& pb = batch.pages;
    if (pb.qo_indptr.size() != pb.batch_size() + 1 || pb.kv_indptr.size() != pb.batch_size() + 1 ||
        (pb.batch_size() > 0 && pb.qo_indptr.back() != T) || (pb.batch_size() == 0 && T != 0)) {
      detail::fail<InvalidArgument>("LlamaModel::forward: page table sizes (qo_indptr ", pb.qo_indptr.size(), ", kv_indptr ",
                                    pb.kv_indptr.size(), ", kv_last_page_len ", pb.batch_size(), ") do not describe ", T,
                                    " tokens");
    }
    for (std::size_t b = 0; b < pb.batch_size(); ++b) {
      if (pb.qo_indptr[b + 1] < pb.qo_indptr[b] || pb.kv_indptr[b + 1] < pb.kv_indptr[b] ||
          pb.kv_indptr[b + 1] > pb.kv_indices.size()) {
        detail::fail<InvalidArgument>("LlamaModel::forward: request ", b, " has decreasing indptr or kv_indptr past kv_indices");
      }
      if (pb.num_pages(b) > 0 && (pb.kv_last_page_len[b] == 0 || pb.kv_last_page_len[b] > kv.page_size())) {
        detail::fail<InvalidArgument>("LlamaModel::forward: kv_last_page_len[", b, "] = ", pb.kv_last_page_len[b],
                                      " must be in [1, ", kv.page_size(), "]");
      }
      if (pb.kv_len(b, kv.page_size()) < pb.qo_len(b)) {
        detail::fail<InvalidArgument>("LlamaModel::forward: request ", b, " has kv length ", pb.kv_len(b, kv.page_size()),
                                      " < its ", pb.qo_len(b), " new tokens (the page table must cover them)");
      }
    }
  }

  // The interleaved copies of one layer's quantized matrices (an empty InterleavedWeights: not packed).
  struct PackedLayer {
    detail::InterleavedWeights wq, wk, wv, wo, gate, up, down;
  };

  static bool is_q8(WeightMatrix const& w) noexcept {
    return w.type == WeightType::q4_1 || w.type == WeightType::q8_0;
  }

  void pack_weights() {
    auto pack = [](WeightMatrix const& w) { return is_q8(w) ? detail::InterleavedWeights::from(w) : detail::InterleavedWeights{}; };
    packed_.resize(w_.config.num_layers);
    split(w_.config.num_layers, [&](std::size_t begin, std::size_t end) {
      for (std::size_t l = begin; l < end; ++l) {
        auto const& L = w_.layers[l];
        packed_[l] = {pack(L.wq), pack(L.wk), pack(L.wv), pack(L.wo), pack(L.gate), pack(L.up), pack(L.down)};
      }
    }, 1);
    packed_lm_head_ = pack(w_.lm_head);
  }

  // y = beta * y + x W^T. Quantized weights with activation rounding on: llama.cpp's 8-bit activations and
  // integer dot products per block for any number of rows, each row's result independent of the others,
  // on the interleaved copy `p` when there is one (detail/q8_interleaved_gemm.hpp), else in GGUF order
  // (detail/q8_activation_gemm.hpp); otherwise the kernel layer's gemm.
  void matmul(ShapedView<float, 2> x, WeightMatrix const& w, detail::InterleavedWeights const* p, ShapedView<float, 2> y,
              float beta = 0.0f) {
    if (opt_.llama_cpp_activation_rounding && is_q8(w)) {
      qx_.quantize(x.data(), x.extent(0), x.extent(1));
      if (p != nullptr && p->groups > 0) {
        detail::InterleavedGemmOutput const o{p, y.data(), beta};
        detail::q8_interleaved_gemm_many([&](std::size_t n, auto&& f) { split(n, f, 2); }, qx_,
                                         std::span<detail::InterleavedGemmOutput const>(&o, 1));
      } else {
        detail::q8_activation_gemm([&](std::size_t n, auto&& f) { split(n, f); }, qx_, w, y.data(), beta);
      }
      return;
    }
    gemm(space_, ShapedView<float const, 2>(x), w, y, beta);
  }

  // Up to three products of the same input (Q, K, V or gate, up): one parallel loop on the decode path.
  struct Product {
    WeightMatrix const* w;
    detail::InterleavedWeights const* packed;  // nullptr or empty: not interleaved
    ShapedView<float, 2> y;
  };
  void matmul3(ShapedView<float, 2> x, std::array<Product, 3> const& ps) {
    bool fused = opt_.llama_cpp_activation_rounding, interleaved = true;
    for (auto const& p : ps) {
      if (p.w == nullptr) continue;
      fused = fused && is_q8(*p.w);
      interleaved = interleaved && p.packed != nullptr && p.packed->groups > 0;
    }
    if (!fused) {
      for (auto const& p : ps) {
        if (p.w != nullptr) matmul(x, *p.w, p.packed, p.y);
      }
      return;
    }
    qx_.quantize(x.data(), x.extent(0), x.extent(1));
    std::size_t n = 0;
    if (interleaved) {
      std::array<detail::InterleavedGemmOutput, 3> outs{};
      for (auto const& p : ps) {
        if (p.w != nullptr) outs[n++] = {p.packed, p.y.data(), 0.0f};
      }
      detail::q8_interleaved_gemm_many([&](std::size_t len, auto&& f) { split(len, f, 2); }, qx_,
                                       std::span<detail::InterleavedGemmOutput const>(outs.data(), n));
      return;
    }
    std::array<detail::Q8GemmOutput, 3> outs{};
    for (auto const& p : ps) {
      if (p.w != nullptr) outs[n++] = {p.w, p.y.data(), 0.0f};
    }
    detail::q8_activation_gemm_many([&](std::size_t len, auto&& f) { split(len, f); }, qx_,
                                    std::span<detail::Q8GemmOutput const>(outs.data(), n));
  }

  [[nodiscard]] bool llama_cpp_attention() const noexcept { return opt_.llama_cpp_attention; }

  template <class F>
  void split(std::size_t n, F&& f, std::size_t grain = 16) {
    if constexpr (requires { space_.parallel_for(n, f, grain); }) {
      space_.parallel_for(n, f, grain);
    } else {
      f(std::size_t{0}, n);
    }
  }

  static void add_bias(ShapedView<float, 2> y, std::span<float const> bias) {
    for (std::size_t i = 0; i < y.extent(0); ++i) {
      for (std::size_t j = 0; j < y.extent(1); ++j) y(i, j) += bias[j];
    }
  }

  LlamaWeights w_;
  Space space_;
  LlamaModelOptions opt_;
  detail::Q8Activations qx_;  // [rows][cols] 8-bit activations of the current matmul
  std::vector<PackedLayer> packed_;            // [num_layers] interleaved copies; empty when not packing
  detail::InterleavedWeights packed_lm_head_;  // interleaved lm_head (when packing)
};

}  // namespace piecrust
