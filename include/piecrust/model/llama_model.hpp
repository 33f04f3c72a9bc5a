#pragma once
// LlamaModel: the forward pass of Llama-family models (GGUF `llama`, `qwen2`, `qwen3`, `gemma3`) over a ragged batch with
// paged KV, written once against the kernel interfaces for every execution space (Host, Cuda, any Kokkos
// space): weights, activations, KV and logits live in the space's memory, and every operation is a
// piecrust:: kernel call on space(). Fused or exact-arithmetic variants are the backends' KernelImpls
// (linear over loaded weights, the llama_cpp_* ops); the generic composition is the fallback.
//
// Per layer (Touvron et al., "LLaMA", 2023; llama.cpp src/models/llama.cpp, qwen2.cpp):
//   a = RMSNorm(x) ; q, k, v = a Wq^T (+bq), a Wk^T (+bk), a Wv^T (+bv) ; RoPE(q, k) at `positions`
//   append k, v to the pages ; o = PagedAttention(q) (GQA) ; x += o Wo^T
//   a = RMSNorm(x) ; x += (silu(a Wgate^T) * a Wup^T) Wdown^T
// then RMSNorm and the LM head only for the rows asked for. The family switches of LlamaConfig change
// this in place (Gemma Team, "Gemma 3 Technical Report", 2025; Qwen Team, "Qwen3", 2025; llama.cpp
// src/models/gemma3.cpp, qwen3.cpp): x starts as the embedding times embedding_scale; QK-norm is an
// RMSNorm of each q and k head before RoPE; with post-norms each sublayer's output is RMSNorm-ed before
// it is added (x += RMSNorm(o Wo^T), x += RMSNorm(FFN)); gelu_tanh replaces silu; local layers attend
// through the sliding window (detail/sliding_window.hpp) with their own RoPE base.

#include <piecrust/core/error.hpp>
#include <piecrust/exec/buffer.hpp>
#include <piecrust/exec/execution_space.hpp>
#include <piecrust/exec/memory_of.hpp>
#include <piecrust/kernels.hpp>
#include <piecrust/kernels/kv_cache.hpp>
#include <piecrust/model/detail/llama_batch_check.hpp>
#include <piecrust/model/detail/lora_apply.hpp>
#include <piecrust/model/detail/sliding_window.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/model_concept.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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
  /// RoPE, attention and SwiGLU with llama.cpp's exact CPU arithmetic (the llama_cpp_* ops of
  /// kernels/llama_cpp_ops.hpp, which the host backend implements) instead of piecrust's kernels: with activation rounding on, logits equal llama.cpp's (AVX2 build, f32 KV
  /// cache, no flash attention) bit for bit, so greedy continuations are the same ids. Slower (a naive
  /// attention loop) and f32 KV only; meant for conformance checks. Off by default.
  bool llama_cpp_attention = false;
  /// With activation rounding on: keep a copy of every block-of-32 matrix (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
  /// IQ4_NL) with its rows interleaved in
  /// groups of 8 (LinearOptions::interleave of the host backend), made once at construction: a faster matmul
  /// for the price of a second copy of those weights in memory, with the same bits as the GGUF-order one.
  bool interleaved_weights = true;
};

/// Sharing: the weights are read-only after construction and every step's state lives in a Workspace, so one
/// model may serve several engines on several threads (each engine holds its own workspace), as long as its
/// space may be used from several threads at once: Host may (its pool runs one parallel_for at a time and
/// queues the others); a Cuda space's stream and scratch arena serve one host thread at a time.
template <ExecutionSpace Space, class KvT = float>
  requires KvElement<KvT>
class LlamaModel {
 public:
  using model_type = LlamaModel;
  using space_type = Space;
  using memory_space = typename Space::memory_space;
  using kv_cache_type = KvCache<KvT, memory_space>;
  using weight_type = LinearWeight<Space>;

 private:
  // Activations of a step, grown to the largest step seen (never shrunk).
  struct Scratch {
    Buffer<float, memory_space> x;     // [T][E] residual stream
    Buffer<float, memory_space> a;     // [T][E] normalized input of a sublayer
    Buffer<float, memory_space> q;     // [T][H][D]
    Buffer<float, memory_space> k;     // [T][KH][D]
    Buffer<float, memory_space> v;     // [T][KH][D]
    Buffer<float, memory_space> o;     // [T][H][D] attention output
    Buffer<float, memory_space> lse;   // [T][H]
    Buffer<float, memory_space> g;     // [T][F] gate, then silu(gate) * up
    Buffer<float, memory_space> u;     // [T][F]
    Buffer<float, memory_space> rows;  // [R][E] the logit rows
  };

 public:
  /// The state of one caller's steps: activations grown to the largest step seen, and the space's copies of
  /// the LoRA adapters in use. One per engine (or per thread); not to be used by two steps at once.
  class Workspace {
   public:
    Workspace() = default;

   private:
    friend class LlamaModel;
    Scratch s_;
    detail::LoraOnSpace<Space> lora_;  // the adapters in use, in the space's memory
  };
  using workspace_type = Workspace;

  /// Loads every weight into the space (kernels/linear.hpp: the host keeps the GGUF bytes of `weights`,
  /// which this object owns; a GPU converts them).
  LlamaModel(LlamaWeights weights, Space space = Space{}, LlamaModelOptions options = {})
      : w_(std::move(weights)), space_(std::move(space)), opt_(options) {
    auto const& c = w_.config;
    c.validate();
    if (opt_.llama_cpp_attention) {
      if constexpr (!has_llama_cpp_arithmetic<Space>) {
        detail::fail<Unsupported>("LlamaModel: llama_cpp_attention needs the llama_cpp_* ops, which space ", Space::name(),
                                  " does not implement");
      }
      if (!std::is_same_v<KvT, float>) {
        detail::fail<Unsupported>("LlamaModel: llama_cpp_attention needs an f32 KV cache (KvT = float)");
      }
      if (c.rope.llama3.enabled()) {
        detail::fail<Unsupported>("LlamaModel: llama_cpp_attention does not reproduce Llama-3 RoPE scaling (factor = ",
                                  c.rope.llama3.factor, ")");
      }
      if ((c.arch != "llama" && c.arch != "qwen2") || c.sliding_window > 0) {
        detail::fail<Unsupported>("LlamaModel: llama_cpp_attention reproduces llama and qwen2 without a sliding window "
                                  "only, not '", c.arch, "' with sliding_window = ", c.sliding_window);
      }
    }
    LinearOptions const lo{opt_.llama_cpp_activation_rounding, opt_.interleaved_weights};
    auto vec = [&](std::span<float const> v) { return to_space(space_, v); };
    lm_head_ = load_linear(space_, w_.lm_head, lo);
    tied_ = w_.lm_head.data == w_.token_embd.data && w_.lm_head.type == w_.token_embd.type;
    if (!tied_) embd_ = load_linear(space_, w_.token_embd, lo);
    output_norm_ = vec(w_.output_norm);
    layers_.reserve(c.num_layers);
    for (auto const& L : w_.layers) {
      Layer d{vec(L.attn_norm), vec(L.ffn_norm), vec(L.bq), vec(L.bk), vec(L.bv),
              vec(L.q_norm), vec(L.k_norm), vec(L.post_attn_norm), vec(L.post_ffn_norm),
              load_linear(space_, L.wq, lo), load_linear(space_, L.wk, lo), load_linear(space_, L.wv, lo),
              load_linear(space_, L.wo, lo), load_linear(space_, L.gate, lo), load_linear(space_, L.up, lo),
              load_linear(space_, L.down, lo)};
      layers_.push_back(std::move(d));
    }
    space_.fence();
  }

  [[nodiscard]] LlamaConfig const& config() const noexcept { return w_.config; }
  [[nodiscard]] LlamaWeights const& weights() const noexcept { return w_; }
  [[nodiscard]] Space const& space() const noexcept { return space_; }
  [[nodiscard]] ModelShape shape() const noexcept {
    auto const& c = w_.config;
    ModelShape s{c.vocab_size, c.num_layers, c.num_kv_heads, c.head_dim, c.context_length, 0, {}};
    if (c.sliding_window > 0 && !llama_cpp_arithmetic()) {  // llama.cpp's attention refuses windows
      s.sliding_window = c.sliding_window;
      for (std::size_t l = 0; l < c.num_layers; ++l) s.window_layers.push_back(c.is_local_layer(l));
    }
    return s;
  }
  /// The KV cache; with window_pages > 0 the local (sliding-window) layers keep their K/V in a window store of
  /// that many pages (ForwardBatch::window addresses it).
  [[nodiscard]] kv_cache_type make_kv_cache(std::size_t num_pages, std::size_t page_size, std::size_t window_pages = 0) const {
    auto const& c = w_.config;
    std::vector<bool> window_layers;  // [num_layers] or empty
    if (window_pages > 0) window_layers = shape().window_layers;
    return kv_cache_type(space_, c.num_layers, num_pages, page_size, c.num_kv_heads, c.head_dim, std::move(window_layers),
                         window_pages);
  }

  /// A fresh workspace for forward(kv, batch, logits, workspace); its buffers grow on first use.
  [[nodiscard]] Workspace make_workspace() const { return Workspace{}; }

  /// One step in the model's own workspace: concurrent calls take turns (a lock); an engine uses its own
  /// workspace instead (the overload below), so engines never wait on each other here.
  void forward(kv_cache_type& kv, ForwardBatch const& batch, std::span<float> logits) {
    std::lock_guard const lock(own_->mutex);
    std::as_const(*this).forward(kv, batch, logits, own_->workspace);
  }

  /// One step. logits: [batch.logit_rows.size()][vocab_size], the space's memory. Throws (before touching
  /// the cache) on a token id >= vocab, mismatched sizes, a logit row >= num_tokens, a page table that does
  /// not cover the new tokens, or adapters that do not fit the model. Reads only the weights and writes only
  /// `kv`, `logits` and `ws`: steps with different workspaces may run at once on several threads.
  void forward(kv_cache_type& kv, ForwardBatch const& batch, std::span<float> logits, Workspace& ws) const {
    auto const& c = w_.config;
    std::size_t const T = batch.tokens.size();
    std::size_t const R = batch.logit_rows.size();
    std::size_t const H = c.num_heads, KH = c.num_kv_heads, D = c.head_dim, E = c.hidden, F = c.ffn;
    detail::check_llama_batch("LlamaModel::forward", c, kv.num_layers(), kv.num_kv_heads(), kv.head_dim(), kv.page_size(),
                              batch, logits.size(), kv.num_window_pages());
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
    // The local layers' pages: the window store's when the cache has one (same slots, other page ids).
    bool const window_store = kv.num_window_pages() > 0;
    PagedBatch const local_pages =
        window_store ? PagedBatch{pb.qo_indptr, pb.kv_indptr, batch.window.kv_indices, pb.kv_last_page_len} : pb;
    std::vector<std::uint32_t> local_slots;  // [T] or empty
    if (window_store) local_slots = append_kv_slots(kv.page_size(), batch_idx, kv_pos, pb.kv_indptr, batch.window.kv_indices);

    Scratch& s = scratch(ws.s_, T, R);
    detail::LoraOnSpace<Space>& lora = ws.lora_;
    auto x = view(s.x, T, E), a = view(s.a, T, E), g = view(s.g, T, F), u = view(s.u, T, F);
    auto q = view(s.q, T, H * D), k = view(s.k, T, KH * D), v = view(s.v, T, KH * D), o = view(s.o, T, H * D);
    auto cq = ShapedView<float const, 3>(s.q.data(), T, H, D);
    auto ck = ShapedView<float const, 3>(s.k.data(), T, KH, D), cv = ShapedView<float const, 3>(s.v.data(), T, KH, D);

    // Every layer attends with the same tokens, pages and masks: validated and planned once for the step.
    // Sliding-window layers have a plan of their own, over the same rows with positions before each window
    // masked (the trims keep it valid for as long as `attention` is).
    std::optional<AttentionPlan<Space>> attention, local_attention;
    std::vector<TrimPlan> local_trims;  // [batch]
    if (!llama_cpp_arithmetic()) {
      attention.emplace(plan_attention(space_, AttentionProblem{T, H, D, KH, kv.num_pages(), kv.page_size(), batch.pages,
                                                                batch.attention}));
      if (c.sliding_window > 0) {
        local_trims = detail::sliding_window_trims(c.sliding_window, kv.page_size(), batch.pages, batch.attention,
                                                   batch.window.floor);
        std::size_t const local_pool = window_store ? kv.num_window_pages() : kv.num_pages();
        local_attention.emplace(plan_attention(space_, AttentionProblem{T, H, D, KH, local_pool, kv.page_size(),
                                                                        local_pages, AttentionSelection{{}, local_trims}}));
      }
    }

    embedding(space_, embd().matrix, ids, x, c.embedding_scale);
    // With post-norms the normalized input of layer l > 0 comes out of layer l - 1's last residual add.
    bool a_ready = false;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      Layer const& L = layers_[l];
      if (!a_ready) rms_norm(space_, x, norm(L.attn_norm), a, c.rms_eps);
      std::array<LinearProduct<weight_type>, 3> const qkv{{{&L.wq, q, 0.0f}, {&L.wk, k, 0.0f}, {&L.wv, v, 0.0f}}};
      linear_many(space_, a, std::span<LinearProduct<weight_type> const>(qkv));
      detail::apply_lora_qkv(space_, lora, batch, l, a, q, k, v);
      auto q3 = ShapedView<float, 3>(s.q.data(), T, H, D), k3 = ShapedView<float, 3>(s.k.data(), T, KH, D);
      auto o3 = ShapedView<float, 3>(s.o.data(), T, H, D);
      if (llama_cpp_arithmetic()) {
        if (c.qkv_bias) {
          add_bias(space_, q, norm(L.bq));
          add_bias(space_, k, norm(L.bk));
          add_bias(space_, v, norm(L.bv));
        }
        if constexpr (has_llama_cpp_arithmetic<Space> && std::is_same_v<KvT, float>) {  // else refused at construction
          llama_cpp_rope(space_, q3, batch.positions, c.rope);
          llama_cpp_rope(space_, k3, batch.positions, c.rope);
          append_kv(space_, kv.layer(l), ck, cv, slots);
          llama_cpp_attention(space_, cq, std::as_const(kv).layer(l), batch.pages, batch.attention, o3);
        }
      } else {
        if (c.qk_norm) {  // every head of every token: rows of D
          rms_norm(space_, ShapedView<float const, 2>(s.q.data(), T * H, D), norm(L.q_norm),
                   ShapedView<float, 2>(s.q.data(), T * H, D), c.rms_eps);
          rms_norm(space_, ShapedView<float const, 2>(s.k.data(), T * KH, D), norm(L.k_norm),
                   ShapedView<float, 2>(s.k.data(), T * KH, D), c.rms_eps);
        }
        QkvBias const bias = c.qkv_bias ? QkvBias{norm(L.bq), norm(L.bk), norm(L.bv)} : QkvBias{};
        bool const local = c.is_local_layer(l);
        qkv_rope_append(space_, q3, k3, ShapedView<float, 3>(s.v.data(), T, KH, D), bias, batch.positions,
                        c.layer_rope(l), kv.layer(l),
                        kv.is_window_layer(l) ? std::span<std::uint32_t const>(local_slots) : std::span<std::uint32_t const>(slots));
        paged_attention(space_, cq, kv.layer(l), local ? *local_attention : *attention, o3, view(s.lse, T, H));
      }
      if (c.post_norms) {  // a is free once q, k, v are made: it takes the sublayer outputs
        linear(space_, o, L.wo, a, 0.0f);
        detail::apply_lora(space_, lora, batch, l, LoraTarget::o, o, a);
        rms_norm(space_, a, norm(L.post_attn_norm), a, c.rms_eps);
        fused_add_rms_norm(space_, a, x, norm(L.ffn_norm), c.rms_eps);  // x += a; a = RMSNorm(x)
      } else {
        linear(space_, o, L.wo, x, 1.0f);
        detail::apply_lora(space_, lora, batch, l, LoraTarget::o, o, x);
        rms_norm(space_, x, norm(L.ffn_norm), a, c.rms_eps);
      }
      std::array<LinearProduct<weight_type>, 2> const gu{{{&L.gate, g, 0.0f}, {&L.up, u, 0.0f}}};
      linear_many(space_, a, std::span<LinearProduct<weight_type> const>(gu));
      if (llama_cpp_arithmetic()) {
        if constexpr (has_llama_cpp_arithmetic<Space>) llama_cpp_swiglu(space_, g, u, g);
      } else if (c.activation == FfnActivation::gelu_tanh) {
        geglu(space_, g, u, g);
      } else {
        swiglu(space_, g, u, g);
      }
      if (c.post_norms) {
        linear(space_, g, L.down, a, 0.0f);
        rms_norm(space_, a, norm(L.post_ffn_norm), a, c.rms_eps);
        // x += a, and a = the next layer's normalized input (or the output norm's, for the logit rows)
        bool const last = l + 1 == c.num_layers;
        fused_add_rms_norm(space_, a, x, norm(last ? output_norm_ : layers_[l + 1].attn_norm), c.rms_eps);
        a_ready = true;
      } else {
        linear(space_, g, L.down, x, 1.0f);
      }
    }
    if (R == 0) return;
    auto rows = view(s.rows, R, E);
    if (a_ready) {  // a holds RMSNorm(x) with the output norm already
      embedding(space_, WeightMatrix{WeightType::f32, s.a.data(), T, E}, batch.logit_rows, rows);
    } else {
      embedding(space_, WeightMatrix{WeightType::f32, s.x.data(), T, E}, batch.logit_rows, rows);  // gather the logit rows
      rms_norm(space_, rows, norm(output_norm_), rows, c.rms_eps);
    }
    linear(space_, rows, lm_head_, ShapedView<float, 2>(logits.data(), R, c.vocab_size));
  }

 private:
  struct Layer {
    Buffer<float, memory_space> attn_norm, ffn_norm, bq, bk, bv;  // [E], [E], [H D] / [KH D] / [KH D] or empty
    Buffer<float, memory_space> q_norm, k_norm;                   // [D] each, or empty (no QK-norm)
    Buffer<float, memory_space> post_attn_norm, post_ffn_norm;    // [E] each, or empty (no post-norms)
    weight_type wq, wk, wv, wo, gate, up, down;
  };

  Scratch& scratch(Scratch& s, std::size_t T, std::size_t R) const {
    auto const& c = w_.config;
    std::size_t const H = c.num_heads, KH = c.num_kv_heads, D = c.head_dim, E = c.hidden, F = c.ffn;
    auto grow = [&](Buffer<float, memory_space>& b, std::size_t n) {
      if (b.size() < n) b = Buffer<float, memory_space>(std::max(n, 2 * b.size()), memory_of(space_));
    };
    grow(s.x, T * E);
    grow(s.a, T * E);
    grow(s.q, T * H * D);
    grow(s.k, T * KH * D);
    grow(s.v, T * KH * D);
    grow(s.o, T * H * D);
    grow(s.lse, T * H);
    grow(s.g, T * F);
    grow(s.u, T * F);
    grow(s.rows, std::max<std::size_t>(R, 1) * E);
    return s;
  }

  static ShapedView<float, 2> view(Buffer<float, memory_space>& b, std::size_t rows, std::size_t cols) {
    return ShapedView<float, 2>(b.data(), rows, cols);
  }
  static ShapedView<float const, 1> norm(Buffer<float, memory_space> const& b) {
    return ShapedView<float const, 1>(b.data(), b.size());
  }
  [[nodiscard]] weight_type const& embd() const noexcept { return tied_ ? lm_head_ : embd_; }
  [[nodiscard]] bool llama_cpp_arithmetic() const noexcept { return opt_.llama_cpp_attention; }

  LlamaWeights w_;
  Space space_;
  LlamaModelOptions opt_;
  weight_type lm_head_;  // [vocab][E]
  weight_type embd_;     // [vocab][E], unused (empty) when the embeddings are tied to lm_head_
  bool tied_ = false;
  Buffer<float, memory_space> output_norm_;  // [E]
  std::vector<Layer> layers_;
  // The workspace of forward(kv, batch, logits), behind a lock (held by pointer: the model stays movable).
  struct OwnWorkspace {
    std::mutex mutex;
    Workspace workspace;
  };
  std::unique_ptr<OwnWorkspace> own_ = std::make_unique<OwnWorkspace>();
};

}  // namespace piecrust
