#pragma once
// Host implementation of the embedding gather.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/host/detail/quant.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/embedding.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Embedding, Host> {
  static void run(Host const& space, WeightMatrix const& table, std::span<std::uint32_t const> ids,
                  ShapedView<float, 2> out, float scale) {
    space.parallel_for(ids.size(), [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = begin; t < end; ++t) {
        float* o = out.data() + t * table.cols;  // [cols]
        host::detail::dequantize_row(table.type, table.row(ids[t]), o, table.cols);
        if (scale != 1.0f) {
          for (std::size_t c = 0; c < table.cols; ++c) o[c] *= scale;
        }
      }
    });
  }
};

}  // namespace piecrust
