// piecrust-tree_of_thought: a breadth x depth tree search over sampled "thoughts", pruned to the best paths
// by mean log-probability. Prints the surviving paths, best first.
//
//   piecrust-tree_of_thought [--model FILE.gguf | --tiny] [--breadth 3] [--keep 2] [--depth 4] [--len 16]

#include "common/cli.hpp"
#include "tree_of_thought/tree_of_thought.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  TreeOfThoughtOptions t;
  t.thought_len = 16;
  t.depth = 4;
  Prompt prompt{"Give three steps to make tea, one short step per line.", "How to make tea, in three short steps:\n"};
  auto const o = parse_common(argc, argv, "piecrust-tree_of_thought",
                              " [--breadth B] [--keep K] [--depth D] [--len N] [--prompt TEXT]",
                              {{"--breadth", integer(t.breadth, 1, 16)},
                               {"--keep", integer(t.keep, 1, 64)},
                               {"--depth", integer(t.depth, 1, 16)},
                               {"--len", integer(t.thought_len, 1, 1024)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-tree_of_thought");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    if (m.has_text()) {
      // A thought is one line: it ends at any token whose bytes hold a newline; the path ends at end-of-turn.
      for (std::size_t i = 0; i < m.tokenizer->vocab_size(); ++i) {
        if (m.tokenizer->token_to_bytes(static_cast<TokenId>(i)).find('\n') != std::string::npos) {
          t.thought_end.push_back(static_cast<std::uint32_t>(i));
        }
      }
      t.eos = m.eos_ids();
    }
    auto root = engine.create_context();
    auto const r = engine.block_on(tree_of_thought(engine, root, std::span(ids), t));
    for (Thought const& leaf : r.leaves) {
      std::printf("mean log p %.3f%s:\n", leaf.score(), leaf.complete ? " (complete)" : "");
      for (auto const& s : leaf.steps) std::printf("   | %s\n", m.show(s).c_str());
    }
    std::printf("%zu nodes expanded in %zu engine steps\n", r.nodes_expanded, engine.stats().steps);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-tree_of_thought: %s\n", e.what());
    return 1;
  }
}
