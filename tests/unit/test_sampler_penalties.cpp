// Sampler arguments, penalties and logit bias through the runtime, and piecrust-chat's default sampling:
//  * the typed arguments (Temperature, TopP, TopK, MinP): plain numbers do not convert, both argument orders
//    (Pie's and piecrust's) give the same sampler;
//  * on the tiny random model, the engine hands each sampled row the context's last last_n tokens, prompt
//    included: a prohibitive presence penalty never lets a token recur within its window, and a logit bias of
//    -inf bans an id for a whole generation;
//  * the chat's sampling: the file's general.sampling.* keys over the defaults, the command line over both.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include "chat/chat_options.hpp"

#include <piecrust/model/gguf_writer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

using namespace piecrust;
using piecrust::testing::Tiny;

static_assert(!std::is_convertible_v<float, TopP> && !std::is_convertible_v<float, Temperature>);
static_assert(!std::is_convertible_v<float, MinP> && !std::is_convertible_v<int, TopK>);
static_assert(!std::is_invocable_v<decltype(static_cast<SamplerSpec (*)(TopP, Temperature)>(samplers::top_p)), float, float>);

TEST_CASE("sampler arguments are typed, and Pie's order gives the same sampler as piecrust's", "[runtime][sampler]") {
  SamplingParams const a = samplers::top_p(TopP{0.9f}, Temperature{0.7f}).params();
  SamplingParams const b = samplers::top_p(Temperature{0.7f}, TopP{0.9f}).params();
  CHECK(a.top_p == 0.9f);
  CHECK(a.temperature == 0.7f);
  CHECK(b.top_p == a.top_p);
  CHECK(b.temperature == a.temperature);
  SamplingParams const c = samplers::top_k_top_p(Temperature{0.6f}, TopK{20}, TopP{0.95f}).params();
  CHECK(c.kind == SamplingKind::top_k_top_p);
  CHECK(c.top_k == 20);
  CHECK(c.top_p == 0.95f);
  CHECK(c.temperature == 0.6f);
  SamplingParams const d = samplers::min_p(Temperature{1.3f}, MinP{0.05f}).params();
  CHECK(d.min_p == 0.05f);
  CHECK(d.temperature == 1.3f);
  SamplerSpec const pen = samplers::top_k(TopK{5}).with_penalties(Penalties{1.2f, 0.1f, 0.2f, 32}).with_logit_bias({{7, -1.0f}});
  CHECK(pen.params().penalties.repeat == 1.2f);
  CHECK(pen.params().penalties.last_n == 32);
  REQUIRE(pen.logit_bias().size() == 1);
  CHECK(pen.logit_bias()[0].id == 7);
}

namespace {

Task<Generation> generate_after(Engine<Tiny>& e, std::vector<std::uint32_t> prompt, SamplerSpec s, std::size_t n) {
  auto ctx = e.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(std::move(s), max_len(n));
}

}  // namespace

TEST_CASE("the engine hands a sampler the context's last last_n tokens, prompt included", "[runtime][sampler]") {
  std::mt19937_64 rng(Catch::rngSeed() + 18);
  Tiny& model = testing::tiny_model();
  Engine<Tiny> engine(model, testing::engine_options());
  std::uniform_int_distribution<std::uint32_t> id(0, 511);
  std::vector<std::uint32_t> prompt(12);
  for (auto& t : prompt) t = id(rng);
  std::uint32_t const last_n = 9;
  SamplerSpec const no_repeat = samplers::greedy().with_penalties(Penalties{1.0f, 1e6f, 0.0f, last_n});
  Generation const g = engine.block_on(generate_after(engine, prompt, no_repeat, 40));
  REQUIRE(g.tokens.size() == 40);
  std::vector<std::uint32_t> all = prompt;
  all.insert(all.end(), g.tokens.begin(), g.tokens.end());
  for (std::size_t i = prompt.size(); i < all.size(); ++i) {
    INFO("token " << i);
    // the sampled row's window is the last_n tokens before it (the sampled input itself included)
    auto const from = all.begin() + static_cast<std::ptrdiff_t>(i - last_n);
    CHECK(std::find(from, all.begin() + static_cast<std::ptrdiff_t>(i), all[i]) == all.begin() + static_cast<std::ptrdiff_t>(i));
  }
  // Without the penalty the tiny model's greedy output repeats within such a window (the check has teeth).
  Generation const plain = engine.block_on(generate_after(engine, prompt, samplers::greedy(), 40));
  std::vector<std::uint32_t> p_all = prompt;
  p_all.insert(p_all.end(), plain.tokens.begin(), plain.tokens.end());
  bool repeats = false;
  for (std::size_t i = prompt.size(); i < p_all.size(); ++i) {
    auto const from = p_all.begin() + static_cast<std::ptrdiff_t>(i - last_n);
    repeats = repeats || std::find(from, p_all.begin() + static_cast<std::ptrdiff_t>(i), p_all[i]) != p_all.begin() + static_cast<std::ptrdiff_t>(i);
  }
  CHECK(repeats);
  // A banned id never appears: ban greedy's first choice at every step.
  std::uint32_t const first = plain.tokens.front();
  Generation const banned = engine.block_on(generate_after(
      engine, prompt, samplers::top_k(TopK{3}, Temperature{2.0f}).with_logit_bias({{first, -std::numeric_limits<float>::infinity()}}), 40));
  CHECK(std::find(banned.tokens.begin(), banned.tokens.end(), first) == banned.tokens.end());
  // A bad bias id fails the pass naming it, and the context is left as it was.
  CHECK_THROWS_AS(engine.block_on(generate_after(engine, prompt, samplers::greedy().with_logit_bias({{512, 1.0f}}), 4)), OutOfRange);
}

TEST_CASE("piecrust-chat's sampling: the model's general.sampling.* keys, else llama.cpp-like defaults; options win",
          "[examples][chat]") {
  using namespace piecrust::examples::chat;
  auto file_with = [](auto fill) {
    GgufWriter w;
    w.set("general.architecture", {std::string("llama")});
    fill(w);
    return GgufFile::parse(w.bytes());
  };
  ChatSampling const none = recommended_sampling(file_with([](GgufWriter&) {}));
  CHECK(!none.from_model);
  CHECK(none.temperature == 0.8f);
  CHECK(none.top_k == 40);
  CHECK(none.top_p == 0.95f);
  CHECK(none.min_p == 0.05f);
  CHECK(none.repeat_penalty == 1.1f);
  CHECK(none.repeat_last_n == 64);
  ChatSampling const rec = recommended_sampling(file_with([](GgufWriter& w) {
    w.set("general.sampling.temp", {0.6f});
    w.set("general.sampling.top_k", {std::uint32_t{20}});
    w.set("general.sampling.penalty_repeat", {1.05f});
  }));
  CHECK(rec.from_model);
  CHECK(rec.temperature == 0.6f);
  CHECK(rec.top_k == 20);
  CHECK(rec.repeat_penalty == 1.05f);
  CHECK(rec.top_p == 0.95f);  // not in the file: the default
  CHECK_THROWS_AS(recommended_sampling(file_with([](GgufWriter& w) { w.set("general.sampling.temp", {std::string("hot")}); })),
                  FormatError);
  CHECK_THROWS_WITH(recommended_sampling(file_with([](GgufWriter& w) { w.set("general.sampling.top_p", {1.5f}); })),
                    Catch::Contains("general.sampling.top_p = 1.5"));

  auto parse = [](std::vector<char const*> args) { return parse_chat_args(args); };
  ChatSampling const mine = chat_sampling(parse({"--temperature", "0.5", "--top-k", "0", "--min-p", "0.1", "--repeat-penalty",
                                                 "1.3", "--repeat-last-n", "32"}),
                                          rec);
  CHECK(mine.temperature == 0.5f);
  CHECK(mine.top_k == 0);
  CHECK(mine.min_p == 0.1f);
  CHECK(mine.repeat_penalty == 1.3f);
  CHECK(mine.repeat_last_n == 32);
  CHECK(!mine.greedy);
  CHECK(chat_sampling(parse({"--greedy"}), rec).greedy);
  CHECK(chat_sampling(parse({"--temperature", "0"}), rec).greedy);
  CHECK_THROWS_AS(parse({"--repeat-penalty", "0"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--min-p", "1.5"}), OutOfRange);

  SamplerSpec const d = make_sampler(chat_sampling(parse({}), none));
  CHECK(d.params().kind == SamplingKind::top_k_top_p);
  CHECK(d.params().temperature == 0.8f);
  CHECK(d.params().top_k == 40);
  CHECK(d.params().top_p == 0.95f);
  CHECK(d.params().min_p == 0.05f);
  CHECK(d.params().penalties.repeat == 1.1f);
  CHECK(d.params().penalties.last_n == 64);
  CHECK(make_sampler(mine).params().kind == SamplingKind::top_k_top_p);  // top-k off: every id, then top-p and min-p
  SamplerSpec const g = make_sampler(chat_sampling(parse({"--greedy"}), none));
  CHECK(g.params().kind == SamplingKind::greedy);
  CHECK(!g.params().penalties.active());
}

namespace {

/// A made-up detokenizer: each id is two letters, so a string can straddle tokens.
std::string two_letters(std::span<std::uint32_t const> ids) {
  std::string out;
  for (std::uint32_t const id : ids) {
    out += static_cast<char>('a' + id % 26);
    out += static_cast<char>('A' + (id / 26) % 26);
  }
  return out;
}

Task<Generation> generate_until(Engine<Tiny>& e, std::vector<std::uint32_t> prompt, StopCondition stop) {
  auto ctx = e.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(samplers::greedy(), std::move(stop));
}

}  // namespace

TEST_CASE("stop strings match the detokenized output across token boundaries", "[runtime][stop]") {
  StopCondition const stop = stop_strings({"AcC", "zz"}, two_letters);
  std::vector<std::uint32_t> const g{0, 1, 2 + 26 * 2, 3};  // "aA" "bA" "cC" "dA"
  CHECK_FALSE(stop.should_stop(std::span(g).first(2)));   // "aAbA"
  CHECK(stop.should_stop(std::span(g).first(3)));         // "aAbAcC": "AcC" straddles tokens 1 and 2
  CHECK(stop.should_stop(g));
  CHECK_THROWS_AS(stop_strings({}, two_letters), InvalidArgument);
  CHECK_THROWS_AS(stop_strings({""}, two_letters), InvalidArgument);

  // Through a generation: stop at the first point where the text of a plain greedy run contains a string
  // that straddles two of its tokens.
  Tiny& model = testing::tiny_model();
  Engine<Tiny> engine(model, testing::engine_options());
  std::vector<std::uint32_t> const prompt{5, 17, 300, 42, 9, 128};
  Generation const plain = engine.block_on(generate_after(engine, prompt, samplers::greedy(), 20));
  std::string const text = two_letters(plain.tokens);
  std::string const target = text.substr(11, 3);  // the second letter of token 5, token 6 whole
  std::size_t const end = text.find(target) + target.size();
  std::size_t const want = (end + 1) / 2;  // tokens up to the one that completes the first occurrence
  Generation const g2 = engine.block_on(generate_until(engine, prompt, max_len(20) || stop_strings({target}, two_letters)));
  CHECK(g2.tokens == std::vector<std::uint32_t>(plain.tokens.begin(), plain.tokens.begin() + static_cast<std::ptrdiff_t>(want)));
}
