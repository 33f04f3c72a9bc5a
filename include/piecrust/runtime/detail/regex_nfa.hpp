#pragma once
// RegexCompiler: parses a RegexConstraint pattern into a byte-level Thompson NFA, within RegexLimits.
//
// Recursive descent, one recursion level per nested group, so nesting is counted and refused past
// max_nesting before the stack can overflow. Counted repetitions are expanded by copying the repeated
// fragment; the number of states a copy would add is checked against max_nfa_states before any is made,
// so a pattern like ((a{1000}){1000}){1000} fails fast instead of allocating gigabytes.
// Source: Thompson, "Regular expression search algorithm" (CACM 1968).

#include <piecrust/core/error.hpp>
#include <piecrust/runtime/regex_limits.hpp>

#include <bitset>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust::detail {

using ByteSet = std::bitset<256>;

/// A Thompson NFA over bytes: each state has byte transitions (one set, one target) and epsilon edges.
struct ByteNfa {
  struct State {
    ByteSet on;                // bytes that move to `next`
    int next = -1;             // target of a byte move, -1 if none
    std::vector<int> epsilon;  // targets of empty moves
  };
  std::vector<State> states;  // [num states]
  int start = 0;
  int accept = 0;
};

/// A pattern as it appears in error messages: long patterns are cut, so a message stays readable.
inline std::string quoted_pattern(std::string_view p) {
  constexpr std::size_t shown = 64;
  if (p.size() <= shown) return "\"" + std::string(p) + "\"";
  return "\"" + std::string(p.substr(0, shown)) + "...\" (" + std::to_string(p.size()) + " bytes)";
}

class RegexCompiler {
 public:
  RegexCompiler(std::string_view pattern, RegexLimits const& limits) : p_(pattern), limits_(limits) {}

  /// Throws InvalidArgument for malformed or unsupported syntax, LimitExceeded past a limit.
  ByteNfa compile() {
    if (p_.size() > limits_.max_pattern_bytes) {
      fail<LimitExceeded>("RegexConstraint: pattern length ", p_.size(), " bytes exceeds max_pattern_bytes = ",
                          limits_.max_pattern_bytes);
    }
    auto [s, e] = alternation();
    if (i_ != p_.size()) error("unexpected ')'");
    nfa_.start = s;
    nfa_.accept = e;
    return std::move(nfa_);
  }

 private:
  struct Frag {
    int start, end;
  };

  [[noreturn]] void error(char const* what) const {
    fail<InvalidArgument>("RegexConstraint: pattern ", quoted_pattern(p_), ": ", what, " at offset ", i_);
  }
  bool more() const { return i_ < p_.size(); }
  char peek() const { return p_[i_]; }

  /// Refuses to grow the NFA past max_nfa_states; `extra` states are about to be added.
  void reserve_states(std::size_t extra, char const* what, std::size_t offset) const {
    std::size_t const have = nfa_.states.size();
    if (extra > limits_.max_nfa_states || have > limits_.max_nfa_states - extra) {
      fail<LimitExceeded>("RegexConstraint: pattern ", quoted_pattern(p_), ": ", what, " at offset ", offset,
                          " needs ", have, " + ", extra, " NFA states, above max_nfa_states = ", limits_.max_nfa_states);
    }
  }

  int add() {
    reserve_states(1, "the expression", i_);
    nfa_.states.emplace_back();
    return static_cast<int>(nfa_.states.size()) - 1;
  }
  void eps(int from, int to) { nfa_.states[static_cast<std::size_t>(from)].epsilon.push_back(to); }

  Frag alternation() {
    Frag left = concatenation();
    while (more() && peek() == '|') {
      ++i_;
      Frag right = concatenation();
      int const s = add(), e = add();
      nfa_.states[static_cast<std::size_t>(s)].epsilon = {left.start, right.start};
      eps(left.end, e);
      eps(right.end, e);
      left = {s, e};
    }
    return left;
  }

  Frag concatenation() {
    int const s = add();
    Frag out{s, s};
    while (more() && peek() != '|' && peek() != ')') {
      Frag next = repetition();
      eps(out.end, next.start);
      out.end = next.end;
    }
    return out;
  }

  // Copies a fragment (needed to expand {m,n}): NFA states in [first, last) are cloned with remapped targets.
  Frag clone(Frag f, int first, int last) {
    int const offset = static_cast<int>(nfa_.states.size()) - first;
    for (int k = first; k < last; ++k) {
      ByteNfa::State st = nfa_.states[static_cast<std::size_t>(k)];
      if (st.next >= 0) st.next += offset;
      for (int& t : st.epsilon) t += offset;
      nfa_.states.push_back(std::move(st));
    }
    return {f.start + offset, f.end + offset};
  }

  Frag repetition() {
    int const first_state = static_cast<int>(nfa_.states.size());
    Frag atom_frag = atom();
    int last_state = static_cast<int>(nfa_.states.size());
    while (more()) {
      std::size_t const at = i_;
      char const q = peek();
      std::size_t min_rep = 0, max_rep = 0;
      bool unbounded = false;
      if (q == '*') {
        unbounded = true;
        ++i_;
      } else if (q == '+') {
        min_rep = 1;
        unbounded = true;
        ++i_;
      } else if (q == '?') {
        max_rep = 1;
        ++i_;
      } else if (q == '{') {
        ++i_;
        min_rep = number();
        max_rep = min_rep;
        if (more() && peek() == ',') {
          ++i_;
          if (more() && peek() == '}') {
            unbounded = true;
          } else {
            max_rep = number();
          }
        }
        if (!more() || peek() != '}') error("expected '}'");
        ++i_;
        if (!unbounded && max_rep < min_rep) error("{m,n} with n < m");
      } else {
        break;
      }
      if (more() && peek() == '?') error("lazy quantifiers are not supported");
      // Every copy of the fragment, plus the two states that join them, before anything is cloned.
      std::size_t const copies = min_rep + (unbounded ? 1 : max_rep - min_rep);
      std::size_t const size = static_cast<std::size_t>(last_state - first_state);
      std::size_t const clones = copies > 0 ? copies - 1 : 0;
      std::size_t const most = std::numeric_limits<std::size_t>::max();
      bool const wraps = size > 0 && clones > (most - 2) / size;  // only with limits near 2^64
      reserve_states(wraps ? most : clones * size + 2, "the repetition", at);
      atom_frag = repeat(atom_frag, first_state, last_state, min_rep, max_rep, unbounded);
      last_state = static_cast<int>(nfa_.states.size());
    }
    return atom_frag;
  }

  // f's states are [first, last) and self-contained; every copy is cloned before anything is linked to f.
  Frag repeat(Frag f, int first, int last, std::size_t min_rep, std::size_t max_rep, bool unbounded) {
    std::size_t const copies = min_rep + (unbounded ? 1 : max_rep - min_rep);
    std::vector<Frag> pieces;  // [copies]
    pieces.reserve(copies);
    for (std::size_t k = 0; k < copies; ++k) pieces.push_back(k == 0 ? f : clone(f, first, last));
    int const s = add();
    int cur = s;
    for (std::size_t k = 0; k < min_rep; ++k) {
      eps(cur, pieces[k].start);
      cur = pieces[k].end;
    }
    int const e = add();
    if (unbounded) {
      Frag const g = pieces[min_rep];
      eps(cur, g.start);
      eps(cur, e);
      eps(g.end, g.start);
      eps(g.end, e);
    } else {
      for (std::size_t k = min_rep; k < max_rep; ++k) {
        eps(cur, e);
        eps(cur, pieces[k].start);
        cur = pieces[k].end;
      }
      eps(cur, e);
    }
    return {s, e};
  }

  /// A repetition count: decimal digits, at most max_repeat (LimitExceeded names the count as written).
  std::size_t number() {
    std::size_t const begin = i_;
    std::size_t n = 0;
    bool over = false;
    while (more() && peek() >= '0' && peek() <= '9') {
      std::size_t const d = static_cast<std::size_t>(peek() - '0');
      if (!over && n > (std::numeric_limits<std::size_t>::max() - d) / 10) over = true;
      if (!over) n = n * 10 + d;
      over = over || n > limits_.max_repeat;
      ++i_;
    }
    if (i_ == begin) error("expected a number");
    if (over) {
      std::string_view digits = p_.substr(begin, i_ - begin);
      if (digits.size() > 24) digits = digits.substr(0, 24);
      fail<LimitExceeded>("RegexConstraint: pattern ", quoted_pattern(p_), ": repetition count ", digits,
                          (i_ - begin > 24 ? "..." : ""), " at offset ", begin, " exceeds max_repeat = ",
                          limits_.max_repeat);
    }
    return n;
  }

  Frag byte_set(ByteSet const& set) {
    int const s = add(), e = add();
    nfa_.states[static_cast<std::size_t>(s)].on = set;
    nfa_.states[static_cast<std::size_t>(s)].next = e;
    return {s, e};
  }

  static ByteSet class_escape(char c, bool& ok) {
    ByteSet set;
    ok = true;
    auto range = [&](int a, int b) {
      for (int x = a; x <= b; ++x) set.set(static_cast<std::size_t>(x));
    };
    switch (c) {
      case 'd': range('0', '9'); break;
      case 'w': range('0', '9'); range('a', 'z'); range('A', 'Z'); set.set('_'); break;
      case 's': for (char const w : std::string_view(" \t\n\r\f\v")) set.set(static_cast<unsigned char>(w)); break;
      case 'D': set = class_escape('d', ok); set.flip(); break;
      case 'W': set = class_escape('w', ok); set.flip(); break;
      case 'S': set = class_escape('s', ok); set.flip(); break;
      default: ok = false;
    }
    return set;
  }

  unsigned char escaped_literal(char c) const {
    switch (c) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0': return '\0';
      default: break;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      error("unsupported escape (anchors, backreferences and Unicode classes are not supported)");
    }
    return static_cast<unsigned char>(c);
  }

  Frag atom() {
    if (!more()) error("expected an expression");
    char const c = peek();
    if (c == '(') {
      if (depth_ == limits_.max_nesting) {
        fail<LimitExceeded>("RegexConstraint: pattern ", quoted_pattern(p_), ": group nesting depth ", depth_ + 1,
                            " at offset ", i_, " exceeds max_nesting = ", limits_.max_nesting);
      }
      ++i_;
      if (p_.substr(i_, 2) == "?:") {
        i_ += 2;
      } else if (more() && peek() == '?') {
        error("lookaround and named groups are not supported");
      }
      ++depth_;
      Frag inner = alternation();
      --depth_;
      if (!more() || peek() != ')') error("expected ')'");
      ++i_;
      return inner;
    }
    if (c == '[') return byte_set(bracket());
    if (c == '.') {
      ++i_;
      ByteSet any;
      any.set();
      any.reset('\n');
      return byte_set(any);
    }
    if (c == '\\') {
      ++i_;
      if (!more()) error("dangling backslash");
      char const e = peek();
      ++i_;
      bool ok = false;
      ByteSet set = class_escape(e, ok);
      if (ok) return byte_set(set);
      set.set(escaped_literal(e));
      return byte_set(set);
    }
    if (c == '^' || c == '$') error("anchors are not supported (the whole output is matched)");
    if (c == '*' || c == '+' || c == '?' || c == '{') error("quantifier without an expression");
    ++i_;
    ByteSet set;
    set.set(static_cast<unsigned char>(c));
    return byte_set(set);
  }

  ByteSet bracket() {
    ++i_;  // '['
    bool negate = false;
    if (more() && peek() == '^') {
      negate = true;
      ++i_;
    }
    ByteSet set;
    bool first = true;
    while (more() && (peek() != ']' || first)) {
      first = false;
      int lo;
      if (peek() == '\\') {
        ++i_;
        if (!more()) error("dangling backslash in a class");
        char const e = peek();
        ++i_;
        bool ok = false;
        ByteSet cls = class_escape(e, ok);
        if (ok) {
          set |= cls;
          continue;
        }
        lo = escaped_literal(e);
      } else {
        lo = static_cast<unsigned char>(peek());
        ++i_;
      }
      int hi = lo;
      if (i_ + 1 < p_.size() && peek() == '-' && p_[i_ + 1] != ']') {
        ++i_;
        if (peek() == '\\') {
          ++i_;
          if (!more()) error("dangling backslash in a class");
          hi = escaped_literal(peek());
        } else {
          hi = static_cast<unsigned char>(peek());
        }
        ++i_;
        if (hi < lo) error("class range out of order");
      }
      for (int x = lo; x <= hi; ++x) set.set(static_cast<std::size_t>(x));
    }
    if (!more()) error("unterminated '['");
    ++i_;  // ']'
    if (negate) set.flip();
    return set;
  }

  std::string_view p_;
  RegexLimits limits_;
  std::size_t i_ = 0;
  std::size_t depth_ = 0;  // groups open at i_
  ByteNfa nfa_;
};

}  // namespace piecrust::detail
