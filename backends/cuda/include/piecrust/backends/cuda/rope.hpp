#pragma once
// Cuda implementation of rope: one block per token. The frequencies come from the one definition
// (detail::rope_inv_freq, double, Llama-3 scaling applied) computed on the host and uploaded with the
// positions; each block computes cos/sin of its token's angles in double (as the host does, so that
// positions past 2^24 keep full f32 accuracy) once, then rotates every head.
// Floor: reads and writes x once (8 bytes per element); the double sincos per (token, pair) is the
// arithmetic cost (head_dim / 2 of them per token, shared by all heads).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/rope.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

inline constexpr int rope_threads = 128;
/// Largest rotary_dim / 2 the shared cos/sin table holds (head_dim 512).
inline constexpr std::size_t rope_max_half = 256;

/// cs [2][rope_max_half]: cos then sin of position * inv_freq[i] for i < half, angles in double (as the
/// host); the block's threads share the work, the caller synchronizes before reading.
__device__ __forceinline__ void rope_fill_cos_sin(float* cs, std::uint32_t position, double const* inv_freq,
                                                  std::size_t half) {
  for (std::size_t i = threadIdx.x; i < half; i += blockDim.x) {
    double s = 0.0, c = 0.0;
    sincos(static_cast<double>(position) * inv_freq[i], &s, &c);
    cs[i] = static_cast<float>(c);
    cs[rope_max_half + i] = static_cast<float>(s);
  }
}

/// One rotated pair, with separate roundings like the host (no fused multiply-add). y0/y1 may alias x0/x1.
__device__ __forceinline__ void rope_rotate(float x0, float x1, float c, float s, float& y0, float& y1) {
  float const r0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
  float const r1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  y0 = r0;
  y1 = r1;
}

/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(rope_threads)
    rope_kernel(float* x, std::uint32_t const* positions, double const* inv_freq, std::size_t heads,
                std::size_t head_dim, std::size_t half, bool adjacent) {
  __shared__ float cs[2 * rope_max_half];  // [2][half] cos then sin
  std::size_t const t = blockIdx.x;
  rope_fill_cos_sin(cs, positions[t], inv_freq, half);
  __syncthreads();
  float* xt = x + t * heads * head_dim;
  for (std::size_t e = threadIdx.x; e < heads * half; e += blockDim.x) {
    std::size_t const h = e / half;
    std::size_t const i = e % half;
    float* v = xt + h * head_dim;
    std::size_t const a = adjacent ? 2 * i : i;
    std::size_t const b = adjacent ? 2 * i + 1 : i + half;
    rope_rotate(v[a], v[b], cs[i], cs[rope_max_half + i], v[a], v[b]);
  }
}

}  // namespace gpu::detail

/// positions is a host span (the interface's convention for small index metadata); x is device memory.
template <>
struct KernelImpl<ops::Rope, Cuda> {
  static void run(Cuda const& space, ShapedView<float, 3> x, std::span<std::uint32_t const> positions,
                  RopeParams const& params, std::size_t rotary_dim) {
    std::size_t const half = rotary_dim / 2;
    if (half > gpu::detail::rope_max_half) {
      detail::fail<Unsupported>("rope: rotary_dim = ", rotary_dim, " exceeds the Cuda kernel's limit of ",
                                2 * gpu::detail::rope_max_half);
    }
    if (x.extent(0) == 0 || half == 0 || x.extent(1) == 0) return;
    std::vector<double> const inv_freq = detail::rope_inv_freq(params, rotary_dim);  // [half]
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    auto const pos = scratch.upload(positions);
    auto const inv = scratch.upload(std::span<double const>(inv_freq));
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::rope_kernel<>, static_cast<unsigned>(x.extent(0)), gpu::detail::rope_threads, 0,
                        space.stream(), x.data(), scratch.get(pos), scratch.get(inv), x.extent(1), x.extent(2), half,
                        params.style == RopeStyle::adjacent_pairs);
    gpu::check_launch("rope_kernel");
  }
};

}  // namespace piecrust
#endif
