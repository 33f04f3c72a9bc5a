// libFuzzer target for RegexConstraint: any pattern must compile or throw a piecrust::Error within bounded time
// and memory, and a compiled constraint, run over fuzzer-chosen tokens, must keep its contract: a token the
// mask allows advances, a token it forbids throws InvalidArgument and changes nothing, and end-of-sequence is
// allowed exactly in accepting states.
//
// Input: [flags] [pattern] 0x00 [extra tokens, separated by 0x01] 0x00 [walk: one byte per step]
//   flags bit 0: a tiny DFA cache (exercises emptying it); bit 1: tiny NFA and nesting limits.

#include <piecrust/runtime/regex_constraint.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// A macro only to report the line of the invariant (clang 14 has no std::source_location).
#define PIECRUST_FUZZ_REQUIRE(cond) ((cond) ? void() : broken(__LINE__))

namespace {

// Breaks the fuzzer's run with a report when an invariant does not hold (not an input error: a bug).
[[noreturn]] void broken(int line) {
  std::fprintf(stderr, "invariant failed at line %d\n", line);
  std::abort();
}

std::string_view take_until(std::string_view& rest, char sep) {
  std::size_t const at = rest.find(sep);
  std::string_view const head = rest.substr(0, at);
  rest = at == std::string_view::npos ? std::string_view{} : rest.substr(at + 1);
  return head;
}

std::vector<std::string> vocabulary(std::string_view extra) {
  // Id 0 is end-of-sequence (no bytes); the rest cover letters, digits, JSON punctuation and UTF-8.
  std::vector<std::string> v = {"", "a", "b", "c", "0", "1", "9", " ", "-", ".", "\n", "ab", "abc", "{\"", "\"}",
                                ":", ",", "\xc3\xa9", "\xff", "aaaa", "ba", "01"};
  for (std::size_t n = 0; !extra.empty() && n < 16; ++n) {
    std::string_view const t = take_until(extra, '\x01');
    if (!t.empty() && t.size() <= 24) v.emplace_back(t);
  }
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint8_t const flags = data[0];
  std::string_view rest(reinterpret_cast<char const*>(data) + 1, size - 1);
  std::string_view const pattern = take_until(rest, '\0');
  std::string_view const extra = take_until(rest, '\0');
  std::string_view const walk = rest.substr(0, std::min<std::size_t>(rest.size(), 24));

  piecrust::RegexLimits limits;
  if (flags & 1) {
    limits.max_dfa_states = 3 + (flags >> 4);
    limits.max_dfa_bytes = 16 * 1024;
  }
  if (flags & 2) {
    limits.max_nfa_states = 500;
    limits.max_nesting = 8;
  }
  auto const vocab = vocabulary(extra);
  std::uint32_t const eos = 0;

  std::optional<piecrust::RegexConstraint> c;
  try {
    c.emplace(pattern, vocab, std::vector<std::uint32_t>{eos}, limits);
  } catch (piecrust::Error const&) {
    return 0;  // refused patterns are fine; anything else escapes and is reported
  }
  PIECRUST_FUZZ_REQUIRE(c->nfa_states() <= limits.max_nfa_states);

  for (unsigned char const choice : walk) {
    try {
      piecrust::LogitMask const mask = c->mask();
      PIECRUST_FUZZ_REQUIRE(c->dfa_states() <= limits.max_dfa_states);
      PIECRUST_FUZZ_REQUIRE(mask.size() == vocab.size());
      PIECRUST_FUZZ_REQUIRE(mask.allows(eos) == (c->finished() || c->accepting()));
      auto const id = static_cast<std::uint32_t>(choice % vocab.size());
      bool const was_accepting = c->accepting();
      bool const was_finished = c->finished();
      if (mask.allows(id)) {
        c->advance(id);
      } else {
        bool refused = false;
        try {
          c->advance(id);
        } catch (piecrust::InvalidArgument const&) {
          refused = true;
        }
        PIECRUST_FUZZ_REQUIRE(refused);
        PIECRUST_FUZZ_REQUIRE(c->accepting() == was_accepting && c->finished() == was_finished);
        PIECRUST_FUZZ_REQUIRE(c->mask() == mask);  // the state did not move
      }
    } catch (piecrust::LimitExceeded const&) {
      // One step needed more than the whole cache: allowed by the contract; the constraint stays usable.
      PIECRUST_FUZZ_REQUIRE(c->dfa_states() <= limits.max_dfa_states);
    }
  }
  return 0;
}
