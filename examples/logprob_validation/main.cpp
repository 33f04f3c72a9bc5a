// piecrust-logprob_validation: generate an answer, then validate it and two tampered versions of it by their
// token log-probabilities (one pass each). The model's own answer passes; the tampered ones are flagged at
// the tampered tokens.
//
//   piecrust-logprob_validation [--model FILE.gguf | --tiny] [--prompt TEXT] [--min-mean X] [--min-token X]

#include "common/cli.hpp"
#include "logprob_validation/logprob_validation.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

namespace {

Task<void> run(Engine<Llama>& engine, LoadedModel const& m, std::vector<std::uint32_t> prompt,
               std::vector<std::string> tampered_text, ValidationThresholds th) {
  auto ctx = engine.create_context();
  co_await prefill_all_but_last(ctx, std::span(prompt));
  // The answer, from a fork so that `ctx` stays at the prompt for validation.
  auto gen_ctx = ctx.fork();
  Generation const answer = co_await gen_ctx.generate(samplers::greedy(), m.answer_stop(32));
  std::vector<std::uint32_t> out = answer.tokens;
  auto const end = m.answer_end_ids();  // the answer without the token that ended it
  if (!out.empty() && std::find(end.begin(), end.end(), out.back()) != end.end()) out.pop_back();

  std::vector<std::pair<std::string, std::vector<std::uint32_t>>> candidates{{"model answer", out}};
  if (m.has_text()) {
    for (std::string const& t : tampered_text) candidates.push_back({"tampered", m.encode(t)});
  } else {
    auto bad = out;
    if (bad.size() > 2) bad[bad.size() / 2] = (bad[bad.size() / 2] + 255) % 512;
    candidates.push_back({"tampered", bad});
  }
  for (auto const& [label, tokens] : candidates) {
    Validation const v = co_await validate_output(ctx, std::span(tokens), th);
    std::printf("%-12s %s  mean log p %7.3f  min %7.3f  flagged %zu tokens: %s\n", label.c_str(),
                v.accepted ? "ACCEPT" : "REJECT", v.mean, v.min, v.flagged.size(), m.show(tokens).c_str());
    for (std::size_t const i : v.flagged) {
      std::printf("             token %zu %s: log p %.2f\n", i, m.show(std::span(&tokens[i], 1)).c_str(), v.logprobs[i]);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Prompt prompt{"What is the capital of France? Answer in one short sentence.", "Question: What is the capital of France?\nAnswer:"};
  // Thresholds for SmolLM2-135M: its own answers score a mean above -1 with no token below -5.
  ValidationThresholds th{-1.5, -8.0};
  auto const o = parse_common(argc, argv, "piecrust-logprob_validation", " [--prompt TEXT] [--min-mean X] [--min-token X]",
                              {{"--prompt", text(prompt)},
                               {"--min-mean", real(th.min_mean, -1e6, 0.0)},
                               {"--min-token", real(th.min_token, -1e6, 0.0)}});
  try {
    auto const m = load_model(o, "piecrust-logprob_validation");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    // After "Answer:" a completion's first word follows a space, as the model writes it.
    std::string const lead = m.completion ? " " : "";
    engine.block_on(run(engine, m, ids,
                        {lead + "The capital of France is Berlin.", lead + "The capital of France is Paris, a city on the Moon."},
                        th));
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-logprob_validation: %s\n", e.what());
    return 1;
  }
}
