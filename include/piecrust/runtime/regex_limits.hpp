#pragma once
// RegexLimits: what compiling a RegexConstraint's pattern, and running its automaton, may cost.
//
// Patterns come from users (and from programs that build them out of user data), so every cost the pattern
// controls has a ceiling: its length, how deep its groups nest, how large a repetition count is, how many NFA
// states the expanded pattern needs, and how much the lazily built DFA may hold at once. Compiling past a
// compile-time limit throws LimitExceeded naming the limit and the value, and no constraint is made.
//
// The DFA is a bounded cache, not a table that grows for ever: when it holds max_dfa_states states or about
// max_dfa_bytes bytes (state sets, transition rows, cached masks), it is emptied and rebuilt on demand, so a
// constraint keeps working however long the generation (a state's mask may then be computed again). Only one
// step that on its own needs more than the whole cache, from an empty cache, throws LimitExceeded; the
// constraint's state is then unchanged and it stays usable.

#include <piecrust/core/error.hpp>

#include <cstddef>

namespace piecrust {

struct RegexLimits {
  std::size_t max_pattern_bytes = 64 * 1024;  // pattern length in bytes
  std::size_t max_nesting = 256;              // depth of nested groups; the parser recurses once per level
  std::size_t max_repeat = 1000;              // largest m or n in {m}, {m,} and {m,n}
  std::size_t max_nfa_states = 100'000;       // NFA states after expanding every counted repetition
  std::size_t max_dfa_states = 4096;          // DFA states the cache holds at once
  std::size_t max_dfa_bytes = 64u << 20;      // bytes the cache holds at once (approximate; see above)

  /// Throws InvalidArgument naming the field when a limit cannot work (a DFA needs at least two states: the
  /// current one and the next).
  void validate() const {
    auto require = [](bool ok, char const* name, std::size_t value, char const* rule) {
      if (!ok) detail::fail<InvalidArgument>("RegexLimits: ", name, " = ", value, " must be ", rule);
    };
    require(max_pattern_bytes >= 1, "max_pattern_bytes", max_pattern_bytes, ">= 1");
    require(max_nesting >= 1, "max_nesting", max_nesting, ">= 1");
    require(max_nfa_states >= 2, "max_nfa_states", max_nfa_states, ">= 2");
    require(max_dfa_states >= 2, "max_dfa_states", max_dfa_states, ">= 2");
    require(max_dfa_bytes >= 4096, "max_dfa_bytes", max_dfa_bytes, ">= 4096");
  }
};

}  // namespace piecrust
