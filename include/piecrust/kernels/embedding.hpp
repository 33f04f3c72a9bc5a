#pragma once
// embedding: gathers rows of an embedding table (any WeightType) into f32 activations.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust {
namespace ops {
struct Embedding {};
}  // namespace ops

/// out[t][:] = dequantize(table row ids[t]) * scale (scale 1: the rows exactly; Gemma scales by sqrt(dim)).
///   table [vocab][dim] (WeightMatrix, rows = vocab)
///   ids   [tokens]
///   out   [tokens][dim]
/// Throws OutOfRange for an id >= vocab (naming its index), before writing anything.
template <ExecutionSpace S>
void embedding(S const& space, WeightMatrix const& table, std::span<std::uint32_t const> ids, ShapedView<float, 2> out,
               float scale = 1.0f) {
  static_assert(HasKernel<ops::Embedding, S>,
                "piecrust::embedding: this execution space does not implement op Embedding "
                "(no KernelImpl<ops::Embedding, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Embedding, S>) {
    table.validate("embedding");
    detail::check_extent("embedding", "out.extent(0)", out.extent(0), ids.size());
    detail::check_extent("embedding", "out.extent(1)", out.extent(1), table.cols);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      if (ids[t] >= table.rows) detail::fail<OutOfRange>("embedding: ids[", t, "] = ", ids[t], " >= vocab = ", table.rows);
    }
    if (!std::isfinite(scale)) detail::fail<InvalidArgument>("embedding: scale = ", scale, " is not finite");
    KernelImpl<ops::Embedding, S>::run(space, table, ids, out, scale);
  }
}

}  // namespace piecrust
