// piecrust-speculative: greedy decoding with and without the n-gram drafter on a prompt whose answer repeats
// it (rewriting a list). Prints the speed-up and checks the two outputs are identical.
//
//   piecrust-speculative [--model FILE.gguf | --tiny] [--max-tokens 128] [--draft 8] [--ngram 3]

#include "common/cli.hpp"
#include "speculative/speculative.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::size_t max_tokens = 128, draft = 8, ngram = 3;
  auto const o = parse_common(argc, argv, "piecrust-speculative", " [--max-tokens N] [--draft N] [--ngram N]",
                              {{"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--draft", integer(draft, 1, 64)},
                               {"--ngram", integer(ngram, 1, 16)}});
  try {
    auto const m = load_model(o, "piecrust-speculative");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> ids;
    if (m.has_text()) {
      std::string const list =
          "- apples, 3 kg, from the market on Monday\n"
          "- pears, 2 kg, from the market on Tuesday\n"
          "- plums, 1 kg, from the market on Wednesday\n"
          "- grapes, 4 kg, from the market on Thursday\n";
      ids = m.prompt({"Repeat this list exactly, one item per line:\n" + list,
                      "Shopping list:\n" + list + "\nThe same shopping list, copied exactly:\n"});
    } else {
      for (int r = 0; r < 8; ++r) {
        for (std::uint32_t t : {11u, 22u, 33u, 44u, 55u, 66u}) ids.push_back(t);
      }
    }
    auto const c = engine.block_on(compare_speculative(engine, std::span(ids), m.stop(max_tokens), ngram, draft));
    std::printf("%s\n", m.show(c.speculative.tokens).c_str());
    std::printf("plain greedy: %zu tokens, %zu passes, %.2f s | n-gram speculative: %zu passes, %.2f s | "
                "speed-up %.2fx | outputs identical: %s\n",
                c.plain.tokens.size(), c.plain.passes, c.plain_s, c.speculative.passes, c.speculative_s, c.speedup(),
                c.identical() ? "yes" : "NO");
    return c.identical() ? 0 : 1;
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-speculative: %s\n", e.what());
    return 1;
  }
}
