#pragma once
// Speculative decoding with the n-gram (prompt-lookup) drafter: the drafter proposes the tokens that followed
// the latest earlier occurrence of the last few tokens; one pass verifies the whole draft (sampling greedily
// at every draft position) and keeps the longest agreeing prefix plus the model's own next token. Output is
// identical to plain greedy decoding; on repetitive text (code edits, quoting, lists) it takes far fewer
// passes. This runs both and compares.

#include <piecrust/runtime.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust::examples {

struct SpeculativeComparison {
  Generation plain;        // plain greedy
  Generation speculative;  // greedy with the n-gram drafter
  double plain_s = 0, speculative_s = 0;
  [[nodiscard]] bool identical() const { return plain.tokens == speculative.tokens; }
  [[nodiscard]] double speedup() const { return speculative_s > 0 ? plain_s / speculative_s : 0.0; }
};

template <class M>
Task<Generation> greedy_generation(Engine<M>& engine, std::span<std::uint32_t const> prompt, StopCondition stop) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(samplers::greedy(), std::move(stop));
}

template <class M>
Task<Generation> speculative_generation(Engine<M>& engine, std::span<std::uint32_t const> prompt, StopCondition stop,
                                        std::size_t max_ngram = 3, std::size_t max_draft = 8) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  NgramDrafter drafter(max_ngram, max_draft);
  co_return co_await ctx.generate_with_drafter(drafter, std::move(stop), max_draft);
}

/// Runs plain greedy, then speculative greedy, on the same prompt, timing both.
template <class M>
Task<SpeculativeComparison> compare_speculative(Engine<M>& engine, std::span<std::uint32_t const> prompt, StopCondition stop,
                                                std::size_t max_ngram = 3, std::size_t max_draft = 8) {
  using Clock = std::chrono::steady_clock;
  SpeculativeComparison c;
  auto t0 = Clock::now();
  c.plain = co_await greedy_generation(engine, prompt, stop);
  c.plain_s = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  c.speculative = co_await speculative_generation(engine, prompt, stop, max_ngram, max_draft);
  c.speculative_s = std::chrono::duration<double>(Clock::now() - t0).count();
  co_return c;
}

}  // namespace piecrust::examples
