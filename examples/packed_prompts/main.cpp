// piecrust-packed_prompts: several short prompts packed into one context with segment ids (a MaskInfo per
// pass), decoded greedily side by side, and each compared with the same prompt run alone in its own context.
//
//   piecrust-packed_prompts [--model FILE.gguf | --tiny] [--max-tokens 8]

#include "common/cli.hpp"
#include "packed_prompts/packed_prompts.hpp"

#include <cstdio>
#include <string>
#include <vector>

using namespace piecrust;
using namespace piecrust::examples;

namespace {
Task<Generation> alone(Engine<Llama>& engine, std::vector<std::uint32_t> prompt, std::size_t n) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(samplers::greedy(), max_len(n));
}
Task<PackedResult> packed(Engine<Llama>& engine, std::vector<std::vector<std::uint32_t>> prompts, std::size_t n) {
  auto ctx = engine.create_context();
  co_return co_await packed_greedy(ctx, std::move(prompts), n);
}
}  // namespace

int main(int argc, char** argv) {
  std::size_t max_tokens = 8;
  std::vector<Prompt> const prompts{{"What is the capital of France?", "The capital of France is"},
                                    {"Name a color of the rainbow.", "One color of the rainbow is"},
                                    {"What do bees make?", "Bees make"}};
  auto const o = parse_common(argc, argv, "piecrust-packed_prompts", " [--max-tokens N]",
                              {{"--max-tokens", integer(max_tokens, 1, 256)}});
  try {
    auto const m = load_model(o, "piecrust-packed_prompts");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::vector<std::uint32_t>> ids;
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      ids.push_back(m.has_text() ? m.prompt(prompts[p])
                                 : std::vector<std::uint32_t>{1, static_cast<std::uint32_t>(10 + p), 7, 3});
    }
    auto const together = engine.block_on(packed(engine, ids, max_tokens));
    std::size_t alone_passes = 0;
    bool all_same = true;
    for (std::size_t p = 0; p < ids.size(); ++p) {
      auto const one = engine.block_on(alone(engine, ids[p], max_tokens));
      alone_passes += one.passes;
      bool const same = one.tokens == together.tokens[p];
      all_same = all_same && same;
      std::printf("[%zu] packed: %s\n    alone:  %s  (%s)\n", p, m.show(together.tokens[p]).c_str(),
                  m.show(one.tokens).c_str(), same ? "same" : "DIFFERENT");
    }
    std::printf("%zu prompts x %zu tokens: %zu packed passes vs %zu alone | identical: %s\n", ids.size(), max_tokens,
                together.passes, alone_passes, all_same ? "yes" : "NO");
    return all_same ? 0 : 1;
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-packed_prompts: %s\n", e.what());
    return 1;
  }
}
