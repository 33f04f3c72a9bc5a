#pragma once
// KernelImpl<ops::MergeStates, Cuda>: piecrust::merge_states on a Cuda space (all views device memory).

#include "piecrust/config.hpp"
#include "piecrust/backends/cuda/attention/launch.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/merge_states.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust {

template <>
struct KernelImpl<ops::MergeStates, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 4> v, ShapedView<float const, 3> s, ShapedView<float, 3> v_out,
                  ShapedView<float, 2> s_out) {
    gpu::DeviceGuard guard(space.device());
    cuda::attention::launch_merge_states(space.stream(), v, s, v_out, s_out);
  }
};

}  // namespace piecrust

#endif  // PIECRUST_DEVICE_COMPILE
