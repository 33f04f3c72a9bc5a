#pragma once
// Helpers the examples share: prefilling a prompt so that forks share its pages, sampling one token together
// with its log-probability, and scoring a given continuation in one forward pass.
//
// Log-probabilities are always the model's own, at temperature 1 (whatever sampler picked the token), so scores
// of different candidates are comparable.

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace piecrust::examples {

/// log softmax(logits)[id], computed in double (log-sum-exp with the maximum subtracted).
inline double log_softmax_at(std::span<float const> logits, std::uint32_t id) {
  float const mx = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (float const l : logits) z += std::exp(static_cast<double>(l) - mx);
  return static_cast<double>(logits[id]) - mx - std::log(z);
}

/// Fills `prompt` and prefills all of it but the last token, which stays pending. Forks made afterwards share
/// the prompt's committed pages and each continue from the pending token (a generation needs one to start from).
template <class M>
Task<void> prefill_all_but_last(Context<M>& ctx, std::span<std::uint32_t const> prompt) {
  if (prompt.size() > 1) {
    ctx.fill(prompt.first(prompt.size() - 1));
    co_await ctx.flush();
  }
  if (!prompt.empty()) ctx.fill(prompt.last(1));
}

/// One sampled token and its log-probability under the model.
struct ScoredToken {
  std::uint32_t token = 0;
  double logprob = 0;
};

/// One pass over the context's pending tokens: samples the next token with `sampler` and reads its log-prob
/// from the logits of the same pass. The sampled token is left pending (as Context::generate does).
template <class M>
Task<ScoredToken> sample_scored(Context<M>& ctx, SamplerSpec const& sampler) {
  auto fwd = ctx.forward();
  fwd.input_pending();
  std::size_t const last = ctx.pending_tokens().size() - 1;
  auto const s = fwd.sample({last}, sampler);
  auto const lg = fwd.probe(last, Logits{});
  ForwardOutput out = co_await fwd.execute();
  ScoredToken r{out.token(s), 0.0};
  r.logprob = log_softmax_at(out.logits(lg), r.token);
  std::uint32_t const t = r.token;
  ctx.fill(std::span(&t, 1));
  co_return r;
}

/// A generation with the log-probability of every token.
struct ScoredGeneration {
  std::vector<std::uint32_t> tokens;
  std::vector<double> logprobs;  // [tokens.size()]
  [[nodiscard]] double sum() const {
    double s = 0;
    for (double const l : logprobs) s += l;
    return s;
  }
  [[nodiscard]] double mean() const {
    return logprobs.empty() ? -std::numeric_limits<double>::infinity() : sum() / static_cast<double>(logprobs.size());
  }
};

/// Generates until `stop` fires, recording each token's log-probability.
template <class M>
Task<ScoredGeneration> generate_scored(Context<M>& ctx, SamplerSpec sampler, StopCondition stop) {
  ScoredGeneration g;
  do {
    ScoredToken const t = co_await sample_scored(ctx, sampler);
    g.tokens.push_back(t.token);
    g.logprobs.push_back(t.logprob);
  } while (!stop.should_stop(g.tokens));
  co_return g;
}

/// The log-probability of each token of `continuation` after the context's tokens, in ONE forward pass on a
/// fork (the context itself is not changed). The context must have a pending token to continue from.
template <class M>
Task<std::vector<double>> score_continuation(Context<M> const& ctx, std::span<std::uint32_t const> continuation) {
  std::vector<double> lp;
  if (continuation.empty()) co_return lp;
  Context<M> probe_ctx = ctx.fork();
  std::size_t const np = probe_ctx.pending_tokens().size();
  auto fwd = probe_ctx.forward();
  fwd.input_pending();
  fwd.input(continuation.first(continuation.size() - 1));
  std::vector<ProbeHandle<Logprob>> h;
  for (std::size_t j = 0; j < continuation.size(); ++j) h.push_back(fwd.probe(np - 1 + j, Logprob{continuation[j]}));
  ForwardOutput out = co_await fwd.execute();
  for (auto const& x : h) lp.push_back(out.logprobs(x)[0]);
  co_return lp;
}

}  // namespace piecrust::examples
