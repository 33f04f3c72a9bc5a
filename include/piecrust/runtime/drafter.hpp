#pragma once
// Drafters for speculative decoding.
//
// A Drafter proposes tokens that the model then verifies in one forward pass:
//   drafter.update(accepted)  -> tell it which tokens were accepted (appended to the sequence)
//   drafter.draft()           -> a Draft: a chain or a tree of proposed tokens
// A Draft is a forest hanging off the last accepted token: parents[i] is the index of token i's parent in the
// draft, or -1 when it follows the last accepted token directly. A chain has parents = {-1, 0, 1, ...}.
// Verification rows (`verification_rows`) let each draft token attend to the context and its own ancestors
// only, so sibling branches of a tree never see each other.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust {

struct Draft {
  std::vector<std::uint32_t> tokens;  // [n] proposed token ids
  std::vector<std::int32_t> parents;  // [n] parent index in `tokens`, or -1 for the root level; parents[i] < i

  [[nodiscard]] bool empty() const { return tokens.empty(); }
  [[nodiscard]] std::size_t size() const { return tokens.size(); }

  /// A chain: each token follows the previous one.
  static Draft chain(std::vector<std::uint32_t> tokens) {
    Draft d;
    d.parents.resize(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) d.parents[i] = static_cast<std::int32_t>(i) - 1;
    d.tokens = std::move(tokens);
    return d;
  }

  /// Throws InvalidArgument unless sizes match and every parent precedes its child.
  void validate() const {
    if (parents.size() != tokens.size()) {
      detail::fail<InvalidArgument>("Draft: parents.size() = ", parents.size(), " != tokens.size() = ", tokens.size());
    }
    for (std::size_t i = 0; i < parents.size(); ++i) {
      if (parents[i] < -1 || parents[i] >= static_cast<std::int32_t>(i)) {
        detail::fail<InvalidArgument>("Draft: parents[", i, "] = ", parents[i], " must be -1 or an earlier index");
      }
    }
  }

  /// Depth of token i: 1 for the root level. Its position is (position of the last accepted token) + depth.
  [[nodiscard]] std::size_t depth(std::size_t i) const {
    std::size_t d = 1;
    for (std::int32_t p = parents.at(i); p >= 0; p = parents[static_cast<std::size_t>(p)]) ++d;
    return d;
  }

  /// Attention rows for a verification pass whose input is [last accepted token, draft tokens...], appended
  /// after `kv_before` cached tokens. Row 0 is causal; draft token i sees the context, the last accepted token
  /// and its own ancestors (0 = attend, 1 = masked).
  [[nodiscard]] std::vector<AttentionMask> verification_rows(std::size_t kv_before) const {
    validate();
    std::size_t const base = kv_before + 1;  // context + the last accepted token
    std::vector<AttentionMask> rows;  // [1 + n]
    rows.reserve(tokens.size() + 1);
    rows.push_back(AttentionMask::causal(base));
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::vector<std::uint8_t> sees(i + 1, 1);  // [i + 1] over draft slots 0..i; 1 = masked
      for (std::int32_t a = static_cast<std::int32_t>(i); a >= 0; a = parents[static_cast<std::size_t>(a)]) {
        sees[static_cast<std::size_t>(a)] = 0;
      }
      Brle bits;
      bits.append(false, base);
      for (std::uint8_t const m : sees) bits.append(m != 0);
      rows.emplace_back(std::move(bits));
    }
    return rows;
  }
};

/// A speculative-decoding drafter.
template <class D>
concept Drafter = requires(D& d, std::span<std::uint32_t const> accepted) {
  d.update(accepted);
  { d.draft() } -> std::convertible_to<Draft>;
};

/// Prompt-lookup (n-gram) drafting: find the most recent earlier occurrence of the sequence's last n tokens
/// (trying max_ngram down to min_ngram) and propose the tokens that followed it.
/// Source: Saxena, "Prompt Lookup Decoding" (2023); the same scheme as llama.cpp's lookup decoding.
/// The draft length adapts to how drafts fare, between 1 and `max_draft`: +2 after a draft that was
/// accepted whole, -1 after one that was not (the "heuristic" schedule of Hugging Face transformers'
/// assisted generation). A verification pass costs more per drafted token than it saves when most drafts
/// are rejected; the schedule keeps long drafts for stretches the model is copying.
class NgramDrafter {
 public:
  NgramDrafter(std::size_t max_ngram = 3, std::size_t max_draft = 8, std::size_t min_ngram = 1)
      : max_ngram_(max_ngram), min_ngram_(min_ngram), max_draft_(max_draft), limit_(max_draft) {
    if (min_ngram == 0 || min_ngram > max_ngram) {
      detail::fail<InvalidArgument>("NgramDrafter: need 1 <= min_ngram <= max_ngram, got min_ngram = ", min_ngram,
                                    ", max_ngram = ", max_ngram);
    }
    if (max_draft == 0) detail::fail<InvalidArgument>("NgramDrafter: max_draft = 0");
  }

  /// `accepted`: the tokens the sequence gained since the last call: after a verification pass, the
  /// accepted draft prefix followed by the model's own next token.
  void update(std::span<std::uint32_t const> accepted) {
    if (last_draft_ > 0 && !accepted.empty()) {
      std::size_t const matched = accepted.size() - 1;
      limit_ = matched >= last_draft_ ? std::min(max_draft_, limit_ + 2) : std::max<std::size_t>(1, limit_ - 1);
    }
    last_draft_ = 0;
    history_.insert(history_.end(), accepted.begin(), accepted.end());
  }

  /// The current draft length limit (1 .. max_draft).
  [[nodiscard]] std::size_t draft_limit() const noexcept { return limit_; }

  [[nodiscard]] Draft draft() {
    std::size_t const len = history_.size();
    for (std::size_t n = std::min(max_ngram_, len > 0 ? len - 1 : 0); n >= min_ngram_ && n > 0; --n) {
      auto const suffix = std::span(history_).subspan(len - n);
      // Most recent earlier occurrence that has at least one token after it.
      for (std::size_t start = len - n; start-- > 0;) {
        if (std::equal(suffix.begin(), suffix.end(), history_.begin() + static_cast<std::ptrdiff_t>(start))) {
          std::size_t const from = start + n;
          std::size_t const take = std::min(limit_, len - from);
          last_draft_ = take;
          return Draft::chain({history_.begin() + static_cast<std::ptrdiff_t>(from),
                               history_.begin() + static_cast<std::ptrdiff_t>(from + take)});
        }
      }
    }
    return {};
  }

  [[nodiscard]] std::span<std::uint32_t const> history() const { return history_; }

 private:
  std::size_t max_ngram_, min_ngram_, max_draft_;
  std::size_t limit_;           // current draft length limit
  std::size_t last_draft_ = 0;  // length of the draft proposed since the last update (0: none)
  std::vector<std::uint32_t> history_;  // [tokens so far] the whole accepted sequence
};

static_assert(Drafter<NgramDrafter>);

}  // namespace piecrust
