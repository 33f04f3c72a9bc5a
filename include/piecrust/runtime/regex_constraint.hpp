#pragma once
// RegexConstraint: constrains generation so the output text matches a regular expression, at the token level.
//
// The pattern is compiled to a byte-level Thompson NFA, determinized lazily (subset construction, one DFA state
// per set of NFA states, transitions computed on first use). For each DFA state the allowed tokens are found by
// walking a trie of the vocabulary's byte strings through the DFA (a subtree is pruned as soon as the DFA dies)
// and cached as a LogitMask, so a state's mask is computed once however often it recurs.
// The whole output must match (anchored at both ends); end-of-sequence ids are allowed only in accepting states.
//
// Syntax (bytes; UTF-8 literals work as byte sequences): literals, `.` (any byte but \n), `[...]` and `[^...]`
// with ranges and escapes, `\d \w \s \D \W \S`, escapes `\. \* \\ \n \t` etc., groups `( )` and `(?: )`,
// alternation `|`, quantifiers `* + ? {m} {m,} {m,n}`. Not supported (InvalidArgument): anchors, lookaround,
// backreferences, lazy quantifiers, Unicode classes.
// Source: Thompson, "Regular expression search algorithm" (CACM 1968); Rabin & Scott subset construction.

#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/core/logit_mask.hpp>
#include <piecrust/runtime/constraint.hpp>

#include <algorithm>
#include <array>
#include <bitset>
#include <utility>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piecrust {

namespace detail {

using ByteSet = std::bitset<256>;

/// A Thompson NFA over bytes: each state has byte transitions (one set, one target) and epsilon edges.
struct ByteNfa {
  struct State {
    ByteSet on;                     // bytes that move to `next`
    int next = -1;                  // target of a byte move, -1 if none
    std::vector<int> epsilon;       // targets of empty moves
  };
  std::vector<State> states;
  int start = 0;
  int accept = 0;

  int add() {
    states.emplace_back();
    return static_cast<int>(states.size()) - 1;
  }
};

/// Recursive-descent regex parser that emits NFA fragments (start, end) directly.
class RegexCompiler {
 public:
  explicit RegexCompiler(std::string_view pattern) : p_(pattern) {}

  ByteNfa compile() {
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
    fail<InvalidArgument>("RegexConstraint: pattern \"", std::string(p_), "\": ", what, " at offset ", i_);
  }
  bool more() const { return i_ < p_.size(); }
  char peek() const { return p_[i_]; }

  Frag alternation() {
    Frag left = concatenation();
    while (more() && peek() == '|') {
      ++i_;
      Frag right = concatenation();
      int const s = nfa_.add(), e = nfa_.add();
      nfa_.states[static_cast<std::size_t>(s)].epsilon = {left.start, right.start};
      nfa_.states[static_cast<std::size_t>(left.end)].epsilon.push_back(e);
      nfa_.states[static_cast<std::size_t>(right.end)].epsilon.push_back(e);
      left = {s, e};
    }
    return left;
  }

  Frag concatenation() {
    int const s = nfa_.add();
    Frag out{s, s};
    while (more() && peek() != '|' && peek() != ')') {
      Frag next = repetition();
      nfa_.states[static_cast<std::size_t>(out.end)].epsilon.push_back(next.start);
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
        if (min_rep > 1000 || max_rep > 1000) error("repetition count above 1000");
      } else {
        break;
      }
      if (more() && peek() == '?') error("lazy quantifiers are not supported");
      atom_frag = repeat(atom_frag, first_state, last_state, min_rep, max_rep, unbounded);
      last_state = static_cast<int>(nfa_.states.size());
    }
    return atom_frag;
  }

  // f's states are [first, last) and self-contained; every copy is cloned before anything is linked to f.
  Frag repeat(Frag f, int first, int last, std::size_t min_rep, std::size_t max_rep, bool unbounded) {
    std::size_t const copies = min_rep + (unbounded ? 1 : max_rep - min_rep);
    std::vector<Frag> pieces;
    for (std::size_t k = 0; k < copies; ++k) pieces.push_back(k == 0 ? f : clone(f, first, last));
    auto eps = [&](int from, int to) { nfa_.states[static_cast<std::size_t>(from)].epsilon.push_back(to); };
    int const s = nfa_.add();
    int cur = s;
    for (std::size_t k = 0; k < min_rep; ++k) {
      eps(cur, pieces[k].start);
      cur = pieces[k].end;
    }
    int const e = nfa_.add();
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

  std::size_t number() {
    std::size_t n = 0;
    std::size_t digits = 0;
    while (more() && peek() >= '0' && peek() <= '9') {
      n = n * 10 + static_cast<std::size_t>(peek() - '0');
      ++i_;
      if (++digits > 6) error("repetition count too large");
    }
    if (digits == 0) error("expected a number");
    return n;
  }

  Frag byte_set(ByteSet const& set) {
    int const s = nfa_.add(), e = nfa_.add();
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
      ++i_;
      if (p_.substr(i_, 2) == "?:") {
        i_ += 2;
      } else if (more() && peek() == '?') {
        error("lookaround and named groups are not supported");
      }
      Frag inner = alternation();
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
  std::size_t i_ = 0;
  ByteNfa nfa_;
};

/// Lazily determinized byte DFA with a per-state cache of allowed tokens. Shared by copies of a constraint.
class RegexTokenAutomaton {
 public:
  static constexpr int dead = -1;

  RegexTokenAutomaton(std::string_view pattern, std::vector<std::string> token_bytes,
                      std::vector<std::uint32_t> eos_ids)
      : nfa_(RegexCompiler(pattern).compile()), vocab_(token_bytes.size()), eos_(std::move(eos_ids)) {
    if (vocab_ == 0) fail<InvalidArgument>("RegexConstraint: the vocabulary is empty");
    for (std::uint32_t const id : eos_) {
      if (id >= vocab_) fail<OutOfRange>("RegexConstraint: eos id ", id, " >= vocab = ", vocab_);
    }
    trie_.emplace_back();
    for (std::size_t id = 0; id < token_bytes.size(); ++id) {
      if (token_bytes[id].empty()) continue;  // special tokens never produce text
      int node = 0;
      for (char const ch : token_bytes[id]) node = child(node, static_cast<unsigned char>(ch));
      trie_[static_cast<std::size_t>(node)].ids.push_back(static_cast<std::uint32_t>(id));
    }
    token_bytes_ = std::move(token_bytes);
    start_ = intern(closure({nfa_.start}));
  }

  [[nodiscard]] int start() const { return start_; }
  [[nodiscard]] std::size_t vocab() const { return vocab_; }
  [[nodiscard]] std::span<std::uint32_t const> eos_ids() const { return eos_; }
  [[nodiscard]] bool accepting(int state) const { return state >= 0 && accepting_[static_cast<std::size_t>(state)]; }
  [[nodiscard]] std::size_t num_states() const { return sets_.size(); }
  [[nodiscard]] std::string const& token_bytes(std::uint32_t id) const { return token_bytes_.at(id); }

  /// DFA state after reading `byte` in `state` (dead = -1).
  int step(int state, unsigned char byte) {
    if (state < 0) return dead;
    int& t = transitions_[static_cast<std::size_t>(state)][byte];
    if (t != unknown) return t;
    std::vector<int> moved;
    for (int const q : sets_[static_cast<std::size_t>(state)]) {
      auto const& st = nfa_.states[static_cast<std::size_t>(q)];
      if (st.next >= 0 && st.on.test(byte)) moved.push_back(st.next);
    }
    int const target = moved.empty() ? dead : intern(closure(std::move(moved)));
    transitions_[static_cast<std::size_t>(state)][byte] = target;  // `t` may dangle after intern() grew the table
    return target;
  }

  /// DFA state after reading a token's bytes, or dead.
  int step_token(int state, std::uint32_t id) {
    if (id >= vocab_) fail<OutOfRange>("RegexConstraint: token id ", id, " >= vocab = ", vocab_);
    if (token_bytes_[id].empty()) return dead;
    for (char const ch : token_bytes_[id]) {
      state = step(state, static_cast<unsigned char>(ch));
      if (state < 0) return dead;
    }
    return state;
  }

  /// Ids allowed in `state` (tokens that keep a match possible; end-of-sequence where the state accepts).
  LogitMask const& allowed(int state) {
    if (masks_.size() <= static_cast<std::size_t>(state)) masks_.resize(static_cast<std::size_t>(state) + 1);
    auto& slot = masks_[static_cast<std::size_t>(state)];
    if (!slot) {
      std::vector<std::uint32_t> ids;
      walk(0, state, ids);
      if (accepting(state)) ids.insert(ids.end(), eos_.begin(), eos_.end());
      slot = std::make_unique<LogitMask>(ids.empty() ? LogitMask(Brle().append(false, vocab_))
                                                     : LogitMask::allow(ids, vocab_));
    }
    return *slot;
  }

 private:
  static constexpr int unknown = -2;
  struct TrieNode {
    std::vector<std::pair<unsigned char, int>> children;
    std::vector<std::uint32_t> ids;  // tokens whose bytes end here
  };

  int child(int node, unsigned char byte) {
    for (auto const& [b, n] : trie_[static_cast<std::size_t>(node)].children) {
      if (b == byte) return n;
    }
    trie_.emplace_back();
    int const n = static_cast<int>(trie_.size()) - 1;
    trie_[static_cast<std::size_t>(node)].children.emplace_back(byte, n);
    return n;
  }

  void walk(int node, int state, std::vector<std::uint32_t>& out) {
    // Iterate over a copy of the child list: step() may grow other tables but never the trie.
    for (std::size_t k = 0; k < trie_[static_cast<std::size_t>(node)].children.size(); ++k) {
      auto const [byte, next] = trie_[static_cast<std::size_t>(node)].children[k];
      int const ns = step(state, byte);
      if (ns < 0) continue;  // prune: no token below this node can be allowed
      auto const& ids = trie_[static_cast<std::size_t>(next)].ids;
      out.insert(out.end(), ids.begin(), ids.end());
      walk(next, ns, out);
    }
  }

  std::vector<int> closure(std::vector<int> seeds) const {
    std::vector<char> seen(nfa_.states.size(), 0);
    std::vector<int> stack = std::move(seeds), out;
    while (!stack.empty()) {
      int const q = stack.back();
      stack.pop_back();
      if (seen[static_cast<std::size_t>(q)]) continue;
      seen[static_cast<std::size_t>(q)] = 1;
      out.push_back(q);
      for (int const t : nfa_.states[static_cast<std::size_t>(q)].epsilon) stack.push_back(t);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  int intern(std::vector<int> set) {
    auto const it = ids_.find(set);
    if (it != ids_.end()) return it->second;
    int const id = static_cast<int>(sets_.size());
    accepting_.push_back(std::binary_search(set.begin(), set.end(), nfa_.accept));
    ids_.emplace(set, id);
    sets_.push_back(std::move(set));
    std::array<int, 256> row;
    row.fill(unknown);
    transitions_.push_back(row);
    return id;
  }

  ByteNfa nfa_;
  std::size_t vocab_;
  std::vector<std::uint32_t> eos_;
  std::vector<std::string> token_bytes_;             // [vocab] bytes of each token
  std::vector<TrieNode> trie_;                       // byte trie of the vocabulary
  std::vector<std::vector<int>> sets_;               // [dfa states] sorted NFA state sets
  std::map<std::vector<int>, int> ids_;              // NFA state set -> DFA state
  std::vector<bool> accepting_;                      // [dfa states]
  std::vector<std::array<int, 256>> transitions_;    // [dfa states][byte] -> state, dead or unknown
  std::vector<std::unique_ptr<LogitMask>> masks_;    // [dfa states] cached allowed ids
  int start_ = 0;
};

}  // namespace detail

/// Constrains the generated text to match `pattern` (whole output). Copies (forks, beams) share the compiled
/// automaton and its caches; the shared state is not thread-safe, like the rest of a program's runtime objects.
class RegexConstraint {
 public:
  /// `token_bytes[id]` is the text token `id` decodes to (empty for special tokens, which are never allowed);
  /// `eos_ids` end the generation and are allowed exactly when the text so far matches.
  /// Throws InvalidArgument for an unsupported or malformed pattern, OutOfRange for an eos id >= vocab.
  RegexConstraint(std::string_view pattern, std::vector<std::string> token_bytes, std::vector<std::uint32_t> eos_ids)
      : automaton_(std::make_shared<detail::RegexTokenAutomaton>(pattern, std::move(token_bytes), std::move(eos_ids))),
        state_(automaton_->start()) {}

  /// The ids allowed next. After an end-of-sequence id only end-of-sequence ids are allowed.
  [[nodiscard]] LogitMask mask() const {
    if (finished_) return LogitMask::allow(automaton_->eos_ids(), automaton_->vocab());
    return automaton_->allowed(state_);
  }

  /// Records a sampled id. Throws InvalidArgument (state unchanged) if the mask did not allow it.
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
    int const next = finished_ ? detail::RegexTokenAutomaton::dead : automaton_->step_token(state_, id);
    if (next < 0) {
      detail::fail<InvalidArgument>("RegexConstraint::advance: token id ", id, " cannot continue a match");
    }
    state_ = next;
  }

  /// True if the text so far is a complete match.
  [[nodiscard]] bool accepting() const { return automaton_->accepting(state_); }
  /// True once an end-of-sequence id was accepted.
  [[nodiscard]] bool finished() const { return finished_; }
  /// DFA states built so far (for diagnostics).
  [[nodiscard]] std::size_t dfa_states() const { return automaton_->num_states(); }

 private:
  std::shared_ptr<detail::RegexTokenAutomaton> automaton_;
  int state_;
  bool finished_ = false;
};

static_assert(Constraint<RegexConstraint>);

}  // namespace piecrust
