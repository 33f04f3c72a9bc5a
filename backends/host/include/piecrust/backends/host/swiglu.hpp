#pragma once
// Host implementation of swiglu.

#include <cmath>
#include <cstddef>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/swiglu.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Swiglu, Host> {
  static void run(Host const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up,
                  ShapedView<float, 2> out) {
    std::size_t const n = gate.size();
    space.parallel_for(n, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        float const g = gate.data()[i];
        out.data()[i] = g / (1.0f + std::exp(-g)) * up.data()[i];
      }
    }, 4096);
  }
};

}  // namespace piecrust
