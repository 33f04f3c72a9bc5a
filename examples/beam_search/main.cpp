// piecrust-beam_search: beam search of width k, every beam a fork, every step one batched model step.
// Prints the final beams with their total log-probabilities, best first.
//
//   piecrust-beam_search [--model FILE.gguf | --tiny] [--k 4] [--steps 24] [--prompt TEXT]

#include "beam_search/beam_search.hpp"
#include "common/cli.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::size_t k = 4, steps = 24;
  Prompt prompt{"Complete the sentence: The best thing about autumn is", "The best thing about autumn is"};
  auto const o = parse_common(argc, argv, "piecrust-beam_search", " [--k K] [--steps N] [--prompt TEXT]",
                              {{"--k", integer(k, 1, 64)},
                               {"--steps", integer(steps, 1, 4096)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-beam_search");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto root = engine.create_context();
    auto const beams = engine.block_on(beam_search(engine, root, std::span(ids), k, steps, m.answer_end_ids()));
    for (Beam const& b : beams) {
      std::printf("%8.3f %s %s\n", b.score, b.finished ? "(end)" : "     ", m.show(b.tokens).c_str());
    }
    std::printf("%zu engine steps for %zu search steps of width %zu\n", engine.stats().steps, steps, k);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-beam_search: %s\n", e.what());
    return 1;
  }
}
