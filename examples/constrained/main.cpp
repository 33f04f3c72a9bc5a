// piecrust-constrained: generation whose output must match a regular expression (here a small JSON object),
// with a random sampler to show the constraint, not luck, keeps it in shape.
//
//   piecrust-constrained [--model FILE.gguf | --tiny] [--pattern REGEX] [--max-tokens 40] [--prompt TEXT]

#include "common/cli.hpp"
#include "constrained/constrained.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::string pattern = R"(\{"name": "[A-Z][a-z]+", "age": [1-9][0-9]?\})";
  Prompt prompt{"Invent a person. Reply with JSON only: name and age.", "A person, as JSON with a name and an age:\n"};
  std::size_t max_tokens = 40;
  auto const o = parse_common(argc, argv, "piecrust-constrained", " [--pattern REGEX] [--max-tokens N] [--prompt TEXT]",
                              {{"--pattern", text(pattern)},
                               {"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-constrained");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> ids;
    std::vector<std::string> bytes;
    std::vector<std::uint32_t> eos;
    if (m.has_text()) {
      ids = m.prompt(prompt);
      bytes = token_bytes(*m.tokenizer);
      eos = m.eos_ids();
    } else {
      // The tiny model has no tokenizer: give its 512 ids a made-up spelling (id 0 is the end of sequence).
      bytes.resize(512);
      std::string const alphabet = R"({}":, abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789)";
      for (std::size_t i = 1; i < bytes.size(); ++i) bytes[i] = std::string(1, alphabet[i % alphabet.size()]);
      ids = {1, 2, 3, 4, 5, 6, 7, 8};
      eos = {0};
    }
    auto const r = engine.block_on(
        constrained_generate(engine, std::span(ids), pattern, bytes, eos, samplers::top_k(TopK{50}, Temperature{1.0f}), max_tokens));
    std::printf("pattern %s\noutput  %s\n%zu tokens, %s\n", pattern.c_str(), r.text.c_str(), r.generation.tokens.size(),
                r.complete ? "a complete match (ended with end-of-sequence)" : "stopped at the token limit");
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-constrained: %s\n", e.what());
    return 1;
  }
}
