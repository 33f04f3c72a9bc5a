#pragma once
// add_bias: y[i][j] += bias[j] (the q/k/v biases of Qwen2-style attention).

#include <cstddef>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct AddBias {};
}  // namespace ops

///   y    [rows][n]  (the space's memory)
///   bias [n]        (the space's memory)
template <ExecutionSpace S>
void add_bias(S const& space, ShapedView<float, 2> y, ShapedView<float const, 1> bias) {
  static_assert(HasKernel<ops::AddBias, S>,
                "piecrust::add_bias: this execution space does not implement op AddBias "
                "(no KernelImpl<ops::AddBias, Space> specialization is visible)");
  if constexpr (HasKernel<ops::AddBias, S>) {
    detail::check_extent("add_bias", "bias.extent(0) (n)", bias.extent(0), y.extent(1));
    if (y.size() != 0) KernelImpl<ops::AddBias, S>::run(space, y, bias);
  }
}

}  // namespace piecrust
