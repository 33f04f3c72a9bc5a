#pragma once
// LogitMask: which vocabulary ids a sampler may pick, in Pie's documented polarity
//   1 = allowed, 0 = forbidden.
// An empty mask allows every id. Masks from several constraints combine with AND (operator&).
// Deliberately not convertible to or from AttentionMask: the two polarities are opposite.

#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <utility>
#include <vector>

namespace piecrust {

class LogitMask {
 public:
  using token_id = std::uint32_t;

  /// The largest vocabulary a mask can address: every 32-bit token id.
  static constexpr std::size_t max_vocab = std::size_t{1} << 32;

  /// Half-open range of token ids [begin, end).
  struct IdRange {
    token_id begin;
    token_id end;
  };

  /// Allows every id (the empty mask).
  LogitMask() = default;

  /// Wraps bits that already use 1 = allowed. Explicit: a raw Brle has no polarity.
  explicit LogitMask(Brle bits) : bits_(std::move(bits)) {}

  static LogitMask allow_all() { return LogitMask(); }

  /// Allows exactly `ids` out of a vocabulary of `vocab` ids. Throws OutOfRange for an id >= vocab and
  /// InvalidArgument for vocab = 0 or vocab > max_vocab (so does forbid).
  static LogitMask allow(std::span<token_id const> ids, std::size_t vocab) {
    return from_sorted_ids(sorted_checked(ids, vocab, "LogitMask::allow"), vocab, true);
  }
  static LogitMask allow(std::initializer_list<token_id> ids, std::size_t vocab) {
    return allow(std::span<token_id const>(ids.begin(), ids.size()), vocab);
  }

  /// Allows the ids of every range; ranges may overlap and come in any order. Throws OutOfRange for a range
  /// that ends past `vocab` and InvalidArgument for begin > end, vocab = 0 or vocab > max_vocab.
  static LogitMask allow_ranges(std::span<IdRange const> ranges, std::size_t vocab) {
    check_vocab(vocab, "LogitMask::allow_ranges");
    std::vector<IdRange> sorted(ranges.begin(), ranges.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i].begin > sorted[i].end) {
        detail::fail<InvalidArgument>("LogitMask::allow_ranges: ranges[", i, "] = [", sorted[i].begin, ", ",
                                      sorted[i].end, ") has begin > end");
      }
      if (sorted[i].end > vocab) {
        detail::fail<OutOfRange>("LogitMask::allow_ranges: ranges[", i, "] ends at ", sorted[i].end,
                                 " > vocab = ", vocab);
      }
    }
    std::sort(sorted.begin(), sorted.end(), [](IdRange a, IdRange b) { return a.begin < b.begin; });
    Brle bits;
    std::size_t pos = 0;
    for (IdRange const r : sorted) {
      if (r.end <= pos) continue;
      std::size_t const b = std::max<std::size_t>(r.begin, pos);
      bits.append(false, b - pos).append(true, r.end - b);
      pos = r.end;
    }
    bits.append(false, vocab - pos);
    return LogitMask(std::move(bits));
  }

  /// Forbids exactly `ids`; every other id of the vocabulary is allowed.
  static LogitMask forbid(std::span<token_id const> ids, std::size_t vocab) {
    return from_sorted_ids(sorted_checked(ids, vocab, "LogitMask::forbid"), vocab, false);
  }
  static LogitMask forbid(std::initializer_list<token_id> ids, std::size_t vocab) {
    return forbid(std::span<token_id const>(ids.begin(), ids.size()), vocab);
  }

  /// True when the mask allows every id.
  [[nodiscard]] bool empty() const { return bits_.empty(); }
  /// Vocabulary size the mask covers (0 for the empty, allow-all mask).
  [[nodiscard]] std::size_t size() const { return bits_.size(); }
  [[nodiscard]] Brle const& bits() const { return bits_; }

  /// True if `id` may be sampled. For a non-empty mask, ids past its size are forbidden.
  [[nodiscard]] bool allows(token_id id) const { return bits_.empty() || (id < bits_.size() && bits_.bit(id)); }

  /// Number of allowed ids out of `vocab`.
  [[nodiscard]] std::size_t allowed_count(std::size_t vocab) const {
    if (bits_.empty()) return vocab;
    return bits_.count(true);
  }

  /// Both constraints at once. The empty mask is the identity; otherwise sizes must match (InvalidArgument).
  friend LogitMask operator&(LogitMask const& a, LogitMask const& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    if (a.size() != b.size()) {
      detail::fail<InvalidArgument>("LogitMask operator&: vocabulary sizes differ (", a.size(), " and ", b.size(),
                                    ")");
    }
    return LogitMask(a.bits_ & b.bits_);
  }
  LogitMask& operator&=(LogitMask const& other) { return *this = *this & other; }

  friend bool operator==(LogitMask const& a, LogitMask const& b) { return a.bits_ == b.bits_; }

 private:
  static void check_vocab(std::size_t vocab, char const* who) {
    if (vocab == 0 || vocab > max_vocab) {
      detail::fail<InvalidArgument>(who, ": vocab = ", vocab, " must be in [1, ", max_vocab, "]");
    }
  }

  static std::vector<token_id> sorted_checked(std::span<token_id const> ids, std::size_t vocab, char const* who) {
    check_vocab(vocab, who);
    std::vector<token_id> sorted(ids.begin(), ids.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i] >= vocab) detail::fail<OutOfRange>(who, ": ids[", i, "] = ", sorted[i], " >= vocab = ", vocab);
    }
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    return sorted;
  }

  static LogitMask from_sorted_ids(std::vector<token_id> const& ids, std::size_t vocab, bool listed_bit) {
    Brle bits;
    std::size_t pos = 0;
    for (token_id const id : ids) {
      bits.append(!listed_bit, id - pos).append(listed_bit, 1);
      pos = std::size_t{id} + 1;
    }
    bits.append(!listed_bit, vocab - pos);
    return LogitMask(std::move(bits));
  }

  Brle bits_;  // [vocab] 1 = allowed, 0 = forbidden; empty = allow all
};

}  // namespace piecrust
