#pragma once
// RegexConstraint: constrains generation so the output text matches a regular expression, at the token level.
//
// The pattern is compiled to a byte-level Thompson NFA (detail/regex_nfa.hpp), determinized lazily (subset
// construction, one DFA state per set of NFA states, transitions computed on first use; detail/regex_dfa.hpp).
// For each DFA state the allowed tokens are found by walking a trie of the vocabulary's byte strings through
// the DFA (a subtree is pruned as soon as the DFA dies) and cached as a LogitMask, so a state's mask is
// computed once for as long as the state stays in the cache.
// The whole output must match (anchored at both ends); end-of-sequence ids are allowed only in accepting states.
//
// Syntax (bytes; UTF-8 literals work as byte sequences): literals, `.` (any byte but \n), `[...]` and `[^...]`
// with ranges and escapes, `\d \w \s \D \W \S`, escapes `\. \* \\ \n \t` etc., groups `( )` and `(?: )`,
// alternation `|`, quantifiers `* + ? {m} {m,} {m,n}`. Not supported (InvalidArgument): anchors, lookaround,
// backreferences, lazy quantifiers, Unicode classes.
//
// Cost: RegexLimits (regex_limits.hpp) bounds the pattern, its expansion and the DFA cache. The cache is
// emptied when full and rebuilt on demand, so a long generation keeps working in bounded memory; in
// Context::generate, a step that needs more than the whole cache makes generate() throw LimitExceeded for
// that program (the context keeps the tokens generated so far; the constraint is unchanged).
// Source: Thompson, "Regular expression search algorithm" (CACM 1968); Rabin & Scott subset construction.

#include <piecrust/core/error.hpp>
#include <piecrust/core/logit_mask.hpp>
#include <piecrust/runtime/constraint.hpp>
#include <piecrust/runtime/detail/regex_dfa.hpp>
#include <piecrust/runtime/regex_limits.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust {

/// Constrains the generated text to match `pattern` (whole output). Copies (forks, beams) share the compiled
/// automaton and its cache; the shared state is not thread-safe, like the rest of a program's runtime objects.
class RegexConstraint {
 public:
  /// `token_bytes[id]` is the text token `id` decodes to (empty for special tokens, which are never allowed);
  /// `eos_ids` end the generation and are allowed exactly when the text so far matches.
  /// Throws InvalidArgument for an unsupported or malformed pattern or unusable limits, LimitExceeded for a
  /// pattern past `limits`, OutOfRange for an eos id >= vocab. Nothing is built when it throws.
  RegexConstraint(std::string_view pattern, std::vector<std::string> token_bytes, std::vector<std::uint32_t> eos_ids,
                  RegexLimits const& limits = {})
      : automaton_(std::make_shared<detail::RegexTokenAutomaton>(pattern, std::move(token_bytes), std::move(eos_ids),
                                                                 limits)),
        state_(automaton_->start()) {}

  /// The ids allowed next. After an end-of-sequence id only end-of-sequence ids are allowed.
  /// Throws LimitExceeded if this one state's mask needs more than the whole DFA cache (state unchanged).
  [[nodiscard]] LogitMask mask() const {
    if (finished_) return LogitMask::allow(automaton_->eos_ids(), automaton_->vocab());
    return automaton_->allowed(state_);
  }

  /// Records a sampled id. Throws InvalidArgument if the mask did not allow it, OutOfRange for an id >= vocab,
  /// LimitExceeded if reading it needs more than the whole DFA cache; the state is unchanged when it throws.
  void advance(std::uint32_t id) {
    auto const eos = automaton_->eos_ids();
    bool const is_eos = std::find(eos.begin(), eos.end(), id) != eos.end();
    if (is_eos) {
      if (!finished_ && !automaton_->accepting(state_)) {
        detail::fail<InvalidArgument>("RegexConstraint::advance: end-of-sequence id ", id,
                                      " before the text matches the pattern");
      }
      finished_ = true;
      return;
    }
    if (finished_) {
      if (id >= automaton_->vocab()) {
        detail::fail<OutOfRange>("RegexConstraint: token id ", id, " >= vocab = ", automaton_->vocab());
      }
      detail::fail<InvalidArgument>("RegexConstraint::advance: token id ", id, " after end-of-sequence");
    }
    detail::DfaRef next = automaton_->step_token(state_, id);
    if (next.dead()) {
      detail::fail<InvalidArgument>("RegexConstraint::advance: token id ", id, " cannot continue a match");
    }
    state_ = std::move(next);
  }

  /// True if the text so far is a complete match.
  [[nodiscard]] bool accepting() const { return automaton_->accepting(state_); }
  /// True once an end-of-sequence id was accepted.
  [[nodiscard]] bool finished() const { return finished_; }
  /// DFA states in the shared cache now (at most RegexLimits::max_dfa_states).
  [[nodiscard]] std::size_t dfa_states() const { return automaton_->num_states(); }
  /// Bytes the shared cache holds now (approximate; about RegexLimits::max_dfa_bytes at most).
  [[nodiscard]] std::size_t dfa_cache_bytes() const { return automaton_->cache_bytes(); }
  /// Times the shared cache was emptied because it was full.
  [[nodiscard]] std::size_t dfa_flushes() const { return automaton_->flushes(); }
  /// NFA states of the compiled pattern (at most RegexLimits::max_nfa_states).
  [[nodiscard]] std::size_t nfa_states() const { return automaton_->nfa_states(); }

 private:
  std::shared_ptr<detail::RegexTokenAutomaton> automaton_;
  detail::DfaRef state_;
  bool finished_ = false;
};

static_assert(Constraint<RegexConstraint>);

}  // namespace piecrust
