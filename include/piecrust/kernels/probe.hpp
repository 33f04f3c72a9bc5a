#pragma once
// Probes: read-only views of the model's next-token distribution. All act on softmax(logits / T)
// over the ids a row's LogitMask allows (masked ids have probability 0, log-probability -inf).
//  * probe_distribution: the k most likely tokens and their probabilities (k = 0: the whole
//    vocabulary), in the token order of sampling (probability descending, then id ascending);
//  * probe_logprobs: log-probabilities of given ids;
//  * probe_entropy: the entropy in nats (0 <= H <= ln V).
// The logits themselves are the model's output rows; copy them for a logits probe.
// A row whose allowed logits are all -inf has no distribution: its probabilities are NaN.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/core/logit_mask.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/detail/logit_checks.hpp"

namespace piecrust {
namespace ops {
struct ProbeDistribution {};
struct ProbeLogprobs {};
struct ProbeEntropy {};
}  // namespace ops

/// ids [rows][k'] and probs [rows][k'] with k' = k (or vocab for k = 0). Entries past the allowed
/// tokens hold forbidden ids in increasing order with probability 0.
///   logits [rows][vocab], masks [rows] or empty
template <ExecutionSpace S>
void probe_distribution(S const& space, ShapedView<float const, 2> logits, std::size_t k, float temperature,
                        std::span<LogitMask const> masks, ShapedView<std::uint32_t, 2> ids, ShapedView<float, 2> probs) {
  static_assert(HasKernel<ops::ProbeDistribution, S>,
                "piecrust::probe_distribution: this execution space does not implement op ProbeDistribution "
                "(no KernelImpl<ops::ProbeDistribution, Space> specialization is visible)");
  if constexpr (HasKernel<ops::ProbeDistribution, S>) {
    constexpr char const* op = "probe_distribution";
    std::size_t const vocab = logits.extent(1);
    detail::check_logit_masks(op, logits.extent(0), vocab, masks);
    detail::check_temperature(op, temperature);
    if (k > vocab) detail::fail<InvalidArgument>(op, ": k = ", k, " > vocab = ", vocab);
    std::size_t const kk = k == 0 ? vocab : k;
    detail::check_extent(op, "ids.extent(0)", ids.extent(0), logits.extent(0));
    detail::check_extent(op, "ids.extent(1) (k)", ids.extent(1), kk);
    detail::check_extent(op, "probs.extent(0)", probs.extent(0), logits.extent(0));
    detail::check_extent(op, "probs.extent(1) (k)", probs.extent(1), kk);
    KernelImpl<ops::ProbeDistribution, S>::run(space, logits, temperature, masks, ids, probs);
  }
}

/// out[r][j] = log p(ids[r][j]) in row r.
///   logits [rows][vocab], ids [rows][n], out [rows][n], masks [rows] or empty
template <ExecutionSpace S>
void probe_logprobs(S const& space, ShapedView<float const, 2> logits, ShapedView<std::uint32_t const, 2> ids,
                    float temperature, std::span<LogitMask const> masks, ShapedView<float, 2> out) {
  static_assert(HasKernel<ops::ProbeLogprobs, S>,
                "piecrust::probe_logprobs: this execution space does not implement op ProbeLogprobs "
                "(no KernelImpl<ops::ProbeLogprobs, Space> specialization is visible)");
  if constexpr (HasKernel<ops::ProbeLogprobs, S>) {
    constexpr char const* op = "probe_logprobs";
    std::size_t const vocab = logits.extent(1);
    detail::check_logit_masks(op, logits.extent(0), vocab, masks);
    detail::check_temperature(op, temperature);
    detail::check_extent(op, "ids.extent(0)", ids.extent(0), logits.extent(0));
    detail::check_extent(op, "out.extent(0)", out.extent(0), logits.extent(0));
    detail::check_extent(op, "out.extent(1)", out.extent(1), ids.extent(1));
    for (std::size_t r = 0; r < ids.extent(0); ++r) {
      for (std::size_t j = 0; j < ids.extent(1); ++j) {
        if (ids(r, j) >= vocab) detail::fail<OutOfRange>(op, ": ids[", r, "][", j, "] = ", ids(r, j), " >= vocab = ", vocab);
      }
    }
    KernelImpl<ops::ProbeLogprobs, S>::run(space, logits, ids, temperature, masks, out);
  }
}

/// out[r] = entropy of row r's distribution, in nats.
template <ExecutionSpace S>
void probe_entropy(S const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                   std::span<float> out) {
  static_assert(HasKernel<ops::ProbeEntropy, S>,
                "piecrust::probe_entropy: this execution space does not implement op ProbeEntropy "
                "(no KernelImpl<ops::ProbeEntropy, Space> specialization is visible)");
  if constexpr (HasKernel<ops::ProbeEntropy, S>) {
    constexpr char const* op = "probe_entropy";
    detail::check_logit_masks(op, logits.extent(0), logits.extent(1), masks);
    detail::check_temperature(op, temperature);
    detail::check_extent(op, "out.size() (rows)", out.size(), logits.extent(0));
    KernelImpl<ops::ProbeEntropy, S>::run(space, logits, temperature, masks, out);
  }
}

}  // namespace piecrust
