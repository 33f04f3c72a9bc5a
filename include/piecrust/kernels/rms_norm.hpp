#pragma once
// rms_norm and fused_add_rms_norm: RMSNorm over the last dimension.
// Source: Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019); Llama's LlamaRMSNorm
// (y = x / sqrt(mean(x^2) + eps) * weight, the mean taken in f32); FlashInfer's fused_add_rmsnorm.

#include <cstddef>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct RmsNorm {};
struct FusedAddRmsNorm {};
}  // namespace ops

/// out[i][:] = x[i][:] / sqrt(mean(x[i][:]^2) + eps) * weight[:]. out may alias x.
///   x      [rows][dim]
///   weight [dim]
///   out    [rows][dim]
template <ExecutionSpace S>
void rms_norm(S const& space, ShapedView<float const, 2> x, ShapedView<float const, 1> weight,
              ShapedView<float, 2> out, float eps = 1e-5f) {
  static_assert(HasKernel<ops::RmsNorm, S>,
                "piecrust::rms_norm: this execution space does not implement op RmsNorm "
                "(no KernelImpl<ops::RmsNorm, Space> specialization is visible; include its backend header)");
  if constexpr (HasKernel<ops::RmsNorm, S>) {
    detail::check_extent("rms_norm", "weight.extent(0)", weight.extent(0), x.extent(1));
    detail::check_extent("rms_norm", "out.extent(0)", out.extent(0), x.extent(0));
    detail::check_extent("rms_norm", "out.extent(1)", out.extent(1), x.extent(1));
    if (!(eps >= 0.0f)) detail::fail<InvalidArgument>("rms_norm: eps = ", eps, " must be >= 0");
    KernelImpl<ops::RmsNorm, S>::run(space, x, weight, out, eps);
  }
}

/// The pre-norm residual step of a transformer block, in place:
///   residual[i][:] += x[i][:];  x[i][:] = rms_norm(residual[i][:]) * weight[:]
///   x        [rows][dim]   (in: the sublayer output; out: the normalized input of the next sublayer)
///   residual [rows][dim]   (in/out: the residual stream)
///   weight   [dim]
template <ExecutionSpace S>
void fused_add_rms_norm(S const& space, ShapedView<float, 2> x, ShapedView<float, 2> residual,
                        ShapedView<float const, 1> weight, float eps = 1e-5f) {
  static_assert(HasKernel<ops::FusedAddRmsNorm, S>,
                "piecrust::fused_add_rms_norm: this execution space does not implement op FusedAddRmsNorm "
                "(no KernelImpl<ops::FusedAddRmsNorm, Space> specialization is visible)");
  if constexpr (HasKernel<ops::FusedAddRmsNorm, S>) {
    detail::check_extent("fused_add_rms_norm", "residual.extent(0)", residual.extent(0), x.extent(0));
    detail::check_extent("fused_add_rms_norm", "residual.extent(1)", residual.extent(1), x.extent(1));
    detail::check_extent("fused_add_rms_norm", "weight.extent(0)", weight.extent(0), x.extent(1));
    if (!(eps >= 0.0f)) detail::fail<InvalidArgument>("fused_add_rms_norm: eps = ", eps, " must be >= 0");
    KernelImpl<ops::FusedAddRmsNorm, S>::run(space, x, residual, weight, eps);
  }
}

}  // namespace piecrust
