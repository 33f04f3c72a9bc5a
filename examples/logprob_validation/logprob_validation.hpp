#pragma once
// Output validation by log-probabilities: before trusting an output (a generated answer, a cached answer, a
// user-supplied completion), score every token of it under the model in ONE forward pass (Logprob probes at
// every position) and flag the tokens the model finds implausible. An output is accepted when its mean token
// log-probability and every single token's log-probability clear their thresholds.

#include "common/scoring.hpp"

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace piecrust::examples {

struct ValidationThresholds {
  double min_mean = -3.0;    // mean token log-probability
  double min_token = -12.0;  // any single token
};

struct Validation {
  std::vector<double> logprobs;  // [output tokens] log p(token | prompt, earlier output)
  double mean = 0;
  double min = 0;
  std::vector<std::size_t> flagged;  // indices of tokens below min_token
  bool accepted = false;
};

/// Scores `output` after the context's tokens (the context must end with a pending token: fill the prompt,
/// or use prefill_all_but_last) without changing the context.
template <class M>
Task<Validation> validate_output(Context<M> const& ctx, std::span<std::uint32_t const> output, ValidationThresholds th = {}) {
  Validation v;
  v.logprobs = co_await score_continuation(ctx, output);
  v.min = std::numeric_limits<double>::infinity();
  double sum = 0;
  for (std::size_t i = 0; i < v.logprobs.size(); ++i) {
    sum += v.logprobs[i];
    v.min = std::min(v.min, v.logprobs[i]);
    if (v.logprobs[i] < th.min_token) v.flagged.push_back(i);
  }
  v.mean = v.logprobs.empty() ? 0.0 : sum / static_cast<double>(v.logprobs.size());
  v.accepted = !v.logprobs.empty() && v.mean >= th.min_mean && v.flagged.empty();
  co_return v;
}

}  // namespace piecrust::examples
