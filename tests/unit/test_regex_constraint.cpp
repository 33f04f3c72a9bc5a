// RegexConstraint against std::regex as the oracle: a token is allowed exactly when some completion of the
// text can still match, EOS exactly when the text matches; random constrained generations always match.
#include <catch2/catch.hpp>

#include <piecrust/runtime/regex_constraint.hpp>

#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

using piecrust::RegexConstraint;

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
  for (std::string const bad : {"(ab", "a)", "[ab", "a{3,1}", "^a", "a*?", "(?=a)", "\\1", "*a", "a{99999}"}) {
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
