// piecrust-chat's default sampling on the real SmolLM2-135M-Instruct (issue 18, "a chat that does not loop"):
// ten prompts, each answered as the chat answers it (its system prompt, the model's chat template, the sampler
// chat_sampling resolves with no options, at most 128 tokens, stopping at an end-of-generation token), all ten
// decoded together through one Engine. No 4-gram of a reply may occur more than 3 times in it. The control:
// greedy decoding, the chat's old default, on the same prompts breaks that rule on at least one of them, so the
// prompts do provoke the loops the defaults must avoid.
// The file: $PIECRUST_MODEL, else the fetch script's cache; the test fails, naming the path, when it is missing.
#include <catch2/catch.hpp>

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include "chat/chat_options.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace piecrust;
using Llama = LlamaModel<Host>;

namespace {

constexpr std::size_t kMaxTokens = 128;
constexpr std::size_t kMaxRepeats = 3;

std::array<char const*, 10> const kPrompts = {
    "Write a haiku about bread.",
    "Tell me a long story about a dragon who loves to bake.",
    "Explain how a rainbow forms.",
    "List ten things to do on a rainy day.",
    "Write a poem about the sea.",
    "What is the meaning of life?",
    "Describe your favourite city in detail.",
    "Write a letter to a friend about your summer holiday.",
    "How do I make a cup of tea?",
    "Write a song about a lonely robot.",
};

/// The largest number of times one 4-gram occurs in `t`.
std::size_t most_repeated_4gram(std::vector<std::uint32_t> const& t) {
  std::map<std::array<std::uint32_t, 4>, std::size_t> counts;
  std::size_t most = 0;
  for (std::size_t i = 0; i + 4 <= t.size(); ++i) most = std::max(most, ++counts[{t[i], t[i + 1], t[i + 2], t[i + 3]}]);
  return most;
}

struct Loaded {
  std::shared_ptr<GgufFile const> file;
  Tokenizer tok;
  ChatTemplate tmpl;
  Llama model;
};

Loaded load(std::string const& path) {
  auto file = std::make_shared<GgufFile const>(GgufFile::open(path));
  Tokenizer tok = Tokenizer::from_gguf(*file);
  ChatTemplate tmpl = ChatTemplate::from_gguf(*file);
  Llama model(LlamaWeights::from_gguf(file), Host{});
  return Loaded{file, std::move(tok), std::move(tmpl), std::move(model)};
}

Task<Generation> answer(Engine<Llama>& engine, Loaded const& m, std::string prompt, SamplerSpec sampler, StopCondition stop) {
  auto ctx = engine.create_context();
  if (!m.tmpl.default_system().empty()) ctx.fill_system(m.tmpl.default_system());
  ctx.fill_user(prompt);
  ctx.fill_generation_prompt();
  co_return co_await ctx.generate(std::move(sampler), std::move(stop));
}

/// Every prompt's reply with `sampler`, decoded together.
std::vector<Generation> replies(Loaded& m, SamplerSpec const& sampler, std::uint64_t seed) {
  EngineOptions opts;
  opts.page_size = 16;
  opts.num_pages = kPrompts.size() * ((256 + kMaxTokens) / 16 + 2);
  opts.seed = seed;
  Engine<Llama> engine(m.model, opts, &m.tok, m.tmpl);
  std::vector<std::uint32_t> eog;
  for (std::size_t id = 0; id < m.tok.vocab_size(); ++id) {
    if (m.tok.is_eog(static_cast<TokenId>(id))) eog.push_back(static_cast<std::uint32_t>(id));
  }
  REQUIRE(!eog.empty());
  std::vector<Task<Generation>> tasks;
  for (char const* p : kPrompts) tasks.push_back(answer(engine, m, p, sampler, max_len(kMaxTokens) || ends_with_any(eog)));
  return engine.block_on(engine.when_all(std::move(tasks)));
}

}  // namespace

TEST_CASE("SmolLM2: the chat's default sampling does not loop on ten prompts; greedy does", "[model][chat]") {
  std::string const path = default_model_path();
  INFO("model file " << path << ": " << fetch_model_hint);
  REQUIRE(std::filesystem::exists(path));
  Loaded m = load(path);

  examples::chat::ChatSampling const s =
      examples::chat::chat_sampling(examples::chat::ChatOptions{}, examples::chat::recommended_sampling(*m.file));
  // SmolLM2's file recommends nothing, so these are the chat's documented defaults.
  CHECK(!s.from_model);
  CHECK(!s.greedy);
  CHECK(s.repeat_penalty == 1.1f);
  SamplerSpec const sampler = examples::chat::make_sampler(s);

  for (std::uint64_t const seed : {0u, 1u}) {
    INFO("seed " << seed);
    std::vector<Generation> const got = replies(m, sampler, seed);
    REQUIRE(got.size() == kPrompts.size());
    std::size_t total = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("prompt " << kPrompts[i] << "\nreply (" << got[i].tokens.size() << " tokens): " << got[i].text);
      CHECK(most_repeated_4gram(got[i].tokens) <= kMaxRepeats);
      total += got[i].tokens.size();
    }
    CHECK(total >= kPrompts.size() * kMaxTokens / 3);  // the replies are long enough for loops to show
  }

  std::vector<Generation> const greedy = replies(m, samplers::greedy(), 0);
  std::size_t looping = 0;
  for (Generation const& g : greedy) looping += most_repeated_4gram(g.tokens) > kMaxRepeats ? 1 : 0;
  CHECK(looping >= 1);
}
