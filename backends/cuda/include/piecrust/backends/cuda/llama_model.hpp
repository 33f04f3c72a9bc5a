#pragma once
// CudaLlamaModel: the Llama-family forward pass (GGUF `llama`, `qwen2`) on a Cuda space, a Model for the
// runtime like the host's LlamaModel (piecrust/model/llama_model.hpp), with weights uploaded once and
// dequantized to bf16, activations in f32 device buffers owned by the model, and the KV cache in device
// memory (CudaKvCache, bf16 by default).
//
// Per layer (the host model's order; Touvron et al., "LLaMA", 2023):
//   a = RMSNorm(x)                                   rms_norm kernel
//   qkv = a [Wq; Wk; Wv]^T                           ONE bf16 GEMM over the concatenated weights (cuBLAS)
//   q = RoPE(q + bq); pages <- RoPE(k + bk), v + bv  ONE fused kernel: bias, RoPE at `positions` and the
//                                                    K/V append (K and V never make a round trip through
//                                                    an f32 buffer: saves 2 x 8 bytes per K/V element)
//   o = PagedAttention(q) (GQA, masks, page-trim)    the attention kernels of backends/cuda/attention
//   x += o Wo^T                                      GEMM with beta = 1 (the residual add is free)
//   a = RMSNorm(x)
//   gu = a [Wgate; Wup]^T                            ONE GEMM over the concatenated weights
//   x += (silu(gate) * up) Wdown^T                   swiglu over the halves of gu, GEMM with beta = 1
// then, for the logit rows only, a gather fused with the final RMSNorm and the LM head GEMM.
//
// Numerics: GEMMs take bf16 weights and bf16-rounded activations with f32 accumulation (CUBLAS_COMPUTE_32F);
// norms, RoPE, softmax and the residual stream are f32. So logits differ from the host model's f32 /
// quantized-dot path by bf16 rounding (expect ~1e-2 relative on logits; greedy tokens usually agree).
//
// CUDA graphs (CudaLlamaOptions::cuda_graphs, on by default, for steps of at most graph_max_tokens
// tokens, i.e. decode and small speculative steps): everything between two attention calls (o-projection,
// residual, norm, MLP, next layer's norm, QKV GEMM and the fused RoPE/append kernel) is a fixed sequence of
// launches over model-owned buffers and the model's own cuBLAS handle (with its own workspace, so cuBLAS
// never allocates while capturing). Each such segment is captured once per (token count, buffer set, KV
// cache) and replayed: num_layers graph launches plus the attention calls per step instead of ~9 launches
// per layer. The attention calls stay outside the graphs: their launcher builds and uploads a plan with a
// pageable copy per call, which stream capture rejects.
//
// Not supported here (Unsupported is thrown): LoRA adapters (ForwardBatch::adapters).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "piecrust/backends/cuda/attention/paged_attention.hpp"
#include "piecrust/backends/cuda/copy.hpp"
#include "piecrust/backends/cuda/detail/llama_kernels.hpp"
#include "piecrust/backends/cuda/detail/logit_rows.hpp"
#include "piecrust/backends/cuda/embedding.hpp"
#include "piecrust/backends/cuda/gemm.hpp"
#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/rms_norm.hpp"
#include "piecrust/backends/cuda/rope.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels/append_kv.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/rope.hpp"
#include "piecrust/model/forward_batch.hpp"
#include "piecrust/model/llama_weights.hpp"
#include "piecrust/model/model_concept.hpp"

#if PIECRUST_DEVICE_COMPILE && !defined(__HIPCC__) && !defined(PIECRUST_GPU_EMULATION)
namespace piecrust {

/// The K/V pools of every layer in device memory, DESIGN.md's layout per layer
/// [num_pages][2][page_size][num_kv_heads][head_dim], zero-filled at creation.
template <class T>
  requires KvElement<T>
class CudaKvCache {
 public:
  CudaKvCache(Cuda const& space, std::size_t num_layers, std::size_t num_pages, std::size_t page_size,
              std::size_t num_kv_heads, std::size_t head_dim)
      : num_pages_(num_pages), page_size_(page_size), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
    if (num_layers == 0 || num_pages == 0 || page_size == 0) {
      detail::fail<InvalidArgument>("CudaKvCache: num_layers = ", num_layers, ", num_pages = ", num_pages,
                                    ", page_size = ", page_size, " (all must be > 0)");
    }
    std::size_t const n = num_pages * 2 * page_size * num_kv_heads * head_dim;
    layers_.reserve(num_layers);
    for (std::size_t l = 0; l < num_layers; ++l) {
      layers_.emplace_back(n, space.memory());  // [pages][2][page][heads][dim]
      gpu::memset_async(layers_.back().data(), 0, n * sizeof(T), space.stream());
    }
  }

  [[nodiscard]] std::size_t num_layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t num_pages() const noexcept { return num_pages_; }
  [[nodiscard]] std::size_t page_size() const noexcept { return page_size_; }
  [[nodiscard]] std::size_t num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] std::size_t head_dim() const noexcept { return head_dim_; }
  [[nodiscard]] PagedKv<T> layer(std::size_t l) {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }
  [[nodiscard]] PagedKv<T const> layer(std::size_t l) const {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }

 private:
  std::size_t num_pages_, page_size_, num_kv_heads_, head_dim_;
  std::vector<Buffer<T, CudaMemory>> layers_;
};


struct CudaLlamaOptions {
  /// Capture the segments between attention calls as CUDA graphs for steps of <= graph_max_tokens tokens.
  bool cuda_graphs = true;
  std::size_t graph_max_tokens = 8;
};

/// The Llama forward pass on a Cuda space (see the top of this file). KvT: the KV cache element type.
template <class KvT = BFloat16>
  requires KvElement<KvT>
class CudaLlamaModel {
 public:
  using model_type = CudaLlamaModel;
  using kv_cache_type = CudaKvCache<KvT>;

  /// Uploads and dequantizes every weight (bf16 matrices, f32 norms and biases). `weights` may be
  /// released afterwards.
  CudaLlamaModel(LlamaWeights const& weights, Cuda space, CudaLlamaOptions options = {})
      : c_(weights.config), space_(std::move(space)), opt_(options) {
    c_.validate();
    std::size_t const rotary = c_.rope.rotary_dim == 0 ? c_.head_dim : c_.rope.rotary_dim;
    if (rotary / 2 > gpu::detail::rope_max_half) {
      detail::fail<Unsupported>("CudaLlamaModel: rotary_dim = ", rotary, " exceeds ", 2 * gpu::detail::rope_max_half);
    }
    detail::dispatch_head_dim("CudaLlamaModel", c_.head_dim, [](auto) {});  // attention kernels exist for it
    gpu::DeviceGuard guard(space_.device());
    std::size_t const E = c_.hidden, qd = c_.num_heads * c_.head_dim, kvd = c_.num_kv_heads * c_.head_dim;
    embd_ = upload_bf16({&weights.token_embd});
    if (!c_.tied_embeddings) lm_head_ = upload_bf16({&weights.lm_head});
    output_norm_ = to_device(space_, weights.output_norm);
    for (auto const& L : weights.layers) {
      Layer d;
      d.attn_norm = to_device(space_, L.attn_norm);
      d.ffn_norm = to_device(space_, L.ffn_norm);
      d.wqkv = upload_bf16({&L.wq, &L.wk, &L.wv});  // [qd + 2 kvd][E]
      d.wo = upload_bf16({&L.wo});                  // [E][qd]
      d.wgu = upload_bf16({&L.gate, &L.up});        // [2F][E]
      d.wdown = upload_bf16({&L.down});             // [E][F]
      if (c_.qkv_bias) {
        std::vector<float> b;  // [qd + 2 kvd]
        b.insert(b.end(), L.bq.begin(), L.bq.end());
        b.insert(b.end(), L.bk.begin(), L.bk.end());
        b.insert(b.end(), L.bv.begin(), L.bv.end());
        if (b.size() != qd + 2 * kvd) detail::fail<InvalidArgument>("CudaLlamaModel: qkv bias has ", b.size(), " values");
        d.bqkv = to_device(space_, b);
      }
      layers_.push_back(std::move(d));
    }
    (void)E;
    std::vector<double> const inv = detail::rope_inv_freq(c_.rope, rotary);  // [rotary / 2]
    inv_freq_ = to_device(space_, inv);
    cublasHandle_t h = nullptr;
    gpu::detail::check_cublas(cublasCreate(&h), "cublasCreate");
    blas_.reset(h);
    gpu::detail::check_cublas(cublasSetStream(h, space_.stream()), "cublasSetStream");
    // 32 MiB: cuBLAS's recommended workspace on Hopper (cuBLAS documentation, cublasSetWorkspace).
    blas_workspace_ = Buffer<std::byte, CudaMemory>(std::size_t{32} << 20, space_.memory());
    gpu::detail::check_cublas(cublasSetWorkspace(h, blas_workspace_.data(), blas_workspace_.size()), "cublasSetWorkspace");
    space_.fence();
  }

  [[nodiscard]] LlamaConfig const& config() const noexcept { return c_; }
  [[nodiscard]] Cuda const& space() const noexcept { return space_; }
  [[nodiscard]] ModelShape shape() const noexcept {
    return {c_.vocab_size, c_.num_layers, c_.num_kv_heads, c_.head_dim, c_.context_length};
  }
  [[nodiscard]] kv_cache_type make_kv_cache(std::size_t num_pages, std::size_t page_size) const {
    return kv_cache_type(space_, c_.num_layers, num_pages, page_size, c_.num_kv_heads, c_.head_dim);
  }

  /// One step. logits [batch.logit_rows.size()][vocab]: host memory (the call then waits for the step) or
  /// device memory (asynchronous). Throws before touching the cache on a bad batch (the host model's
  /// checks, plus the slot checks of append_kv).
  void forward(kv_cache_type& kv, ForwardBatch const& batch, std::span<float> logits) {
    std::size_t const T = batch.tokens.size();
    std::size_t const R = batch.logit_rows.size();
    std::size_t const H = c_.num_heads, D = c_.head_dim, E = c_.hidden;
    check(kv, batch, logits);
    if (T == 0) return;
    auto const& pb = batch.pages;
    std::vector<std::uint32_t> batch_idx(T), kv_pos(T);  // [T] each
    for (std::size_t b = 0; b < pb.batch_size(); ++b) {
      std::size_t const q = pb.qo_len(b), L = pb.kv_len(b, kv.page_size());
      for (std::size_t i = 0; i < q; ++i) {
        batch_idx[pb.qo_indptr[b] + i] = static_cast<std::uint32_t>(b);
        kv_pos[pb.qo_indptr[b] + i] = static_cast<std::uint32_t>(L - q + i);
      }
    }
    auto const slots = append_kv_slots(kv.page_size(), batch_idx, kv_pos, pb.kv_indptr, pb.kv_indices);  // [T]
    std::size_t const pool_slots = kv.num_pages() * kv.page_size();
    std::vector<bool> seen(pool_slots, false);
    for (std::size_t t = 0; t < T; ++t) {
      if (slots[t] >= pool_slots) detail::fail<OutOfRange>("CudaLlamaModel::forward: slot ", slots[t], " >= ", pool_slots);
      if (seen[slots[t]]) detail::fail<InvalidArgument>("CudaLlamaModel::forward: two tokens write slot ", slots[t]);
      seen[slots[t]] = true;
    }
    std::vector<std::uint32_t> ids(T);  // [T]
    for (std::size_t t = 0; t < T; ++t) ids[t] = static_cast<std::uint32_t>(batch.tokens[t]);

    gpu::DeviceGuard guard(space_.device());
    reserve(T, R);
    // Step metadata in one copy: [positions T][slots T][logit rows R].
    std::vector<std::uint32_t> meta;  // [2T + R]
    meta.reserve(2 * T + R);
    meta.insert(meta.end(), batch.positions.begin(), batch.positions.end());
    meta.insert(meta.end(), slots.begin(), slots.end());
    meta.insert(meta.end(), batch.logit_rows.begin(), batch.logit_rows.end());
    copy_async(space_, std::span<std::uint32_t>(meta_.data(), meta.size()), std::span<std::uint32_t const>(meta));
    std::uint32_t const* d_pos = meta_.data();
    std::uint32_t const* d_slots = meta_.data() + T;
    std::uint32_t const* d_rows = meta_.data() + 2 * T;

    embedding(space_, embd_matrix(), ids, x_.view(T, E));
    pre_attention(0, T, kv.layer(0), d_pos, d_slots);
    bool const graphs = opt_.cuda_graphs && T <= opt_.graph_max_tokens;
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      paged_attention(space_, ShapedView<float const, 3>(q_.data(), T, H, D), std::as_const(kv).layer(l), pb,
                      ShapedView<float, 3>(o_.data(), T, H, D), ShapedView<float, 2>(lse_.data(), T, H), {},
                      batch.attention);
      PagedKv<KvT> const next = l + 1 < c_.num_layers ? kv.layer(l + 1) : PagedKv<KvT>{};
      auto segment = [&] {
        post_attention(l, T);
        if (l + 1 < c_.num_layers) pre_attention(l + 1, T, next, d_pos, d_slots);
      };
      if (graphs) {
        replay(GraphKey{T, l, stamp_, next.data}, segment);
      } else {
        segment();
      }
    }
    if (R == 0) return;
    PIECRUST_GPU_LAUNCH(gpu::detail::gather_rms_norm_kernel<>, static_cast<unsigned>(R), gpu::detail::norm_threads, 0,
                        space_.stream(), x_.data(), d_rows, output_norm_.data(), rows_.data(), E, c_.rms_eps);
    gpu::check_launch("gather_rms_norm_kernel");
    bool const host_logits = gpu::detail::is_host_pointer(logits.data());
    float* const out = host_logits ? logits_.data() : logits.data();
    BFloat16 const* head = c_.tied_embeddings ? embd_.data() : lm_head_.data();
    matmul(rows_.data(), R, E, head, c_.vocab_size, out, 0.0f);
    if (host_logits) copy_to_host(space_, logits, std::span<float const>(out, logits.size()));
  }

 private:
  // a = RMSNorm(x); qkv = a Wqkv^T; q, pages <- bias + RoPE + append (layer l, into `kv` = its pool).
  void pre_attention(std::size_t l, std::size_t T, PagedKv<KvT> kv, std::uint32_t const* d_pos,
                     std::uint32_t const* d_slots) {
    std::size_t const H = c_.num_heads, KH = c_.num_kv_heads, D = c_.head_dim, E = c_.hidden;
    std::size_t const rotary = c_.rope.rotary_dim == 0 ? D : c_.rope.rotary_dim;
    Layer const& L = layers_[l];
    rms_norm(space_, ShapedView<float const, 2>(x_.data(), T, E), ShapedView<float const, 1>(L.attn_norm.data(), E),
             a_.view(T, E), c_.rms_eps);
    matmul(a_.data(), T, E, L.wqkv.data(), (H + 2 * KH) * D, qkv_.data(), 0.0f);
    PIECRUST_GPU_LAUNCH(gpu::detail::qkv_rope_append_kernel<KvT>, static_cast<unsigned>(T), gpu::detail::qkv_threads, 0,
                        space_.stream(), qkv_.data(), L.bqkv.empty() ? nullptr : L.bqkv.data(), d_pos, d_slots,
                        inv_freq_.data(), H, KH, D, rotary / 2, c_.rope.style == RopeStyle::adjacent_pairs, q_.data(), kv);
    gpu::check_launch("qkv_rope_append_kernel");
  }

  // x += o Wo^T; a = RMSNorm(x); x += swiglu(a Wgu^T) Wdown^T (layer l).
  void post_attention(std::size_t l, std::size_t T) {
    std::size_t const H = c_.num_heads, D = c_.head_dim, E = c_.hidden, F = c_.ffn;
    Layer const& L = layers_[l];
    matmul(o_.data(), T, H * D, L.wo.data(), E, x_.data(), 1.0f);
    rms_norm(space_, ShapedView<float const, 2>(x_.data(), T, E), ShapedView<float const, 1>(L.ffn_norm.data(), E),
             a_.view(T, E), c_.rms_eps);
    matmul(a_.data(), T, E, L.wgu.data(), 2 * F, gu_.data(), 0.0f);
    PIECRUST_GPU_LAUNCH(gpu::detail::swiglu_halves_kernel<>, gpu::detail::elementwise_blocks(T * F, 256), 256, 0,
                        space_.stream(), gu_.data(), g_.data(), T, F);
    gpu::check_launch("swiglu_halves_kernel");
    matmul(g_.data(), T, F, L.wdown.data(), E, x_.data(), 1.0f);
  }

  // y [m][n] = beta * y + x [m][k] W [n][k]^T with W bf16: x rounded to bf16 into a16_, then cublasGemmEx
  // (f32 accumulation) on the model's own handle and workspace: no allocation, so it can be captured.
  void matmul(float const* x, std::size_t m, std::size_t k, BFloat16 const* w, std::size_t n, float* y, float beta) {
    PIECRUST_GPU_LAUNCH(gpu::detail::to_16bit_kernel<BFloat16>, gpu::detail::elementwise_blocks(m * k, 256), 256, 0,
                        space_.stream(), x, a16_.data(), m * k);
    gpu::check_launch("to_16bit_kernel");
    float const alpha = 1.0f;
    gpu::detail::check_cublas(
        cublasGemmEx(blas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
                     &alpha, w, CUDA_R_16BF, static_cast<int>(k), a16_.data(), CUDA_R_16BF, static_cast<int>(k), &beta, y,
                     CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  }

  struct GraphKey {
    std::size_t tokens;
    std::size_t layer;
    std::uint64_t stamp;  // buffer generation (reserve() reallocations change every baked pointer)
    void const* kv;       // the next layer's KV pool (null after the last layer)
    bool operator<(GraphKey const& o) const {
      return std::tie(tokens, layer, stamp, kv) < std::tie(o.tokens, o.layer, o.stamp, o.kv);
    }
  };
  struct GraphExecDeleter {
    void operator()(std::remove_pointer_t<cudaGraphExec_t>* g) const noexcept { (void)cudaGraphExecDestroy(g); }
  };
  using GraphExec = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter>;

  // Launches the graph of `key`, capturing `issue` (the segment's launches) into it the first time.
  template <class F>
  void replay(GraphKey const& key, F&& issue) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      gpu::check(cudaStreamBeginCapture(space_.stream(), cudaStreamCaptureModeThreadLocal), "StreamBeginCapture");
      try {
        issue();
      } catch (...) {
        cudaGraph_t broken = nullptr;
        (void)cudaStreamEndCapture(space_.stream(), &broken);
        if (broken != nullptr) (void)cudaGraphDestroy(broken);
        throw;
      }
      cudaGraph_t graph = nullptr;
      gpu::check(cudaStreamEndCapture(space_.stream(), &graph), "StreamEndCapture");
      cudaGraphExec_t exec = nullptr;
      cudaError_t const e = cudaGraphInstantiate(&exec, graph, 0);
      (void)cudaGraphDestroy(graph);
      gpu::check(e, "GraphInstantiate");
      it = graphs_.emplace(key, GraphExec(exec)).first;
    }
    gpu::check(cudaGraphLaunch(it->second.get(), space_.stream()), "GraphLaunch");
  }

  struct Layer {
    Buffer<float, CudaMemory> attn_norm, ffn_norm, bqkv;        // [E], [E], [qd + 2 kvd] or empty
    Buffer<BFloat16, CudaMemory> wqkv, wo, wgu, wdown;          // bf16 matrices (see the constructor)
  };

  /// The matrices stacked by rows, dequantized to bf16 on the device (raw bytes uploaded one at a time).
  Buffer<BFloat16, CudaMemory> upload_bf16(std::vector<WeightMatrix const*> const& ms) {
    std::size_t rows = 0;
    for (auto const* m : ms) {
      m->validate("CudaLlamaModel");
      rows += m->rows;
    }
    std::size_t const cols = ms.front()->cols;
    Buffer<BFloat16, CudaMemory> out(rows * cols, space_.memory());  // [rows][cols]
    std::size_t r0 = 0;
    for (auto const* m : ms) {
      auto const raw = to_device(space_, std::span<std::byte const>(static_cast<std::byte const*>(m->data), m->size_bytes()));
      gpu::dequantize_to_bf16(space_, WeightMatrix{m->type, raw.data(), m->rows, m->cols}, out.data() + r0 * cols);
      r0 += m->rows;
    }
    return out;
  }
  [[nodiscard]] static WeightMatrix bf16(Buffer<BFloat16, CudaMemory> const& b, std::size_t rows, std::size_t cols) {
    return WeightMatrix{WeightType::bf16, b.data(), rows, cols};
  }
  [[nodiscard]] WeightMatrix embd_matrix() const { return bf16(embd_, c_.vocab_size, c_.hidden); }

  /// Grows the activation buffers to T tokens and R logit rows (geometrically; never shrinks).
  void reserve(std::size_t T, std::size_t R) {
    std::size_t const H = c_.num_heads, KH = c_.num_kv_heads, D = c_.head_dim, E = c_.hidden, F = c_.ffn;
    auto grow = [&](auto& buf, std::size_t n) {
      if (buf.size() >= n) return;
      buf = std::remove_reference_t<decltype(buf)>(std::max(n, 2 * buf.size()), space_.memory());
      ++stamp_;
      graphs_.clear();  // every captured graph baked the old pointers
    };
    grow(x_, T * E);                 // [T][E] residual stream
    grow(a_, T * E);                 // [T][E] normalized sublayer input
    grow(qkv_, T * (H + 2 * KH) * D);  // [T][qd + 2 kvd]
    grow(q_, T * H * D);             // [T][H][D]
    grow(o_, T * H * D);             // [T][H][D]
    grow(lse_, T * H);               // [T][H]
    grow(gu_, T * 2 * F);            // [T][2F] gate, up
    grow(g_, T * F);                 // [T][F]
    grow(rows_, std::max<std::size_t>(R, 1) * E);            // [R][E]
    grow(logits_, std::max<std::size_t>(R, 1) * c_.vocab_size);  // [R][vocab] when the caller's logits are host memory
    grow(meta_, 2 * T + R);          // [2T + R] positions, slots, logit rows
    grow(a16_, std::max<std::size_t>(T, std::max<std::size_t>(R, 1)) * std::max({E, H * D, F}));  // [rows][k] bf16 GEMM input
  }

  void check(kv_cache_type const& kv, ForwardBatch const& batch, std::span<float> logits) const {
    std::size_t const T = batch.tokens.size();
    constexpr char const* op = "CudaLlamaModel::forward";
    if (kv.num_layers() != c_.num_layers || kv.num_kv_heads() != c_.num_kv_heads || kv.head_dim() != c_.head_dim) {
      detail::fail<InvalidArgument>(op, ": kv cache has ", kv.num_layers(), " layers x ", kv.num_kv_heads(), " heads x ",
                                    kv.head_dim(), ", the model needs ", c_.num_layers, " x ", c_.num_kv_heads, " x ",
                                    c_.head_dim);
    }
    if (batch.positions.size() != T) {
      detail::fail<InvalidArgument>(op, ": positions.size() = ", batch.positions.size(), " != tokens.size() = ", T);
    }
    for (std::size_t t = 0; t < T; ++t) {
      if (batch.tokens[t] < 0 || static_cast<std::size_t>(batch.tokens[t]) >= c_.vocab_size) {
        detail::fail<OutOfRange>(op, ": tokens[", t, "] = ", batch.tokens[t], " is outside the vocabulary of ", c_.vocab_size);
      }
    }
    for (std::size_t r = 0; r < batch.logit_rows.size(); ++r) {
      if (batch.logit_rows[r] >= T) {
        detail::fail<OutOfRange>(op, ": logit_rows[", r, "] = ", batch.logit_rows[r], " >= num_tokens = ", T);
      }
    }
    if (logits.size() != batch.logit_rows.size() * c_.vocab_size) {
      detail::fail<InvalidArgument>(op, ": logits.size() = ", logits.size(), ", expected ", batch.logit_rows.size(), " x ",
                                    c_.vocab_size);
    }
    for (auto const* a : batch.adapters) {
      if (a != nullptr) detail::fail<Unsupported>(op, ": LoRA adapters are not supported on the Cuda model");
    }
    auto const& pb = batch.pages;
    if (pb.qo_indptr.size() != pb.batch_size() + 1 || pb.kv_indptr.size() != pb.batch_size() + 1 ||
        (pb.batch_size() > 0 && pb.qo_indptr.back() != T) || (pb.batch_size() == 0 && T != 0)) {
      detail::fail<InvalidArgument>(op, ": page table sizes do not describe ", T, " tokens");
    }
    for (std::size_t b = 0; b < pb.batch_size(); ++b) {
      if (pb.qo_indptr[b + 1] < pb.qo_indptr[b] || pb.kv_indptr[b + 1] < pb.kv_indptr[b] ||
          pb.kv_indptr[b + 1] > pb.kv_indices.size()) {
        detail::fail<InvalidArgument>(op, ": request ", b, " has decreasing indptr or kv_indptr past kv_indices");
      }
      if (pb.num_pages(b) > 0 && (pb.kv_last_page_len[b] == 0 || pb.kv_last_page_len[b] > kv.page_size())) {
        detail::fail<InvalidArgument>(op, ": kv_last_page_len[", b, "] = ", pb.kv_last_page_len[b], " must be in [1, ",
                                      kv.page_size(), "]");
      }
      if (pb.kv_len(b, kv.page_size()) < pb.qo_len(b)) {
        detail::fail<InvalidArgument>(op, ": request ", b, " has kv length ", pb.kv_len(b, kv.page_size()), " < its ",
                                      pb.qo_len(b), " new tokens");
      }
    }
  }

  LlamaConfig c_;
  Cuda space_;
  CudaLlamaOptions opt_;
  Buffer<BFloat16, CudaMemory> embd_, lm_head_;  // [vocab][E] bf16 (lm_head_ empty when tied)
  Buffer<float, CudaMemory> output_norm_;        // [E]
  Buffer<double, CudaMemory> inv_freq_;          // [rotary / 2]
  std::vector<Layer> layers_;
  Buffer<float, CudaMemory> x_, a_, qkv_, q_, o_, lse_, gu_, g_, rows_, logits_;  // shapes in reserve()
  Buffer<std::uint32_t, CudaMemory> meta_;                                       // [2T + R]
  Buffer<BFloat16, CudaMemory> a16_;                                             // [rows][k] GEMM input
  struct BlasDeleter {
    void operator()(cublasContext* h) const noexcept { (void)cublasDestroy(h); }
  };
  std::unique_ptr<cublasContext, BlasDeleter> blas_;
  Buffer<std::byte, CudaMemory> blas_workspace_;  // [32 MiB] cuBLAS workspace
  std::map<GraphKey, GraphExec> graphs_;
  std::uint64_t stamp_ = 0;
};

static_assert(Model<CudaLlamaModel<BFloat16>>);
static_assert(Model<CudaLlamaModel<float>>);

}  // namespace piecrust
#endif
