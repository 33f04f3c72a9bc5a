#pragma once
// RegexTokenAutomaton: a RegexConstraint's NFA, determinized lazily into a bounded cache of DFA states, and
// the vocabulary's byte trie that turns a DFA state into the LogitMask of the tokens allowed there.
//
// A DFA state is named by its sorted NFA state set (Rabin & Scott's subset construction), so a constraint
// holds that set (DfaRef) rather than a cache slot: the cache may be emptied between any two operations and
// the state is found again, or rebuilt, on the next one. RegexLimits (regex_limits.hpp) documents the bounds.

#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/core/logit_mask.hpp>
#include <piecrust/runtime/detail/regex_nfa.hpp>
#include <piecrust/runtime/regex_limits.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace piecrust::detail {

/// A DFA state as a constraint holds it: the NFA state set, and a memo of its slot in the cache.
struct DfaRef {
  std::shared_ptr<std::vector<int> const> set;  // [states] sorted NFA states; null = dead (no match possible)
  mutable std::uint64_t epoch = 0;              // cache generation `id` belongs to (0: none)
  mutable int id = -1;                          // slot in that generation

  [[nodiscard]] bool dead() const { return set == nullptr; }
};

class RegexTokenAutomaton {
 public:
  RegexTokenAutomaton(std::string_view pattern, std::vector<std::string> token_bytes,
                      std::vector<std::uint32_t> eos_ids, RegexLimits const& limits)
      : limits_(validated(limits)),
        nfa_(RegexCompiler(pattern, limits_).compile()),
        vocab_(token_bytes.size()),
        eos_(std::move(eos_ids)) {
    if (vocab_ == 0) fail<InvalidArgument>("RegexConstraint: the vocabulary is empty");
    if (vocab_ > std::numeric_limits<std::uint32_t>::max()) {
      fail<InvalidArgument>("RegexConstraint: vocabulary size ", vocab_, " exceeds the token id range");
    }
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
    marks_.assign(nfa_.states.size(), 0);
    start_.set = std::make_shared<std::vector<int> const>(closure({nfa_.start}));
  }

  [[nodiscard]] DfaRef const& start() const { return start_; }
  [[nodiscard]] std::size_t vocab() const { return vocab_; }
  [[nodiscard]] std::span<std::uint32_t const> eos_ids() const { return eos_; }
  [[nodiscard]] bool accepting(DfaRef const& r) const {
    return !r.dead() && std::binary_search(r.set->begin(), r.set->end(), nfa_.accept);
  }
  /// DFA states in the cache now, bytes they hold (approximate), and how often the cache was emptied.
  [[nodiscard]] std::size_t num_states() const { return states_.size(); }
  [[nodiscard]] std::size_t cache_bytes() const { return bytes_; }
  [[nodiscard]] std::size_t flushes() const { return flushes_; }
  [[nodiscard]] std::size_t nfa_states() const { return nfa_.states.size(); }

  /// Ids allowed in `r` (tokens whose bytes keep a match possible; end-of-sequence where it accepts).
  [[nodiscard]] LogitMask allowed(DfaRef const& r) {
    if (r.dead()) return LogitMask(Brle().append(false, vocab_));
    return bounded("the mask of one state", [&] {
      int const s = resolve(r);
      if (!states_[static_cast<std::size_t>(s)].mask) {
        std::vector<std::uint32_t> ids = walk(s);
        if (accepting(r)) ids.insert(ids.end(), eos_.begin(), eos_.end());
        LogitMask m = ids.empty() ? LogitMask(Brle().append(false, vocab_)) : LogitMask::allow(ids, vocab_);
        bytes_ += sizeof(LogitMask) + m.bits().num_runs() * sizeof(Brle::run_type);
        states_[static_cast<std::size_t>(s)].mask = std::move(m);
      }
      return *states_[static_cast<std::size_t>(s)].mask;
    });
  }

  /// The state after reading token `id`'s bytes from `r` (dead if no match remains possible).
  [[nodiscard]] DfaRef step_token(DfaRef const& r, std::uint32_t id) {
    if (id >= vocab_) fail<OutOfRange>("RegexConstraint: token id ", id, " >= vocab = ", vocab_);
    if (r.dead() || token_bytes_[id].empty()) return {};
    return bounded("reading one token", [&]() -> DfaRef {
      int s = resolve(r);
      for (char const ch : token_bytes_[id]) {
        s = step(s, static_cast<unsigned char>(ch));
        if (s == dead) return {};
      }
      DfaState const& st = states_[static_cast<std::size_t>(s)];
      return DfaRef{st.set, epoch_, s};
    });
  }

 private:
  static constexpr int dead = -1;
  static constexpr int unknown = -2;
  static constexpr std::size_t state_overhead = 64;  // a state's hash-table node and shared set's control block

  static RegexLimits const& validated(RegexLimits const& limits) {
    limits.validate();
    return limits;
  }

  struct DfaState {
    std::shared_ptr<std::vector<int> const> set;  // [states] sorted NFA states
    std::array<int, 256> next;                    // [byte] -> state, dead or unknown
    std::optional<LogitMask> mask;                // the allowed ids, once computed
  };
  struct TrieNode {
    std::vector<std::pair<unsigned char, int>> children;
    std::vector<std::uint32_t> ids;  // tokens whose bytes end here
  };
  struct SetHash {
    std::size_t operator()(std::vector<int> const* s) const noexcept {
      std::size_t h = 1469598103934665603ull;  // FNV-1a over the state numbers
      for (int const q : *s) h = (h ^ static_cast<std::size_t>(q)) * 1099511628211ull;
      return h;
    }
  };
  struct SetEqual {
    bool operator()(std::vector<int> const* a, std::vector<int> const* b) const noexcept { return *a == *b; }
  };
  /// Thrown inside an operation when the cache cannot take one more state; bounded() handles it.
  struct CacheFull {
    bool bytes;  // the byte budget, not the state count, ran out
  };

  /// Runs `op` within the cache's bounds: a full cache is emptied first; an operation that fills it is
  /// started again on an empty cache, once; one that fills even an empty cache throws LimitExceeded.
  template <class Op>
  auto bounded(char const* what, Op op) -> decltype(op()) {
    if (states_.size() >= limits_.max_dfa_states || bytes_ >= limits_.max_dfa_bytes) flush();
    bool const started_empty = states_.empty();
    CacheFull full{};
    try {
      return op();
    } catch (CacheFull const& f) {
      full = f;
    }
    flush();
    if (!started_empty) {
      try {
        return op();
      } catch (CacheFull const& f) {
        full = f;
      }
      flush();
    }
    if (full.bytes) {
      fail<LimitExceeded>("RegexConstraint: ", what, " needs more than max_dfa_bytes = ", limits_.max_dfa_bytes,
                          " bytes of DFA states");
    }
    fail<LimitExceeded>("RegexConstraint: ", what, " needs more than max_dfa_states = ", limits_.max_dfa_states,
                        " DFA states");
  }

  void flush() {
    states_.clear();
    index_.clear();
    bytes_ = 0;
    ++epoch_;
    ++flushes_;
  }

  int resolve(DfaRef const& r) {
    if (r.epoch != epoch_) {
      r.id = intern(r.set);
      r.epoch = epoch_;
    }
    return r.id;
  }

  int intern(std::shared_ptr<std::vector<int> const> set) {
    if (auto const it = index_.find(set.get()); it != index_.end()) return it->second;
    std::size_t const cost = sizeof(DfaState) + state_overhead + set->size() * sizeof(int);
    if (states_.size() >= limits_.max_dfa_states) throw CacheFull{false};
    if (cost > limits_.max_dfa_bytes - std::min(bytes_, limits_.max_dfa_bytes)) throw CacheFull{true};
    int const id = static_cast<int>(states_.size());
    DfaState st{set, {}, std::nullopt};
    st.next.fill(unknown);
    states_.push_back(std::move(st));
    index_.emplace(states_.back().set.get(), id);
    bytes_ += cost;
    return id;
  }

  /// DFA state after reading `byte` in `state` (dead = -1).
  int step(int state, unsigned char byte) {
    int const known = states_[static_cast<std::size_t>(state)].next[byte];
    if (known != unknown) return known;
    std::vector<int> moved;
    for (int const q : *states_[static_cast<std::size_t>(state)].set) {
      auto const& st = nfa_.states[static_cast<std::size_t>(q)];
      if (st.next >= 0 && st.on.test(byte)) moved.push_back(st.next);
    }
    int const target = moved.empty() ? dead : intern(std::make_shared<std::vector<int> const>(closure(std::move(moved))));
    states_[static_cast<std::size_t>(state)].next[byte] = target;  // intern() may have moved the states
    return target;
  }

  int child(int node, unsigned char byte) {
    for (auto const& [b, n] : trie_[static_cast<std::size_t>(node)].children) {
      if (b == byte) return n;
    }
    trie_.emplace_back();
    int const n = static_cast<int>(trie_.size()) - 1;
    trie_[static_cast<std::size_t>(node)].children.emplace_back(byte, n);
    return n;
  }

  /// Every token whose bytes lead from `state` to a live state: a depth-first walk of the trie with an
  /// explicit stack (tokens may be long), pruned where the DFA dies.
  std::vector<std::uint32_t> walk(int state) {
    struct Frame {
      int node;
      int state;
      std::size_t next_child;
    };
    std::vector<std::uint32_t> out;
    std::vector<Frame> stack{{0, state, 0}};  // [trie depth]
    while (!stack.empty()) {
      Frame& f = stack.back();
      auto const& children = trie_[static_cast<std::size_t>(f.node)].children;
      if (f.next_child == children.size()) {
        stack.pop_back();
        continue;
      }
      auto const [byte, node] = children[f.next_child++];
      int const ns = step(f.state, byte);
      if (ns == dead) continue;  // prune: no token below this node can be allowed
      auto const& ids = trie_[static_cast<std::size_t>(node)].ids;
      out.insert(out.end(), ids.begin(), ids.end());
      stack.push_back({node, ns, 0});
    }
    return out;
  }

  /// The epsilon closure of `seeds`, sorted. Visited states are stamped with a counter, so a closure costs
  /// what it reaches rather than the whole NFA.
  std::vector<int> closure(std::vector<int> seeds) {
    if (++stamp_ == 0) {
      std::fill(marks_.begin(), marks_.end(), 0u);
      stamp_ = 1;
    }
    std::vector<int> stack = std::move(seeds), out;
    while (!stack.empty()) {
      int const q = stack.back();
      stack.pop_back();
      if (marks_[static_cast<std::size_t>(q)] == stamp_) continue;
      marks_[static_cast<std::size_t>(q)] = stamp_;
      out.push_back(q);
      for (int const t : nfa_.states[static_cast<std::size_t>(q)].epsilon) stack.push_back(t);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  RegexLimits limits_;
  ByteNfa nfa_;
  std::size_t vocab_;
  std::vector<std::uint32_t> eos_;
  std::vector<std::string> token_bytes_;  // [vocab] bytes of each token
  std::vector<TrieNode> trie_;            // byte trie of the vocabulary
  std::vector<std::uint32_t> marks_;      // [nfa states] closure stamps
  std::uint32_t stamp_ = 0;
  DfaRef start_;

  // The cache: emptied as a whole by flush(), never partly.
  std::vector<DfaState> states_;                                                      // [dfa states]
  std::unordered_map<std::vector<int> const*, int, SetHash, SetEqual> index_;        // set -> slot
  std::size_t bytes_ = 0;                                                             // held by states_
  std::uint64_t epoch_ = 1;
  std::size_t flushes_ = 0;
};

}  // namespace piecrust::detail
