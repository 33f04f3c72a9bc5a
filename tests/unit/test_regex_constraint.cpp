// RegexConstraint against std::regex as the oracle: a token is allowed exactly when some completion of the
// text can still match, EOS exactly when the text matches; random constrained generations always match.
// RegexLimits: each compile limit refuses with LimitExceeded naming it; the bounded DFA cache keeps the same
// answers when it is emptied, and one step that needs more than the whole cache fails without a change.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <piecrust/runtime/regex_constraint.hpp>

#include <chrono>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

using piecrust::LimitExceeded;
using piecrust::RegexConstraint;
using piecrust::RegexLimits;

namespace {

// A small vocabulary over the alphabet {a, b, 0, 1, -}: single bytes and some multi-byte tokens.
std::vector<std::string> toy_vocab() {
  return {"", "a", "b", "0", "1", "-", "ab", "ba", "00", "01", "10", "a-", "-0", "aab", "111", "b1", "0a"};
}
constexpr std::uint32_t eos = 0;  // the empty (special) token doubles as end-of-sequence

// Viable: some suffix of length <= depth over the alphabet makes `text` a full match (depth 3 reaches a match
// from every viable text of the patterns below). Memoized per pattern:
// std::regex is slow, and unoptimized sanitizer builds run this too.
bool viable(std::regex const& re, std::string const& text, int depth, std::map<std::pair<std::string, int>, bool>& memo) {
  auto const key = std::pair(text, depth);
  if (auto const it = memo.find(key); it != memo.end()) return it->second;
  bool ok = std::regex_match(text, re);
  for (char const c : std::string("ab01-")) {
    if (ok || depth == 0) break;
    ok = viable(re, text + c, depth - 1, memo);
  }
  memo.emplace(key, ok);
  return ok;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("RegexConstraint masks agree with std::regex on random walks", "[runtime][constraint]") {
  std::mt19937 rng(std::random_device{}());
  auto const vocab = toy_vocab();
  std::vector<std::string> const patterns = {"(ab|0+)*1?", "a{2,3}b", "[ab]+-[01]{2}", "(a|b)*aab", "1{3}|0(a|b)?",
                                             "[^-]*-?", "(?:ab){0,2}0", "b*"};
  for (auto const& pattern : patterns) {
    INFO("pattern " << pattern);
    std::regex const re(pattern, std::regex::ECMAScript);
    std::map<std::pair<std::string, int>, bool> memo;
    for (int walk = 0; walk < 8; ++walk) {
      RegexConstraint c(pattern, vocab, {eos});
      std::string text;
      for (int step = 0; step < 8 && !c.finished(); ++step) {
        auto const mask = c.mask();
        std::vector<std::uint32_t> allowed;
        for (std::uint32_t id = 0; id < vocab.size(); ++id) {
          bool const expect = id == eos ? std::regex_match(text, re) : viable(re, text + vocab[id], 3, memo);
          REQUIRE(mask.allows(id) == expect);
          if (expect) allowed.push_back(id);
        }
        if (allowed.empty()) break;
        std::uint32_t const pick = allowed[rng() % allowed.size()];
        c.advance(pick);
        if (pick != eos) text += vocab[pick];
      }
      if (c.finished()) REQUIRE(std::regex_match(text, re));
    }
  }
}

TEST_CASE("RegexConstraint rejects tokens outside the mask without changing state", "[runtime][constraint][errors]") {
  auto const vocab = toy_vocab();
  RegexConstraint c("ab-", vocab, {eos});
  CHECK_THROWS_WITH(c.advance(2), Catch::Contains("token id 2 cannot continue a match"));
  CHECK_THROWS_WITH(c.advance(eos), Catch::Contains("before the text matches"));
  c.advance(6);  // "ab"
  CHECK_FALSE(c.accepting());
  c.advance(5);  // "-"
  CHECK(c.accepting());
  CHECK(c.mask().allowed_count(vocab.size()) == 1);
  c.advance(eos);
  CHECK(c.finished());
  CHECK(c.mask().allows(eos));
  CHECK_THROWS_AS(c.advance(1), piecrust::InvalidArgument);
}

TEST_CASE("RegexConstraint refuses unsupported and malformed patterns", "[runtime][constraint][errors]") {
  auto const vocab = toy_vocab();
  for (std::string const bad : {"(ab", "a)", "[ab", "a{3,1}", "^a", "a*?", "(?=a)", "\\1", "*a", "a{"}) {
    INFO(bad);
    CHECK_THROWS_AS(RegexConstraint(bad, vocab, {eos}), piecrust::InvalidArgument);
  }
  CHECK_THROWS_WITH(RegexConstraint("(ab", vocab, {eos}), Catch::Contains("pattern \"(ab\""));
  CHECK_THROWS_AS(RegexConstraint("a", vocab, {99}), piecrust::OutOfRange);
  CHECK_THROWS_AS(RegexConstraint("a", {}, {}), piecrust::InvalidArgument);
}

TEST_CASE("RegexConstraint shares its automaton between copies and caches masks", "[runtime][constraint]") {
  auto const vocab = toy_vocab();
  RegexConstraint a("[01]+", vocab, {eos});
  RegexConstraint b = a;  // a fork
  a.advance(3);
  CHECK(a.accepting());
  CHECK_FALSE(b.accepting());  // state is per copy
  auto const before = a.dfa_states();
  (void)b.mask();
  b.advance(9);
  CHECK(b.mask() == a.mask());
  CHECK(a.dfa_states() == b.dfa_states());
  CHECK(a.dfa_states() >= before);
  CHECK(piecrust::combined_mask(a, b) == a.mask());
}

TEST_CASE("RegexConstraint compile limits refuse with LimitExceeded naming the limit and the value", "[runtime][constraint][errors]") {
  auto const vocab = toy_vocab();
  using Catch::Contains;
  auto const t0 = std::chrono::steady_clock::now();

  // Deeply nested groups: refused at the first group past max_nesting, before the parser's stack can overflow.
  std::string const deep = std::string(30'000, '(') + "a" + std::string(30'000, ')');
  CHECK_THROWS_AS(RegexConstraint(deep, vocab, {eos}), LimitExceeded);
  CHECK_THROWS_WITH(RegexConstraint(deep, vocab, {eos}),
                    Contains("group nesting depth 257 at offset 256") && Contains("max_nesting = 256") &&
                        Contains("(60001 bytes)"));
  // 100,000 of them are first too long a pattern; with room for the length, the nesting limit still holds.
  std::string const deeper = std::string(100'000, '(') + "a" + std::string(100'000, ')');
  CHECK_THROWS_WITH(RegexConstraint(deeper, vocab, {eos}), Contains("max_pattern_bytes = 65536"));
  CHECK_THROWS_WITH(RegexConstraint(deeper, vocab, {eos}, RegexLimits{.max_pattern_bytes = 1 << 20}),
                    Contains("max_nesting = 256"));
  std::string const at_limit = std::string(256, '(') + "a" + std::string(256, ')');
  CHECK(RegexConstraint(at_limit, vocab, {eos}).mask().allows(1));

  // A counted repetition of a counted repetition: refused before any copy is made (no gigabytes, no bad_alloc).
  CHECK_THROWS_AS(RegexConstraint("((a{1000}){1000}){1000}", vocab, {eos}), LimitExceeded);
  CHECK_THROWS_WITH(RegexConstraint("((a{1000}){1000}){1000}", vocab, {eos}),
                    Contains("the repetition at offset 10") && Contains("max_nfa_states = 100000"));
  CHECK_THROWS_AS(RegexConstraint("a{1000}{1000}", vocab, {eos}), LimitExceeded);
  CHECK_THROWS_AS(RegexConstraint(std::string(60'000, 'a') + "(b|a)*", vocab, {eos}, RegexLimits{.max_nfa_states = 1000}),
                  LimitExceeded);

  // Repetition counts past max_repeat, however many digits they have.
  CHECK_THROWS_WITH(RegexConstraint("a{1001}", vocab, {eos}), Contains("repetition count 1001") && Contains("max_repeat = 1000"));
  CHECK_THROWS_WITH(RegexConstraint("a{2,99999}", vocab, {eos}), Contains("repetition count 99999 at offset 4"));
  CHECK_THROWS_AS(RegexConstraint("a{" + std::string(400, '9') + "}", vocab, {eos}), LimitExceeded);
  CHECK(RegexConstraint("a{1000}", vocab, {eos}).nfa_states() < 5000);

  // The pattern's length.
  std::string const long_pattern(70'000, 'a');
  CHECK_THROWS_WITH(RegexConstraint(long_pattern, vocab, {eos}),
                    Contains("pattern length 70000 bytes") && Contains("max_pattern_bytes = 65536"));
  CHECK_THROWS_AS(RegexConstraint("abab", vocab, {eos}, RegexLimits{.max_pattern_bytes = 3}), LimitExceeded);
  CHECK(seconds_since(t0) < 20.0);  // each refusal is immediate (generous for sanitizer builds)

  // Limits that cannot work are refused as such.
  CHECK_THROWS_AS(RegexConstraint("a", vocab, {eos}, RegexLimits{.max_dfa_states = 1}), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(RegexConstraint("a", vocab, {eos}, RegexLimits{.max_nesting = 0}), Contains("max_nesting = 0"));
}

TEST_CASE("RegexConstraint's DFA cache stays bounded and gives the same masks when it is emptied", "[runtime][constraint]") {
  std::mt19937 rng(std::random_device{}());
  auto const vocab = toy_vocab();
  // The oracle: the same pattern with the default, unemptied cache (itself checked against std::regex above).
  // (a|b)*a(a|b){4} has a DFA of 2^5 states (it remembers the last five letters); [ab01]{24} one per length.
  for (std::string const pattern : {"(a|b)*a(a|b){4}", "[ab01]{24}", "(ab|0+)*1?"}) {
    INFO("pattern " << pattern);
    std::regex const re(pattern, std::regex::ECMAScript);
    RegexLimits const small{.max_dfa_states = 12};
    RegexConstraint proto(pattern, vocab, {eos}, small);
    for (int walk = 0; walk < 6; ++walk) {
      RegexConstraint c = proto;  // copies share the cache, so every walk meets states emptied by the others
      RegexConstraint oracle(pattern, vocab, {eos});
      std::string text;
      for (int step = 0; step < 30 && !c.finished(); ++step) {
        auto const mask = c.mask();
        REQUIRE(mask == oracle.mask());
        REQUIRE(c.dfa_states() <= small.max_dfa_states);
        REQUIRE(mask.allows(eos) == std::regex_match(text, re));
        std::vector<std::uint32_t> allowed;
        for (std::uint32_t id = 0; id < vocab.size(); ++id) {
          if (mask.allows(id)) allowed.push_back(id);
        }
        if (allowed.empty()) break;
        std::uint32_t const pick = allowed[rng() % allowed.size()];
        c.advance(pick);
        oracle.advance(pick);
        if (pick != eos) text += vocab[pick];
        REQUIRE(c.accepting() == oracle.accepting());
      }
      if (c.finished()) CHECK(std::regex_match(text, re));
    }
    if (std::string(pattern) != "(ab|0+)*1?") CHECK(proto.dfa_flushes() > 0);  // the big DFAs did not fit
  }

  // The byte budget works the same way.
  RegexConstraint c("(a|b)*a(a|b){4}", vocab, {eos}, RegexLimits{.max_dfa_bytes = 16 * 1024});
  RegexConstraint oracle("(a|b)*a(a|b){4}", vocab, {eos});
  for (int step = 0; step < 40; ++step) {
    REQUIRE(c.mask() == oracle.mask());
    REQUIRE(c.dfa_cache_bytes() <= 16 * 1024 + 4096);  // one cached mask may pass the budget until the next step
    std::uint32_t const pick = std::vector<std::uint32_t>{1, 2, 6, 7, 13}[rng() % 5];  // a, b, ab, ba, aab
    c.advance(pick);
    oracle.advance(pick);
  }
  CHECK(c.dfa_flushes() > 0);
}

TEST_CASE("RegexConstraint: a step that needs more than the whole DFA cache throws LimitExceeded and changes nothing", "[runtime][constraint][errors]") {
  auto const vocab = toy_vocab();
  // The mask of the start state walks the trie through several DFA states; two cannot hold them.
  RegexConstraint c("[ab]{3}-", vocab, {eos}, RegexLimits{.max_dfa_states = 2});
  CHECK_THROWS_AS(c.mask(), LimitExceeded);
  CHECK_THROWS_WITH(c.mask(), Catch::Contains("the mask of one state") && Catch::Contains("max_dfa_states = 2"));
  CHECK(c.dfa_states() <= 2);
  CHECK_FALSE(c.accepting());
  // Reading "aab" passes four states; the failed advance leaves the constraint at the start.
  CHECK_THROWS_WITH(c.advance(13), Catch::Contains("reading one token") && Catch::Contains("max_dfa_states = 2"));
  // Still usable: reading a one-byte token needs two states (here and next).
  c.advance(1);  // "a"
  c.advance(2);  // "b"
  c.advance(1);  // "a"
  c.advance(5);  // "-"
  CHECK(c.accepting());
  c.advance(eos);
  CHECK(c.finished());

  RegexConstraint b("[ab]{3}-", vocab, {eos}, RegexLimits{.max_dfa_bytes = 4096});
  CHECK_THROWS_WITH(b.mask(), Catch::Contains("max_dfa_bytes = 4096"));
  CHECK_FALSE(b.accepting());
}

TEST_CASE("RegexConstraint in Context::generate: a full cache is emptied and generation goes on; a step too large fails that program", "[runtime][constraint]") {
  using namespace piecrust;
  using Tiny = testing::Tiny;
  // Token i of the tiny vocabulary spells "a" if i % 3 == 0, "b" if i % 3 == 1, "-" otherwise; 0 is EOS.
  std::vector<std::string> spell(512);
  for (std::size_t i = 1; i < spell.size(); ++i) spell[i] = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "-";
  auto const prompt = testing::random_prompt(5, 12);

  // (ab-){40}: one DFA state per position, 120 of them, through a cache of 4.
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
  RegexConstraint c("(ab-){40}", spell, {0}, RegexLimits{.max_dfa_states = 4});
  auto prog = [&](Engine<Tiny>& e) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.fill(prompt);
    StopCondition const stop = max_len(60) || ends_with_any({0});
    co_return co_await ctx.generate(samplers::multinomial(), stop, c);
  };
  auto const g = e.block_on(prog(e));
  std::string text;
  for (auto const t : g.tokens) text += spell[t];
  CHECK(g.tokens.size() == 60);
  std::string want;
  for (int k = 0; k < 20; ++k) want += "ab-";
  CHECK(text == want);
  CHECK(c.dfa_states() <= 4);
  CHECK(c.dfa_flushes() > 0);
  CHECK(e.pool().free_count() == e.pool().num_pages());

  // The first mask needs three states ("a" and "b" lead to different ones): generate() throws for this
  // program before any pass, and the context still holds exactly its prompt.
  RegexConstraint tight("a-|bb", spell, {0}, RegexLimits{.max_dfa_states = 2});
  bool threw = false;
  auto failing = [&](Engine<Tiny>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    ctx.fill(prompt);
    try {
      (void)co_await ctx.generate(samplers::greedy(), max_len(4), tight);
    } catch (LimitExceeded const& err) {
      threw = std::string(err.what()).find("max_dfa_states = 2") != std::string::npos;
    }
    co_return ctx.token_ids();
  };
  std::size_t const free_before = e.pool().free_count();
  CHECK(e.block_on(failing(e)) == prompt);
  CHECK(threw);
  CHECK(e.pool().free_count() == free_before);
}
