// piecrust-custom_sampler: generation with a user-defined sampler (locally typical sampling), a plain C++
// type modelling piecrust::Sampler, next to greedy for comparison.
//
//   piecrust-custom_sampler [--model FILE.gguf | --tiny] [--mass 0.9] [--max-tokens 48] [--prompt TEXT]

#include "common/cli.hpp"
#include "custom_sampler/typical_sampler.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

namespace {
Task<Generation> generate_with(Engine<Llama>& engine, std::vector<std::uint32_t> prompt, SamplerSpec s, StopCondition stop) {
  auto ctx = engine.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(std::move(s), std::move(stop));
}
}  // namespace

int main(int argc, char** argv) {
  float mass = 0.9f;
  std::size_t max_tokens = 48;
  Prompt prompt{"Describe a sunset in two sentences.", "The sunset over the harbour was"};
  auto const o = parse_common(argc, argv, "piecrust-custom_sampler", " [--mass P] [--max-tokens N] [--prompt TEXT]",
                              {{"--mass", real(mass, 0.0, 1.0, Lower::open)},
                               {"--max-tokens", integer(max_tokens, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-custom_sampler");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto const typical = engine.block_on(
        generate_with(engine, ids, SamplerSpec::custom(TypicalSampler(mass, o.seed)), m.answer_stop(max_tokens)));
    auto const greedy = engine.block_on(generate_with(engine, ids, samplers::greedy(), m.answer_stop(max_tokens)));
    std::printf("typical (mass %.2f): %s\n", mass, m.show(typical.tokens).c_str());
    std::printf("greedy:              %s\n", m.show(greedy.tokens).c_str());
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-custom_sampler: %s\n", e.what());
    return 1;
  }
}
