#pragma once
// Beam search: keep the k most likely continuations by cumulative log-probability.
//
// Every step, each live beam runs one pass with a Distribution probe (its top-k next tokens and their
// probabilities); all beams' passes go through Engine::when_all, so one step of the search is ONE batched
// model step. The k best (beam, token) extensions survive: each becomes a fork of its parent beam (committed
// pages shared copy-on-write) with the token appended. A beam that emits an end id is finished and set aside.

#include "common/scoring.hpp"

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace piecrust::examples {

struct Beam {
  std::vector<std::uint32_t> tokens;  // generated tokens (an end id, if any, is the last)
  double score = 0;                   // sum of log p(token) over `tokens`
  bool finished = false;
};

namespace detail {
using Dist = std::pair<std::vector<std::uint32_t>, std::vector<float>>;

template <class M>
Task<Dist> next_distribution(Context<M>& ctx, std::size_t k) {
  co_return co_await ctx.decode_step_dist(1.0f, k);
}
}  // namespace detail

/// Beam search of width `k` for up to `steps` tokens after `prompt` (filled into `root`, which is left with
/// the prompt). Returns the final beams, best first: finished beams (ending with one of `end_ids`) compete
/// with live ones on the same total log-probability.
template <class M>
Task<std::vector<Beam>> beam_search(Engine<M>& engine, Context<M>& root, std::span<std::uint32_t const> prompt,
                                    std::size_t k, std::size_t steps, std::vector<std::uint32_t> end_ids = {}) {
  struct Live {
    Context<M> ctx;  // its last token is pending
    Beam beam;
  };
  co_await prefill_all_but_last(root, prompt);
  std::vector<Live> live;
  live.push_back({root.fork(), Beam{}});
  std::vector<Beam> finished;

  for (std::size_t step = 0; step < steps && !live.empty(); ++step) {
    // One batched step: every live beam's top-k next tokens.
    std::vector<Task<detail::Dist>> passes;
    for (Live& b : live) passes.push_back(detail::next_distribution(b.ctx, k));
    std::vector<detail::Dist> const dists = co_await engine.when_all(std::move(passes));

    struct Candidate {
      std::size_t parent;
      std::uint32_t token;
      double score;
    };
    std::vector<Candidate> cands;
    for (std::size_t b = 0; b < live.size(); ++b) {
      auto const& [ids, probs] = dists[b];
      for (std::size_t j = 0; j < ids.size(); ++j) {
        if (probs[j] <= 0.0f) continue;
        cands.push_back({b, ids[j], live[b].beam.score + std::log(static_cast<double>(probs[j]))});
      }
    }
    std::size_t const keep = std::min(k, cands.size());
    std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end(),
                      [](Candidate const& a, Candidate const& b) { return a.score > b.score; });
    cands.resize(keep);

    std::vector<Live> next;
    for (Candidate const& c : cands) {
      Beam beam = live[c.parent].beam;
      beam.tokens.push_back(c.token);
      beam.score = c.score;
      if (std::find(end_ids.begin(), end_ids.end(), c.token) != end_ids.end()) {
        beam.finished = true;
        finished.push_back(std::move(beam));
        continue;
      }
      Context<M> child = live[c.parent].ctx.fork();  // shares the parent's committed pages
      std::uint32_t const t = c.token;
      child.fill(std::span(&t, 1));
      next.push_back({std::move(child), std::move(beam)});
    }
    live = std::move(next);  // the parents' contexts (and their private pages) are released here
  }

  std::vector<Beam> out = std::move(finished);
  for (Live& b : live) out.push_back(std::move(b.beam));
  std::stable_sort(out.begin(), out.end(), [](Beam const& a, Beam const& b) { return a.score > b.score; });
  if (out.size() > k) out.resize(k);
  co_return out;
}

}  // namespace piecrust::examples
