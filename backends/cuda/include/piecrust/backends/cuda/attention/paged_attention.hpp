#pragma once
// KernelImpl<ops::PagedAttention, Cuda>: piecrust::paged_attention on a Cuda space. q, the KV pool, out
// and lse are device memory of space.device(); PagedBatch spans, masks and TrimPlans are host objects,
// planned and uploaded per call through space.scratch() (see launch.hpp and tile_plan.hpp).

#include "piecrust/config.hpp"
#include <cstddef>

#include "piecrust/backends/cuda/attention/launch.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/paged_attention.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust {

template <>
struct KernelImpl<ops::PagedAttention, Cuda> {
  template <std::size_t HeadDim, class T>
  static void run(Cuda const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, PagedBatch const& batch,
                  ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params,
                  AttentionSelection const& selection) {
    gpu::DeviceGuard guard(space.device());
    cuda::attention::launch_paged_attention<HeadDim, T>(space.scratch(), space.stream(), space.device(), q, kv, batch,
                                                        selection, params, out, lse);
  }
};

}  // namespace piecrust

#endif  // PIECRUST_DEVICE_COMPILE
