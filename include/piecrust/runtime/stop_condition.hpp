#pragma once
// StopCondition: when a generation loop stops, from the tokens generated so far.
//
//   max_len(n)            stop once n tokens have been generated
//   ends_with(seq)        stop once the generated tokens end with `seq`
//   ends_with_any(ids)    stop once the last generated token is one of `ids` (e.g. the model's EOS ids)
//   stop_strings(s, dec)  stop once the detokenized output contains one of the strings `s` (matched on text, so
//                         across token boundaries; `dec` turns token ids into text, e.g. a Tokenizer's decode)
//   a || b                stop when either stops
//
// The token that triggers a stop IS part of the output (Pie's behaviour): a generation stopped by an EOS id
// returns that id as its last token; Generator's text output leaves special tokens out.

#include <piecrust/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace piecrust {

class StopCondition {
 public:
  struct MaxLen {
    std::size_t n;
  };
  struct EndsWith {
    std::vector<std::uint32_t> suffix;
  };
  struct EndsWithAny {
    std::vector<std::uint32_t> ids;
  };
  /// The text of the newest tokens is searched: the last (longest string + 8) tokens, so a match ending in
  /// any of the last 8 tokens (a speculative step accepts at most that many by default) is found, every
  /// token giving at least one byte of text.
  struct StopStrings {
    std::vector<std::string> strings;
    std::function<std::string(std::span<std::uint32_t const>)> decode;
  };
  using Clause = std::variant<MaxLen, EndsWith, EndsWithAny, StopStrings>;

  /// Never stops by itself (combine with another condition).
  StopCondition() = default;
  explicit StopCondition(Clause c) { clauses_.push_back(std::move(c)); }

  /// True if generation should stop after `generated` (the tokens produced so far, the newest last).
  [[nodiscard]] bool should_stop(std::span<std::uint32_t const> generated) const {
    return std::any_of(clauses_.begin(), clauses_.end(), [&](Clause const& c) { return fires(c, generated); });
  }

  [[nodiscard]] std::span<Clause const> clauses() const { return clauses_; }

  /// Stops when either condition stops.
  friend StopCondition operator||(StopCondition a, StopCondition const& b) {
    a.clauses_.insert(a.clauses_.end(), b.clauses_.begin(), b.clauses_.end());
    return a;
  }

 private:
  static bool fires(Clause const& c, std::span<std::uint32_t const> g) {
    if (auto const* m = std::get_if<MaxLen>(&c)) return g.size() >= m->n;
    if (auto const* e = std::get_if<EndsWith>(&c)) {
      return g.size() >= e->suffix.size() && std::equal(e->suffix.begin(), e->suffix.end(), g.end() - static_cast<std::ptrdiff_t>(e->suffix.size()));
    }
    if (auto const* t = std::get_if<StopStrings>(&c)) {
      std::size_t longest = 0;
      for (auto const& str : t->strings) longest = std::max(longest, str.size());
      std::string const text = t->decode(g.last(std::min(g.size(), longest + 8)));
      return std::any_of(t->strings.begin(), t->strings.end(), [&](std::string const& str) { return text.find(str) != std::string::npos; });
    }
    auto const& any = std::get<EndsWithAny>(c);
    return !g.empty() && std::find(any.ids.begin(), any.ids.end(), g.back()) != any.ids.end();
  }

  std::vector<Clause> clauses_;
};

/// Stops after n generated tokens. Throws InvalidArgument for n = 0.
inline StopCondition max_len(std::size_t n) {
  if (n == 0) detail::fail<InvalidArgument>("max_len: n = 0 (a generation produces at least one token)");
  return StopCondition(StopCondition::MaxLen{n});
}

/// Stops once the output ends with `suffix`. Throws InvalidArgument for an empty suffix.
inline StopCondition ends_with(std::vector<std::uint32_t> suffix) {
  if (suffix.empty()) detail::fail<InvalidArgument>("ends_with: the suffix is empty");
  return StopCondition(StopCondition::EndsWith{std::move(suffix)});
}

/// Stops once the last token is one of `ids`. Throws InvalidArgument for an empty list.
inline StopCondition ends_with_any(std::vector<std::uint32_t> ids) {
  if (ids.empty()) detail::fail<InvalidArgument>("ends_with_any: the id list is empty");
  return StopCondition(StopCondition::EndsWithAny{std::move(ids)});
}

/// Stops once the text `decode` gives for the newest tokens contains one of `strings` (the token that completes
/// it is the last one of the output, like the other conditions). Throws InvalidArgument for no strings, an
/// empty string or no decoder.
inline StopCondition stop_strings(std::vector<std::string> strings, std::function<std::string(std::span<std::uint32_t const>)> decode) {
  if (strings.empty()) detail::fail<InvalidArgument>("stop_strings: the string list is empty");
  for (std::size_t i = 0; i < strings.size(); ++i) {
    if (strings[i].empty()) detail::fail<InvalidArgument>("stop_strings: strings[", i, "] is empty");
  }
  if (!decode) detail::fail<InvalidArgument>("stop_strings: decode is empty");
  return StopCondition(StopCondition::StopStrings{std::move(strings), std::move(decode)});
}

}  // namespace piecrust
