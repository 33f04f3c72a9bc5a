#pragma once
// dequantize: a whole weight matrix to f32 (the "dequantize at load" option; see docs/kernels.md for
// when it pays off against gemm's direct quantized path).

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust {
namespace ops {
struct Dequantize {};
}  // namespace ops

/// out[r][c] = w[r][c] as f32.
///   w   [rows][cols] any WeightType
///   out [rows][cols]
template <ExecutionSpace S>
void dequantize(S const& space, WeightMatrix const& w, ShapedView<float, 2> out) {
  static_assert(HasKernel<ops::Dequantize, S>,
                "piecrust::dequantize: this execution space does not implement op Dequantize "
                "(no KernelImpl<ops::Dequantize, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Dequantize, S>) {
    w.validate("dequantize");
    detail::check_extent("dequantize", "out.extent(0)", out.extent(0), w.rows);
    detail::check_extent("dequantize", "out.extent(1)", out.extent(1), w.cols);
    KernelImpl<ops::Dequantize, S>::run(space, w, out);
  }
}

}  // namespace piecrust
