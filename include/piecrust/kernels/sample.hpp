#pragma once
// sample: one token per row of logits, each row with its own sampler, LogitMask and Philox key.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/core/logit_mask.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/detail/logit_checks.hpp"
#include "piecrust/kernels/logit_edits.hpp"
#include "piecrust/kernels/philox.hpp"
#include "piecrust/kernels/sampling_params.hpp"

namespace piecrust {
namespace ops {
struct Sample {};
}  // namespace ops

/// out[r] = a token drawn from row r's filtered distribution (SamplingParams) after masks[r].
///   logits [rows][vocab]
///   params [rows], keys [rows] (seed, row stream, step), masks [rows] or empty (allow all)
///   inputs [rows] or empty: each row's recent tokens and logit bias (host memory), read by its penalties
///   out    [rows]
/// The logits a row samples from are first adjusted by its logit bias and penalties (logit_edits.hpp).
/// A forbidden id is never returned. Throws InvalidArgument / OutOfRange (naming the row) for bad params,
/// inputs, a mask of the wrong size or one that allows nothing, before sampling any row. A row whose
/// allowed logits are all -inf has no distribution; its token is unspecified (the logits stay on the
/// space, so this is not checked).
template <ExecutionSpace S>
void sample(S const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
            std::span<LogitMask const> masks, std::span<SampleKey const> keys, std::span<SampleRowInputs const> inputs,
            std::span<std::uint32_t> out) {
  static_assert(HasKernel<ops::Sample, S>,
                "piecrust::sample: this execution space does not implement op Sample "
                "(no KernelImpl<ops::Sample, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Sample, S>) {
    std::size_t const rows = logits.extent(0);
    detail::check_extent("sample", "params.size() (rows)", params.size(), rows);
    detail::check_extent("sample", "keys.size() (rows)", keys.size(), rows);
    detail::check_extent("sample", "out.size() (rows)", out.size(), rows);
    detail::check_logit_masks("sample", rows, logits.extent(1), masks);
    for (std::size_t r = 0; r < rows; ++r) params[r].validate("sample", r);
    LogitEdits const edits = make_logit_edits("sample", params, inputs, logits.extent(1));
    KernelImpl<ops::Sample, S>::run(space, logits, params, masks, keys, edits, out);
  }
}

/// sample without logit bias or penalties.
template <ExecutionSpace S>
void sample(S const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
            std::span<LogitMask const> masks, std::span<SampleKey const> keys, std::span<std::uint32_t> out) {
  sample(space, logits, params, masks, keys, std::span<SampleRowInputs const>{}, out);
}

}  // namespace piecrust
