#pragma once
// StopCondition: when a generation loop stops, from the tokens generated so far.
//
//   max_len(n)            stop once n tokens have been generated
//   ends_with(seq)        stop once the generated tokens end with `seq`
//   ends_with_any(ids)    stop once the last generated token is one of `ids` (e.g. the model's EOS ids)
//   a || b                stop when either stops
//
// The token that triggers a stop IS part of the output (Pie's behaviour): a generation stopped by an EOS id
// returns that id as its last token; Generator's text output leaves special tokens out.

#include <piecrust/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
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
  using Clause = std::variant<MaxLen, EndsWith, EndsWithAny>;

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

}  // namespace piecrust
