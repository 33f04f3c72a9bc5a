#pragma once
// Jacobi decoding (Santilli et al. 2023, "Accelerating Transformer Inference for Translation via Parallel
// Decoding"; Fu et al. 2024, "Break the Sequential Dependency of LLM Inference Using Lookahead Decoding"):
// guess the next n tokens, run them all in ONE pass at their explicit positions (Forward::input_at) and
// sample greedily at every index. Output y[j] is the greedy token after the prefix plus guess[0..j-1], so
// y[0] is always right and y[j] is right as long as guess[0..j-1] were. Keep the agreeing prefix, roll the
// rest back (truncate_working_page_tokens), and use the model's outputs as the next guess: a fixed-point
// iteration whose result is exactly greedy decoding, in fewer passes whenever guesses turn out right.

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace piecrust::examples {

struct JacobiResult {
  Generation generation;            // tokens equal plain greedy decoding's
  std::size_t accepted_guesses = 0;  // guessed tokens that turned out right (tokens beyond one per pass)
};

/// Greedy decoding after the context's pending tokens by Jacobi iteration with `n` guessed tokens per pass.
template <class M>
Task<JacobiResult> jacobi_generate(Engine<M>& engine, Context<M>& ctx, StopCondition stop, std::size_t n = 8) {
  if (ctx.pending_tokens().empty()) piecrust::detail::fail<InvalidState>("jacobi_generate: fill the context first");
  JacobiResult r;
  Generation& g = r.generation;
  std::size_t const limit = engine.shape().context_length;
  std::vector<std::uint32_t> guess(n, ctx.pending_tokens().back());  // any guess converges; this one is cheap
  for (;;) {
    std::size_t const np = ctx.pending_tokens().size();
    std::size_t const room = limit > 0 ? limit - std::min(limit, ctx.seq_len() + np + 1) : n;
    guess.resize(std::min(n, room));
    std::size_t const k = guess.size();

    // One pass: the pending tokens, then the k guesses at the positions right after them.
    std::uint32_t const first = ctx.page_table().next_position() + static_cast<std::uint32_t>(np);
    std::vector<std::uint32_t> positions(k);
    for (std::size_t j = 0; j < k; ++j) positions[j] = first + static_cast<std::uint32_t>(j);
    auto fwd = ctx.forward();
    fwd.input_pending();
    fwd.input_at(guess, positions);
    std::vector<std::size_t> at(k + 1);  // after the last pending token, then after every guess
    for (std::size_t j = 0; j <= k; ++j) at[j] = np - 1 + j;
    auto const h = fwd.sample(at, samplers::greedy());
    fwd.defer_commit();  // the guesses' K/V stay in working pages until we know which are right
    ForwardOutput out = co_await fwd.execute();
    ++g.passes;
    auto const y = out.tokens(h);  // [k + 1]

    std::size_t m = 0;  // guesses that agree with the model's choice given everything before them
    while (m < k && guess[m] == y[m]) ++m;
    // y[0..m] are all exact greedy tokens. Emit them until the stop condition fires.
    std::size_t used = 0;
    bool stopped = false;
    for (std::size_t j = 0; j <= m; ++j) {
      g.tokens.push_back(y[j]);
      ++used;
      if (stop.should_stop(g.tokens) || (limit > 0 && ctx.seq_len() - (k - j) + 1 >= limit)) {
        stopped = true;
        break;
      }
    }
    r.accepted_guesses += used - 1;
    // The K/V of guesses 0..used-2 (== y[0..used-2]) is valid; the last emitted token stays pending.
    auto raw = ctx.inner();
    raw.truncate_working_page_tokens(k - (used - 1));
    std::size_t const full = raw.page_table().working_token_count() / ctx.page_size();
    if (full > 0) raw.commit_working_pages(full);
    std::uint32_t const last = y[used - 1];
    ctx.fill(std::span(&last, 1));
    if (stopped) break;
    // Next guess: the model's own outputs past the accepted ones, padded with the last of them.
    guess.assign(y.begin() + static_cast<std::ptrdiff_t>(m + 1), y.end());
    while (guess.size() < n) guess.push_back(guess.empty() ? last : guess.back());
  }
  g.text = engine.decode_text(g.tokens);
  co_return r;
}

}  // namespace piecrust::examples
