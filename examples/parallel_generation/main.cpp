// piecrust-parallel_generation: N answers to one prompt, generated side by side from forks of one prefilled
// context. Prints each answer and the engine's step count (about one step per token for all N together).
//
//   piecrust-parallel_generation [--model FILE.gguf | --tiny] [--n 4] [--max-tokens 48] [--prompt TEXT]

#include "common/cli.hpp"
#include "parallel_generation/parallel_generation.hpp"

#include <chrono>
#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::size_t n = 4, max_tokens = 48;
  Prompt prompt{"Write a one-line slogan for a bakery.", "Slogan of the bakery on Main Street: \""};
  auto const o = parse_common(argc, argv, "piecrust-parallel_generation", " [--n N] [--max-tokens N] [--prompt TEXT]",
                              {{"--n", integer(n, 1, 64)},
                               {"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-parallel_generation");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto root = engine.create_context();
    auto const t0 = std::chrono::steady_clock::now();
    auto const gens = engine.block_on(
        parallel_generation(engine, root, std::span(ids), n, samplers::top_p(TopP{0.9f}, Temperature{0.8f}), m.answer_stop(max_tokens)));
    double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::size_t total = 0;
    for (std::size_t i = 0; i < gens.size(); ++i) {
      std::printf("[%zu] %s\n", i, m.show(gens[i].tokens).c_str());
      total += gens[i].tokens.size();
    }
    std::printf("%zu branches, %zu tokens in %zu engine steps (%.2f s, %.1f tokens/s)\n", n, total,
                engine.stats().steps, s, static_cast<double>(total) / s);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-parallel_generation: %s\n", e.what());
    return 1;
  }
}
