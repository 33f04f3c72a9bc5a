#pragma once
// merge_states: combines attention results computed over disjoint KV sets (split-KV, shared-prefix
// cascade) from their outputs and log-sum-exps. Source: FlashInfer's merge_state / merge_states
// (cascade.cuh), here with natural-log lse: s = log(e^{s_a} + e^{s_b}), v = e^{s_a - s} v_a + e^{s_b - s} v_b.

#include <cstddef>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct MergeStates {};
}  // namespace ops

/// Merges num_states partial states per (token, head). A state with lse = -inf (saw nothing)
/// contributes nothing; if all do, out = 0 and lse_out = -inf.
///   v       [tokens][num_states][heads][head_dim]
///   s       [tokens][num_states][heads]
///   v_out   [tokens][heads][head_dim]
///   s_out   [tokens][heads]
template <ExecutionSpace S>
void merge_states(S const& space, ShapedView<float const, 4> v, ShapedView<float const, 3> s, ShapedView<float, 3> v_out,
                  ShapedView<float, 2> s_out) {
  static_assert(HasKernel<ops::MergeStates, S>,
                "piecrust::merge_states: this execution space does not implement op MergeStates "
                "(no KernelImpl<ops::MergeStates, Space> specialization is visible)");
  if constexpr (HasKernel<ops::MergeStates, S>) {
    constexpr char const* op = "merge_states";
    detail::check_extent(op, "s.extent(0)", s.extent(0), v.extent(0));
    detail::check_extent(op, "s.extent(1)", s.extent(1), v.extent(1));
    detail::check_extent(op, "s.extent(2)", s.extent(2), v.extent(2));
    detail::check_extent(op, "v_out.extent(0)", v_out.extent(0), v.extent(0));
    detail::check_extent(op, "v_out.extent(1)", v_out.extent(1), v.extent(2));
    detail::check_extent(op, "v_out.extent(2)", v_out.extent(2), v.extent(3));
    detail::check_extent(op, "s_out.extent(0)", s_out.extent(0), v.extent(0));
    detail::check_extent(op, "s_out.extent(1)", s_out.extent(1), v.extent(2));
    KernelImpl<ops::MergeStates, S>::run(space, v, s, v_out, s_out);
  }
}

}  // namespace piecrust
