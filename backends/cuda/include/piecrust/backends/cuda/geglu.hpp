#pragma once
// Cuda implementation of geglu: elementwise, grid-stride, gelu(g) = g * sigmoid(a(g)) with expf (as swiglu).
// Floor: reads gate and up, writes out: 12 bytes per element.

#include <cstddef>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
#include "piecrust/kernels/geglu.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

template <int = 0>
__global__ void geglu_kernel(float const* gate, float const* up, float* out, std::size_t n) {
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float const g = gate[i];
    out[i] = g / (1.0f + expf(-piecrust::detail::gelu_sigmoid_arg(g))) * up[i];
  }
}

}  // namespace gpu::detail

template <>
struct KernelImpl<ops::Geglu, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up,
                  ShapedView<float, 2> out) {
    std::size_t const n = gate.size();
    if (n == 0) return;
    gpu::DeviceGuard guard(space.device());
    PIECRUST_GPU_LAUNCH(gpu::detail::geglu_kernel<>, gpu::detail::elementwise_blocks(n, 256), 256, 0, space.stream(),
                        gate.data(), up.data(), out.data(), n);
    gpu::check_launch("geglu_kernel");
  }
};

}  // namespace piecrust
#endif
