#pragma once
// Host implementation of dequantize: rows in parallel.

#include <cstddef>

#include "piecrust/backends/host/detail/quant.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/dequantize.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Dequantize, Host> {
  static void run(Host const& space, WeightMatrix const& w, ShapedView<float, 2> out) {
    space.parallel_for(w.rows, [&](std::size_t begin, std::size_t end) {
      for (std::size_t r = begin; r < end; ++r) host::detail::dequantize_row(w.type, w.row(r), out.data() + r * w.cols, w.cols);
    }, 16);
  }
};

}  // namespace piecrust
