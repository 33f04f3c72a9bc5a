#pragma once
// Fused kernels of the Llama forward that are not yet kernel-layer ops (tested in tests/gpu/test_kernels.cu):
//  * qkv_rope_append_kernel: bias + RoPE of q and k + the K/V append, from the fused QKV GEMM output.
//    Floor: reads the QKV row (4 bytes per element) and writes q (4) and K/V (sizeof(KvT)) once: the
//    separate ops would also write and re-read q, k, v in f32 (16 more bytes per K/V element).
//  * swiglu_halves_kernel: swiglu over the gate and up halves of the fused gate/up GEMM output.
//    Floor: 12 bytes per output element.
//  * gather_rms_norm_kernel: the final RMSNorm of the logit rows only. Floor: 8 bytes per element of the
//    gathered rows.

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/rms_norm.hpp"
#include "piecrust/backends/cuda/rope.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_kv.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

inline constexpr int qkv_threads = 128;

/// Token t of qkv [T][qd + 2 kvd] (+ bias): q rotated into q_out [T][H][D]; k rotated and v copied into
/// the KV pool at slots[t]. RoPE exactly as rope_kernel (double angles, separately rounded products).
template <class KvT>
__global__ void __launch_bounds__(qkv_threads)
    qkv_rope_append_kernel(float const* qkv, float const* bias, std::uint32_t const* positions,
                           std::uint32_t const* slots, double const* inv_freq, std::size_t heads, std::size_t kv_heads,
                           std::size_t head_dim, std::size_t half, bool adjacent, float* q_out, PagedKv<KvT> kv) {
  __shared__ float cs[2 * rope_max_half];  // [2][half] cos then sin
  std::size_t const t = blockIdx.x;
  rope_fill_cos_sin(cs, positions[t], inv_freq, half);
  __syncthreads();
  std::size_t const width = (heads + 2 * kv_heads) * head_dim;
  float const* row = qkv + t * width;
  std::size_t const page = slots[t] / kv.page_size;
  std::size_t const slot = slots[t] % kv.page_size;
  auto value = [&](std::size_t col) { return bias != nullptr ? row[col] + bias[col] : row[col]; };
  // Rotated pairs of q and k heads.
  for (std::size_t e = threadIdx.x; e < (heads + kv_heads) * half; e += blockDim.x) {
    std::size_t const h = e / half;  // q heads first, then k heads
    std::size_t const i = e % half;
    std::size_t const a = adjacent ? 2 * i : i;
    std::size_t const b = adjacent ? 2 * i + 1 : i + half;
    float const x0 = value(h * head_dim + a);
    float const x1 = value(h * head_dim + b);
    float y0 = 0.0f, y1 = 0.0f;
    rope_rotate(x0, x1, cs[i], cs[rope_max_half + i], y0, y1);
    if (h < heads) {
      q_out[(t * heads + h) * head_dim + a] = y0;
      q_out[(t * heads + h) * head_dim + b] = y1;
    } else {
      KvT* k = kv.at(page, 0, slot, h - heads);
      k[a] = from_float<KvT>(y0);
      k[b] = from_float<KvT>(y1);
    }
  }
  // Dimensions past rotary_dim (partial rotary), copied as they are.
  std::size_t const rest = head_dim - 2 * half;
  for (std::size_t e = threadIdx.x; e < (heads + kv_heads) * rest; e += blockDim.x) {
    std::size_t const h = e / rest;
    std::size_t const d = 2 * half + e % rest;
    float const x = value(h * head_dim + d);
    if (h < heads) {
      q_out[(t * heads + h) * head_dim + d] = x;
    } else {
      kv.at(page, 0, slot, h - heads)[d] = from_float<KvT>(x);
    }
  }
  // V.
  std::size_t const v0 = (heads + kv_heads) * head_dim;
  for (std::size_t e = threadIdx.x; e < kv_heads * head_dim; e += blockDim.x) {
    kv.at(page, 1, slot, 0)[e] = from_float<KvT>(value(v0 + e));
  }
}

/// out [T][F] = silu(gu[t][j]) * gu[t][F + j]  (gu [T][2F]: gate then up per row).
template <int = 0>
__global__ void swiglu_halves_kernel(float const* gu, float* out, std::size_t rows, std::size_t f) {
  std::size_t const n = rows * f;
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    std::size_t const t = i / f, j = i % f;
    float const g = gu[t * 2 * f + j];
    out[i] = g / (1.0f + expf(-g)) * gu[t * 2 * f + f + j];
  }
}

/// out[r][:] = rms_norm(x[rows[r]][:]) * weight: the final norm of the logit rows only.
template <int = 0>
__global__ void __launch_bounds__(norm_threads)
    gather_rms_norm_kernel(float const* x, std::uint32_t const* rows, float const* weight, float* out, std::size_t dim,
                           float eps) {
  __shared__ float tmp[max_warps];
  float const* xr = x + std::size_t{rows[blockIdx.x]} * dim;
  float* o = out + static_cast<std::size_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (std::size_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_reduce(ss, Sum{}, tmp);
  float const inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  for (std::size_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * weight[i];
}

}  // namespace gpu::detail

}  // namespace piecrust
#endif
