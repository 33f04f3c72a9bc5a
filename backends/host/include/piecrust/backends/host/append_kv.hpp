#pragma once
// Host implementation of append_kv.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/append_kv.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::AppendKv, Host> {
  template <class T>
  static void run(Host const& space, PagedKv<T> kv, ShapedView<float const, 3> k, ShapedView<float const, 3> v,
                  std::span<std::uint32_t const> slots) {
    std::size_t const row = kv.num_kv_heads * kv.head_dim;
    space.parallel_for(slots.size(), [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = begin; t < end; ++t) {
        std::size_t const page = slots[t] / kv.page_size;
        std::size_t const slot = slots[t] % kv.page_size;
        T* kd = kv.at(page, 0, slot, 0);
        T* vd = kv.at(page, 1, slot, 0);
        for (std::size_t i = 0; i < row; ++i) {
          kd[i] = from_float<T>(k.data()[t * row + i]);
          vd[i] = from_float<T>(v.data()[t * row + i]);
        }
      }
    });
  }
};

}  // namespace piecrust
