#pragma once
// KernelImpl<ops::PagedAttention, Cuda>: piecrust::paged_attention on a Cuda space. q, the KV pool, out
// and lse are device memory of space.device(); PagedBatch spans, masks and TrimPlans are host objects.
// Unplanned calls build and upload their tile plan per call (space.scratch(); see launch.hpp and
// tile_plan.hpp). KernelImpl<ops::PlanAttention, Cuda> plans a step once: the first layer's launch, which
// knows the KV element type, builds the tile plan and uploads it to space.plan_scratch() in one copy, and
// every later layer of the step launches from it.

#include "piecrust/config.hpp"
#include <cstddef>
#include <cstdint>
#include <memory>
#include <variant>

#include "piecrust/backends/cuda/attention/launch.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/attention_plan.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_attention.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust {

template <>
struct KernelImpl<ops::PlanAttention, Cuda> {
  /// The staged tile plan of the step, for the KV type of its first launch, and the plan arena's frame.
  struct Staged {
    std::variant<std::monostate, cuda::attention::StagedPlan<float>, cuda::attention::StagedPlan<BFloat16>> plan;
    std::uint64_t frame = 0;
  };
  struct plan_type {
    AttentionProblem problem;
    std::shared_ptr<Staged> staged = std::make_shared<Staged>();  // shared by the plan's copies
  };
  static plan_type plan(Cuda const&, AttentionProblem const& problem) { return plan_type{problem}; }
};

template <>
struct KernelImpl<ops::PagedAttention, Cuda> {
  template <std::size_t HeadDim, class T>
  static void run(Cuda const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, PagedBatch const& batch,
                  ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params,
                  AttentionSelection const& selection) {
    gpu::DeviceGuard guard(space.device());
    cuda::attention::launch_paged_attention<HeadDim, T>(space.scratch(), space.stream(), space.device(), q, kv, batch,
                                                        selection, params, out, lse);
  }

  /// One layer over the step's plan: staged at the first call (or again if the plan arena was reused since).
  template <std::size_t HeadDim, class T>
  static void run_planned(Cuda const& space, ShapedView<float const, 3> q, PagedKv<T const> kv,
                          KernelImpl<ops::PlanAttention, Cuda>::plan_type const& plan, ShapedView<float, 3> out,
                          ShapedView<float, 2> lse, PagedAttentionParams const& params) {
    gpu::DeviceGuard guard(space.device());
    auto& staged = *plan.staged;
    auto* sp = std::get_if<cuda::attention::StagedPlan<T>>(&staged.plan);
    if (sp == nullptr || staged.frame != space.plan_scratch().frame()) {
      AttentionProblem const& p = plan.problem;
      sp = &staged.plan.template emplace<cuda::attention::StagedPlan<T>>();
      cuda::attention::stage_plan<HeadDim, T>(space.plan_scratch(), space.device(), p.tokens, p.qo_heads, kv, p.batch,
                                              p.selection, *sp);
      staged.frame = space.plan_scratch().frame();
    }
    cuda::attention::launch_staged<HeadDim, T>(*sp, space.stream(), q, kv, params, out, lse);
  }
};

}  // namespace piecrust

#endif  // PIECRUST_DEVICE_COMPILE
