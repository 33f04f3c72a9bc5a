#pragma once
// Best-of-N: sample N complete answers from forks of one prefilled prompt (batched together), score each by
// its mean token log-probability under the model, and return them best first. Mean rather than sum so that
// a short answer is not preferred just for being short.

#include "common/scoring.hpp"

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace piecrust::examples {

struct Candidate {
  std::size_t index = 0;  // which fork produced it
  ScoredGeneration generation;
  [[nodiscard]] double score() const { return generation.mean(); }
};

namespace detail {
template <class M>
Task<ScoredGeneration> sample_candidate(Context<M> branch, SamplerSpec sampler, StopCondition stop) {
  co_return co_await generate_scored(branch, std::move(sampler), std::move(stop));
}
}  // namespace detail

/// N candidates after `prompt` (prefilled once into `root`), sorted by mean log-probability, best first.
template <class M>
Task<std::vector<Candidate>> best_of_n(Engine<M>& engine, Context<M>& root, std::span<std::uint32_t const> prompt,
                                       std::size_t n, SamplerSpec sampler, StopCondition stop) {
  co_await prefill_all_but_last(root, prompt);
  std::vector<Task<ScoredGeneration>> work;
  for (std::size_t i = 0; i < n; ++i) work.push_back(detail::sample_candidate(root.fork(), sampler, stop));
  auto gens = co_await engine.when_all(std::move(work));
  std::vector<Candidate> out;
  for (std::size_t i = 0; i < gens.size(); ++i) out.push_back({i, std::move(gens[i])});
  std::stable_sort(out.begin(), out.end(), [](Candidate const& a, Candidate const& b) { return a.score() > b.score(); });
  co_return out;
}

}  // namespace piecrust::examples
