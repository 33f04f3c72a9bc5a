#pragma once
// Parallel generation with fork: one prompt, prefilled once, then N copy-on-write branches that each sample
// their own continuation. The branches run under Engine::when_all, so every decode step carries all N of them
// in ONE batched model step (N branches cost about one step per token, not N).

#include "common/scoring.hpp"

#include <piecrust/runtime.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace piecrust::examples {

namespace detail {
template <class M>
Task<Generation> run_branch(Context<M> branch, SamplerSpec sampler, StopCondition stop) {
  co_return co_await branch.generate(std::move(sampler), std::move(stop));
}
}  // namespace detail

/// Prefills `prompt` into `root` (all but its last token, which stays pending), forks it `n` times and
/// generates in every branch at once. `root` is left with the prompt only.
template <class M>
Task<std::vector<Generation>> parallel_generation(Engine<M>& engine, Context<M>& root, std::span<std::uint32_t const> prompt,
                                                  std::size_t n, SamplerSpec sampler, StopCondition stop) {
  co_await prefill_all_but_last(root, prompt);
  std::vector<Task<Generation>> branches;
  for (std::size_t i = 0; i < n; ++i) branches.push_back(detail::run_branch(root.fork(), sampler, stop));
  co_return co_await engine.when_all(std::move(branches));
}

}  // namespace piecrust::examples
