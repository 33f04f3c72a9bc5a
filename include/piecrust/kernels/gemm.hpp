#pragma once
// gemm: activations times a weight matrix stored in GGUF order, y = beta * y + x * W^T.

#include <cstddef>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust {
namespace ops {
struct Gemm {};
}  // namespace ops

/// y[i][o] = beta * y[i][o] + sum_k x[i][k] * W[o][k]  (a Linear layer without bias).
///   x [m][k]
///   w [n][k] in any WeightType (f32, f16, bf16, q8_0, q4_1)
///   y [m][n]
/// beta = 1 accumulates into y (a residual add for free); beta = 0 ignores y's old contents, NaN included.
template <ExecutionSpace S>
void gemm(S const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y, float beta = 0.0f) {
  static_assert(HasKernel<ops::Gemm, S>,
                "piecrust::gemm: this execution space does not implement op Gemm "
                "(no KernelImpl<ops::Gemm, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Gemm, S>) {
    w.validate("gemm");
    detail::check_extent("gemm", "x.extent(1) (k)", x.extent(1), w.cols);
    detail::check_extent("gemm", "y.extent(0) (m)", y.extent(0), x.extent(0));
    detail::check_extent("gemm", "y.extent(1) (n)", y.extent(1), w.rows);
    KernelImpl<ops::Gemm, S>::run(space, x, w, y, beta);
  }
}

}  // namespace piecrust
