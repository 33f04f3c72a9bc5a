#pragma once
// geglu: the GELU-gated MLP activation out = gelu(gate) * up, with GELU's tanh form
//   gelu(x) = x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) = x * sigmoid(2 * sqrt(2 / pi) * (x + 0.044715 x^3))
// (the second form is the one the kernels evaluate: one exp, like silu).
// Source: Hendrycks & Gimpel, "Gaussian Error Linear Units" (2016); Shazeer, "GLU Variants Improve
// Transformer" (2020); Gemma's GemmaMLP (hidden_activation gelu_pytorch_tanh).

#include "piecrust/config.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct Geglu {};
}  // namespace ops

namespace detail {
/// The argument a of gelu(x) = x * sigmoid(a): 2 sqrt(2 / pi) (x + 0.044715 x^3), in f32.
PIECRUST_HOST_DEVICE inline float gelu_sigmoid_arg(float x) noexcept {
  constexpr float two_sqrt_2_over_pi = 1.5957691216057308f;
  return two_sqrt_2_over_pi * (x + 0.044715f * x * x * x);
}
}  // namespace detail

/// out[i][j] = gelu(gate[i][j]) * up[i][j]. out may alias gate or up.
///   gate [rows][dim], up [rows][dim], out [rows][dim]
template <ExecutionSpace S>
void geglu(S const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up, ShapedView<float, 2> out) {
  static_assert(HasKernel<ops::Geglu, S>,
                "piecrust::geglu: this execution space does not implement op Geglu "
                "(no KernelImpl<ops::Geglu, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Geglu, S>) {
    detail::check_extent("geglu", "up.extent(0)", up.extent(0), gate.extent(0));
    detail::check_extent("geglu", "up.extent(1)", up.extent(1), gate.extent(1));
    detail::check_extent("geglu", "out.extent(0)", out.extent(0), gate.extent(0));
    detail::check_extent("geglu", "out.extent(1)", out.extent(1), gate.extent(1));
    KernelImpl<ops::Geglu, S>::run(space, gate, up, out);
  }
}

}  // namespace piecrust
