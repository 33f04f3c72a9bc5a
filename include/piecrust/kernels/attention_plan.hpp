#pragma once
// A step's attention, planned once: every layer of a model step attends with the same tokens, heads, page
// tables and masks, so the batch is validated (and a backend's device plan built and uploaded) once per
// step by plan_attention, and each layer's paged_attention reads the plan.
//
// KernelImpl<ops::PlanAttention, S> (optional) provides
//   using plan_type = ...;                                    // has a member `AttentionProblem problem`
//   static plan_type plan(S const&, AttentionProblem const&);
// and then KernelImpl<ops::PagedAttention, S>::run_planned<HeadDim>(space, q, kv, plan, out, lse, params).
// Without it the plan is the validated problem and each layer runs KernelImpl<ops::PagedAttention, S>::run.

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/detail/dispatch.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/paged_kv.hpp"

namespace piecrust {
namespace ops {
struct PlanAttention {};
}  // namespace ops

/// What every layer of a step shares. The spans (batch, selection) are host memory that must outlive the
/// plan (a step's ForwardBatch).
struct AttentionProblem {
  std::size_t tokens = 0;
  std::size_t qo_heads = 0;
  std::size_t head_dim = 0;
  std::size_t num_kv_heads = 0;
  std::size_t num_pages = 0;  // of the KV pool
  std::size_t page_size = 0;
  PagedBatch batch;
  AttentionSelection selection;
};

namespace detail {
template <class S>
concept HasAttentionPlan = requires { typename KernelImpl<ops::PlanAttention, S>::plan_type; };
template <class S>
struct AttentionPlanOf {
  struct type {
    AttentionProblem problem;
  };
};
template <class S>
  requires HasAttentionPlan<S>
struct AttentionPlanOf<S> {
  using type = typename KernelImpl<ops::PlanAttention, S>::plan_type;
};
}  // namespace detail

/// The plan type of space S.
template <ExecutionSpace S>
using AttentionPlan = typename detail::AttentionPlanOf<S>::type;

/// Validates the step's attention problem (the checks of paged_attention) and plans it for the space.
template <ExecutionSpace S>
[[nodiscard]] AttentionPlan<S> plan_attention(S const& space, AttentionProblem const& problem) {
  if (problem.page_size == 0 || problem.num_kv_heads == 0 || problem.head_dim == 0) {
    detail::fail<InvalidArgument>("plan_attention: page_size = ", problem.page_size, ", num_kv_heads = ", problem.num_kv_heads,
                                  ", head_dim = ", problem.head_dim, " (all must be > 0)");
  }
  detail::validate_paged_attention(problem.tokens, problem.qo_heads, problem.head_dim, problem.num_kv_heads, problem.head_dim,
                                   problem.num_pages, problem.page_size, problem.batch, problem.selection);
  detail::dispatch_head_dim("plan_attention", problem.head_dim, [](auto) {});
  if constexpr (detail::HasAttentionPlan<S>) {
    return KernelImpl<ops::PlanAttention, S>::plan(space, problem);
  } else {
    (void)space;
    return AttentionPlan<S>{problem};
  }
}

/// paged_attention over a planned step (shapes as paged_attention; q, out and lse must have the plan's
/// tokens and heads, kv the plan's pool shape).
template <ExecutionSpace S, class T>
  requires KvElement<std::remove_const_t<T>>
void paged_attention(S const& space, ShapedView<float const, 3> q, PagedKv<T> kv, AttentionPlan<S> const& plan,
                     ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params = {}) {
  static_assert(HasKernel<ops::PagedAttention, S>,
                "piecrust::paged_attention: this execution space does not implement op PagedAttention "
                "(no KernelImpl<ops::PagedAttention, Space> specialization is visible)");
  constexpr char const* op = "paged_attention (planned)";
  AttentionProblem const& p = plan.problem;
  kv.validate(op);
  detail::check_extent(op, "kv.num_pages", kv.num_pages, p.num_pages);
  detail::check_extent(op, "kv.page_size", kv.page_size, p.page_size);
  detail::check_extent(op, "kv.num_kv_heads", kv.num_kv_heads, p.num_kv_heads);
  detail::check_extent(op, "kv.head_dim", kv.head_dim, p.head_dim);
  detail::check_extent(op, "q.extent(0) (tokens)", q.extent(0), p.tokens);
  detail::check_extent(op, "q.extent(1) (qo_heads)", q.extent(1), p.qo_heads);
  detail::check_extent(op, "q.extent(2) (head_dim)", q.extent(2), p.head_dim);
  for (std::size_t d = 0; d < 3; ++d) detail::check_extent(op, "out.extent(d)", out.extent(d), q.extent(d));
  detail::check_extent(op, "lse.extent(0)", lse.extent(0), p.tokens);
  detail::check_extent(op, "lse.extent(1)", lse.extent(1), p.qo_heads);
  if (!(params.logits_soft_cap >= 0.0f)) {
    detail::fail<InvalidArgument>(op, ": logits_soft_cap = ", params.logits_soft_cap, " must be >= 0");
  }
  if constexpr (HasKernel<ops::PagedAttention, S>) {
    PagedAttentionParams pp = params;
    if (pp.sm_scale == 0.0f) pp.sm_scale = 1.0f / std::sqrt(static_cast<float>(p.head_dim));
    using E = std::remove_const_t<T>;
    PagedKv<E const> const ro{kv.data, kv.num_pages, kv.page_size, kv.num_kv_heads, kv.head_dim};
    detail::dispatch_head_dim(op, p.head_dim, [&](auto head_dim) {
      constexpr std::size_t D = decltype(head_dim)::value;
      if constexpr (detail::HasAttentionPlan<S>) {
        KernelImpl<ops::PagedAttention, S>::template run_planned<D>(space, q, ro, plan, out, lse, pp);
      } else {
        KernelImpl<ops::PagedAttention, S>::template run<D>(space, q, ro, p.batch, out, lse, pp, p.selection);
      }
    });
  }
}

}  // namespace piecrust
