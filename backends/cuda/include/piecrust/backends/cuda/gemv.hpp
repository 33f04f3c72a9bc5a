#pragma once
// The direct gemm kernel: y = beta * y + x W^T for a few rows of x, reading W (any WeightType, decoded per
// element) once. Decode is bound by weight bandwidth: the floor is size_bytes(W) / bandwidth, e.g. a
// 4096 x 4096 Q4_1 matrix, 10.5 MB, ~3 us at 3.35 TB/s. The cuBLAS gemm uses it for m <= gemv_max_rows;
// HIP, which has no BLAS here, uses it for every m, in chunks of gemv_max_rows rows.

#include <cstddef>

#include "piecrust/backends/cuda/detail/block.hpp"
#include "piecrust/backends/cuda/detail/quant.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust::gpu::detail {

/// Rows of x the direct quantized kernel handles (decode and small speculative batches).
inline constexpr std::size_t gemv_max_rows = 8;
inline constexpr int gemv_threads = 256;

/// y[i][o] = beta * y[i][o] + sum_c x[i][c] * W[o][c] for i < m <= gemv_max_rows; one warp per output o.
/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(gemv_threads)
    gemv_quant_kernel(WeightType type, unsigned char const* w, std::size_t row_bytes, std::size_t n, std::size_t k,
                      float const* x, std::size_t m, float* y, float beta) {
  int const lane = static_cast<int>(threadIdx.x) % warp_size;
  std::size_t const o = static_cast<std::size_t>(blockIdx.x) * (gemv_threads / warp_size) + threadIdx.x / warp_size;
  if (o >= n) return;
  unsigned char const* row = w + o * row_bytes;
  float acc[gemv_max_rows] = {};
  for (std::size_t c = static_cast<std::size_t>(lane); c < k; c += warp_size) {
    float const wc = decode(type, row, c);
    for (std::size_t i = 0; i < m; ++i) acc[i] += x[i * k + c] * wc;
  }
  for (std::size_t i = 0; i < m; ++i) {
    float const s = warp_reduce(acc[i], Sum{});
    if (lane == 0) {
      float& yo = y[i * n + o];
      yo = beta == 0.0f ? s : beta * yo + s;
    }
  }
}

/// y [m][n] = beta * y + x [m][k] W [n][k]^T for m <= gemv_max_rows (x, y, W.data device memory).
inline void launch_gemv(Cuda const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                        float beta) {
  constexpr unsigned warps = gemv_threads / warp_size;
  std::size_t const n = w.rows;
  PIECRUST_GPU_LAUNCH(gemv_quant_kernel<>, static_cast<unsigned>((n + warps - 1) / warps), gemv_threads, 0, space.stream(),
                      w.type, static_cast<unsigned char const*>(w.data), w.row_bytes(), n, w.cols, x.data(), x.extent(0),
                      y.data(), beta);
  check_launch("gemv_quant_kernel");
}

}  // namespace piecrust::gpu::detail
#endif
