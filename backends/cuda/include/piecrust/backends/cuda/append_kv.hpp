#pragma once
// Cuda implementation of append_kv: one block per new token writes its K and V rows into its slot.
// Floor: reads k and v (8 bytes per element) and writes them in the pool's type (4 or 2 bytes each).
// slots is a host span (the interface validates it on the host); it is uploaded with the call.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/append_kv.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

template <class T>
__global__ void append_kv_kernel(PagedKv<T> kv, float const* k, float const* v, std::uint32_t const* slots) {
  std::size_t const t = blockIdx.x;
  std::size_t const row = kv.num_kv_heads * kv.head_dim;
  std::size_t const page = slots[t] / kv.page_size;
  std::size_t const slot = slots[t] % kv.page_size;
  T* kd = kv.at(page, 0, slot, 0);
  T* vd = kv.at(page, 1, slot, 0);
  for (std::size_t i = threadIdx.x; i < row; i += blockDim.x) {
    kd[i] = from_float<T>(k[t * row + i]);
    vd[i] = from_float<T>(v[t * row + i]);
  }
}

}  // namespace gpu::detail

template <>
struct KernelImpl<ops::AppendKv, Cuda> {
  template <class T>
  static void run(Cuda const& space, PagedKv<T> kv, ShapedView<float const, 3> k, ShapedView<float const, 3> v,
                  std::span<std::uint32_t const> slots) {
    if (slots.empty()) return;
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    auto const s = scratch.upload(slots);
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::append_kv_kernel<T>, static_cast<unsigned>(slots.size()), 128, 0, space.stream(),
                        kv, k.data(), v.data(), scratch.get(s));
    gpu::check_launch("append_kv_kernel");
  }
};

}  // namespace piecrust
#endif
