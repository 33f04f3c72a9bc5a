#pragma once
// Cuda implementations of the embedding gather and of dequantize (whole matrix to f32), plus
// gpu::dequantize_to_bf16 for weights uploaded once in bf16 (the GEMM input type of cuBLAS's bf16 path).
// Floors: embedding reads one table row per token (in its stored size) and writes 4 bytes per element;
// dequantize reads the matrix once (e.g. 0.625 bytes per weight for Q4_1) and writes 4 (f32) or 2
// (bf16) bytes per weight. The decode matches the host bit for bit (same operations, no fused rounding).

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/cuda/detail/quant.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/dequantize.hpp"
#include "piecrust/kernels/embedding.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

/// out[r][c] for rows ids[r] (or r when ids is null) of the table, times scale.
template <class Out>
__global__ void gather_rows_kernel(WeightType type, unsigned char const* data, std::size_t row_bytes, std::size_t cols,
                                   std::uint32_t const* ids, std::size_t first_row, float scale, Out* out) {
  std::size_t const r = blockIdx.x;
  std::size_t const src = ids != nullptr ? ids[r] : first_row + r;
  unsigned char const* row = data + src * row_bytes;
  Out* o = out + r * cols;
  for (std::size_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float const v = decode(type, row, c);
    o[c] = from_float<Out>(scale == 1.0f ? v : v * scale);
  }
}

template <class Out>
void launch_gather(Cuda const& space, WeightMatrix const& w, std::uint32_t const* ids, std::size_t first_row,
                   std::size_t rows, Out* out, float scale = 1.0f) {
  if (rows == 0 || w.cols == 0) return;
  // Grid dimension x allows 2^31 - 1 blocks: one per row.
  PIECRUST_GPU_LAUNCH(gather_rows_kernel<Out>, static_cast<unsigned>(rows), 256, 0, space.stream(), w.type,
                      static_cast<unsigned char const*>(w.data), w.row_bytes(), w.cols, ids, first_row, scale, out);
  check_launch("gather_rows_kernel");
}

}  // namespace gpu::detail

/// ids is a host span (validated on the host by the interface) and is uploaded; table.data and out
/// are device memory.
template <>
struct KernelImpl<ops::Embedding, Cuda> {
  static void run(Cuda const& space, WeightMatrix const& table, std::span<std::uint32_t const> ids,
                  ShapedView<float, 2> out, float scale) {
    if (ids.empty()) return;
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    auto const d_ids = scratch.upload(ids);
    scratch.commit();
    gpu::detail::launch_gather<float>(space, table, scratch.get(d_ids), 0, ids.size(), out.data(), scale);
  }
};

template <>
struct KernelImpl<ops::Dequantize, Cuda> {
  static void run(Cuda const& space, WeightMatrix const& w, ShapedView<float, 2> out) {
    gpu::DeviceGuard guard(space.device());
    gpu::detail::launch_gather<float>(space, w, nullptr, 0, w.rows, out.data());
  }
};

namespace gpu {
/// out [w.rows][w.cols] = w in bf16 (round to nearest even, as BFloat16::from_float); device memory.
inline void dequantize_to_bf16(Cuda const& space, WeightMatrix const& w, BFloat16* out) {
  w.validate("dequantize_to_bf16");
  piecrust::detail::check_data("dequantize_to_bf16", "out", out, w.rows * w.cols);
  DeviceGuard guard(space.device());
  detail::launch_gather<BFloat16>(space, w, nullptr, 0, w.rows, out);
}
}  // namespace gpu

}  // namespace piecrust
#endif
