#pragma once
// Host implementation of swiglu: silu through the vector exp of detail/simd.hpp (relative error ~2e-7;
// a decode step's few thousand scalar exp calls per layer are otherwise a visible part of its serial work).

#include <cmath>
#include <cstddef>

#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/swiglu.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Swiglu, Host> {
  static void run(Host const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up,
                  ShapedView<float, 2> out) {
    std::size_t const n = gate.size();
    space.parallel_for(n, [&](std::size_t begin, std::size_t end) {
      namespace d = host::detail;
      std::size_t i = begin;
      for (; i + d::lanes <= end; i += d::lanes) {
        d::Vf const g = d::load(gate.data() + i);
        d::store(out.data() + i, g / (1.0f + d::exp_approx(-g)) * d::load(up.data() + i));
      }
      for (; i < end; ++i) {
        float const g = gate.data()[i];
        out.data()[i] = g / (1.0f + std::exp(-g)) * up.data()[i];
      }
    }, 4096);
  }
};

}  // namespace piecrust
