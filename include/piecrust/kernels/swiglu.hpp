#pragma once
// swiglu: the gated MLP activation out = silu(gate) * up, silu(x) = x / (1 + exp(-x)).
// Source: Shazeer, "GLU Variants Improve Transformer" (2020); Llama's LlamaMLP.

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct Swiglu {};
}  // namespace ops

/// out[i][j] = silu(gate[i][j]) * up[i][j]. out may alias gate or up.
///   gate [rows][dim], up [rows][dim], out [rows][dim]
template <ExecutionSpace S>
void swiglu(S const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up, ShapedView<float, 2> out) {
  static_assert(HasKernel<ops::Swiglu, S>,
                "piecrust::swiglu: this execution space does not implement op Swiglu "
                "(no KernelImpl<ops::Swiglu, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Swiglu, S>) {
    detail::check_extent("swiglu", "up.extent(0)", up.extent(0), gate.extent(0));
    detail::check_extent("swiglu", "up.extent(1)", up.extent(1), gate.extent(1));
    detail::check_extent("swiglu", "out.extent(0)", out.extent(0), gate.extent(0));
    detail::check_extent("swiglu", "out.extent(1)", out.extent(1), gate.extent(1));
    KernelImpl<ops::Swiglu, S>::run(space, gate, up, out);
  }
}

}  // namespace piecrust
