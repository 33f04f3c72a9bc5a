#pragma once
// Host implementation of add_bias.

#include <cstddef>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/add_bias.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::AddBias, Host> {
  static void run(Host const&, ShapedView<float, 2> y, ShapedView<float const, 1> bias) {
    for (std::size_t i = 0; i < y.extent(0); ++i) {
      for (std::size_t j = 0; j < y.extent(1); ++j) y(i, j) += bias(j);
    }
  }
};

}  // namespace piecrust
