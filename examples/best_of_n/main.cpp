// piecrust-best_of_n: sample N answers in parallel and keep the one the model itself finds most likely
// (highest mean token log-probability). Prints every candidate with its score, best first.
//
//   piecrust-best_of_n [--model FILE.gguf | --tiny] [--n 6] [--max-tokens 40] [--temperature 1.0] [--prompt TEXT]

#include "best_of_n/best_of_n.hpp"
#include "common/cli.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::size_t n = 6, max_tokens = 40;
  float temperature = 1.0f;
  Prompt prompt{"What is the capital of France? Answer in one sentence.", "Question: What is the capital of France?\nAnswer:"};
  auto const o = parse_common(argc, argv, "piecrust-best_of_n", " [--n N] [--max-tokens N] [--temperature T] [--prompt TEXT]",
                              {{"--n", integer(n, 1, 64)},
                               {"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--temperature", real(temperature, 0.0, 100.0, Lower::open)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-best_of_n");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto root = engine.create_context();
    auto const cands =
        engine.block_on(best_of_n(engine, root, std::span(ids), n, samplers::temperature(Temperature(temperature)), m.answer_stop(max_tokens)));
    for (Candidate const& c : cands) {
      std::printf("%s mean log p %7.3f  #%zu: %s\n", &c == &cands.front() ? "BEST" : "    ", c.score(), c.index,
                  m.show(c.generation.tokens).c_str());
    }
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-best_of_n: %s\n", e.what());
    return 1;
  }
}
