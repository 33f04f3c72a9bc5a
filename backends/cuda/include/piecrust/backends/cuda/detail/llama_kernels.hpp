#pragma once
// Fused kernels of the Llama forward that are not yet kernel-layer ops (tested in tests/gpu/test_kernels.cu;
// the model does not launch them yet):
//  * swiglu_halves_kernel: swiglu over the gate and up halves of the fused gate/up GEMM output.
//    Floor: 12 bytes per output element.
//  * gather_rms_norm_kernel: the final RMSNorm of the logit rows only. Floor: 8 bytes per element of the
//    gathered rows.

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/rms_norm.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_kv.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

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
