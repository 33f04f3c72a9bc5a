#pragma once
// Cuda implementation of add_bias: elementwise, grid-stride. Floor: 8 bytes per element (read and write y;
// the bias row stays in L1/L2).

#include <cstddef>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
#include "piecrust/kernels/add_bias.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

/// y [rows][n] += bias [n]. A template (of nothing) so that the header may be included by any number of
/// translation units.
template <int = 0>
__global__ void add_bias_kernel(float* y, float const* bias, std::size_t count, std::size_t n) {
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    y[i] += bias[i % n];
  }
}

}  // namespace gpu::detail

template <>
struct KernelImpl<ops::AddBias, Cuda> {
  static void run(Cuda const& space, ShapedView<float, 2> y, ShapedView<float const, 1> bias) {
    gpu::DeviceGuard guard(space.device());
    PIECRUST_GPU_LAUNCH(gpu::detail::add_bias_kernel<>, gpu::detail::elementwise_blocks(y.size(), 256), 256, 0,
                        space.stream(), y.data(), bias.data(), y.size(), y.extent(1));
    gpu::check_launch("add_bias_kernel");
  }
};

}  // namespace piecrust
#endif
