#pragma once
// Host implementation of geglu: gelu(g) = g * sigmoid(a(g)) through the vector exp of detail/simd.hpp.

#include <cmath>
#include <cstddef>

#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/geglu.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Geglu, Host> {
  static void run(Host const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up,
                  ShapedView<float, 2> out) {
    std::size_t const n = gate.size();
    space.parallel_for(n, [&](std::size_t begin, std::size_t end) {
      namespace d = host::detail;
      constexpr float k = 1.5957691216057308f, c = 0.044715f;  // detail::gelu_sigmoid_arg, lane-wise
      std::size_t i = begin;
      for (; i + d::lanes <= end; i += d::lanes) {
        d::Vf const g = d::load(gate.data() + i);
        d::Vf const a = k * (g + c * g * g * g);
        d::store(out.data() + i, g / (1.0f + d::exp_approx(-a)) * d::load(up.data() + i));
      }
      for (; i < end; ++i) {
        float const g = gate.data()[i];
        out.data()[i] = g / (1.0f + std::exp(-detail::gelu_sigmoid_arg(g))) * up.data()[i];
      }
    }, 4096);
  }
};

}  // namespace piecrust
