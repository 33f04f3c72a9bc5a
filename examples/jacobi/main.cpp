// piecrust-jacobi: greedy decoding by Jacobi iteration (n guessed tokens verified per pass), compared with
// plain greedy: same tokens, fewer passes.
//
//   piecrust-jacobi [--model FILE.gguf | --tiny] [--n 8] [--max-tokens 96] [--prompt TEXT]

#include "common/cli.hpp"
#include "jacobi/jacobi.hpp"

#include <chrono>
#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

namespace {
Task<Generation> greedy(Engine<Llama>& engine, std::vector<std::uint32_t> prompt, StopCondition stop) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(samplers::greedy(), std::move(stop));
}
Task<JacobiResult> jacobi(Engine<Llama>& engine, std::vector<std::uint32_t> prompt, StopCondition stop, std::size_t n) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  co_return co_await jacobi_generate(engine, ctx, std::move(stop), n);
}
}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 8, max_tokens = 96;
  Prompt prompt{"Count from 1 to 30, separated by commas.", "The numbers from 1 to 30, separated by commas: 1, 2, 3,"};
  auto const o = parse_common(argc, argv, "piecrust-jacobi", " [--n N] [--max-tokens N] [--prompt TEXT]",
                              {{"--n", integer(n, 1, 64)},
                               {"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-jacobi");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    using Clock = std::chrono::steady_clock;
    auto t0 = Clock::now();
    auto const plain = engine.block_on(greedy(engine, ids, m.stop(max_tokens)));
    double const plain_s = std::chrono::duration<double>(Clock::now() - t0).count();
    t0 = Clock::now();
    auto const jac = engine.block_on(jacobi(engine, ids, m.stop(max_tokens), n));
    double const jac_s = std::chrono::duration<double>(Clock::now() - t0).count();
    bool const same = plain.tokens == jac.generation.tokens;
    std::printf("%s\n", m.show(jac.generation.tokens).c_str());
    std::printf("greedy: %zu tokens in %zu passes (%.2f s) | Jacobi n=%zu: %zu passes (%.2f s), %zu guesses accepted | "
                "identical: %s\n",
                plain.tokens.size(), plain.passes, plain_s, n, jac.generation.passes, jac_s, jac.accepted_guesses,
                same ? "yes" : "NO");
    return same ? 0 : 1;
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-jacobi: %s\n", e.what());
    return 1;
  }
}
