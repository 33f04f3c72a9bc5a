#pragma once
// MaskedSlots: the KV slots of one context flagged by mask_token_range, kept as sorted, disjoint,
// non-touching half-open ranges [begin, end). The engine builds the default attention rows of every pass
// from it (slots to skip), so a pass costs O(number of masked ranges), not O(slots), whatever the context's
// length. The page table's per-slot flags stay the authority for page-level decisions (drop, page keys);
// Context keeps both in step (mask_token_range, drop_masked_kv_pages, fork, import), and slots past the
// table's end (truncated working tokens) are forgotten with `truncate` before they are read.

#include <piecrust/core/brle.hpp>
#include <piecrust/core/token_meta.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

namespace piecrust {

class MaskedSlots {
 public:
  struct Range {
    std::size_t begin = 0;
    std::size_t end = 0;
    friend bool operator==(Range const&, Range const&) = default;
  };

  /// The ranges, ascending; consecutive ranges are separated by at least one unmasked slot.
  [[nodiscard]] std::span<Range const> ranges() const noexcept { return ranges_; }
  [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }

  /// Flags slots [begin, end) masked (or unmasked). O(number of ranges).
  void assign(std::size_t begin, std::size_t end, bool masked) {
    if (begin >= end) return;
    std::vector<Range> out;  // [ranges + 1]
    out.reserve(ranges_.size() + 1);
    if (masked) {
      Range merged{begin, end};
      bool placed = false;
      for (Range const& r : ranges_) {
        if (r.end < merged.begin) {
          out.push_back(r);  // before, not touching
        } else if (r.begin > merged.end) {
          if (!placed) out.push_back(merged);
          placed = true;
          out.push_back(r);  // after, not touching
        } else {
          merged = {std::min(merged.begin, r.begin), std::max(merged.end, r.end)};  // overlapping or touching
        }
      }
      if (!placed) out.push_back(merged);
    } else {
      for (Range const& r : ranges_) {
        if (r.end <= begin || r.begin >= end) {
          out.push_back(r);
          continue;
        }
        if (r.begin < begin) out.push_back({r.begin, begin});
        if (r.end > end) out.push_back({end, r.end});
      }
    }
    ranges_ = std::move(out);
  }

  /// Forgets every slot >= n (they were truncated away). O(ranges past n).
  void truncate(std::size_t n) {
    while (!ranges_.empty() && ranges_.back().begin >= n) ranges_.pop_back();
    if (!ranges_.empty() && ranges_.back().end > n) ranges_.back().end = n;
  }

  /// First slots of the blocks [p * block, (p + 1) * block), p < num_blocks, that are wholly masked,
  /// ascending: the committed pages drop_masked_kv_pages frees. O(ranges + blocks found).
  [[nodiscard]] std::vector<std::size_t> masked_blocks(std::size_t block, std::size_t num_blocks) const {
    std::vector<std::size_t> firsts;  // [found]
    for (Range const& r : ranges_) {
      std::size_t const p0 = (r.begin + block - 1) / block;
      std::size_t const p1 = std::min(r.end / block, num_blocks);
      for (std::size_t p = p0; p < p1; ++p) firsts.push_back(p * block);
    }
    return firsts;
  }

  /// Removes the blocks of `block` slots starting at `firsts` (ascending, each wholly masked) and moves the
  /// slots after each one down by `block`, as dropping committed pages does. O(ranges + firsts).
  void erase_blocks(std::span<std::size_t const> firsts, std::size_t block) {
    std::vector<Range> out;  // [ranges]
    out.reserve(ranges_.size());
    std::size_t i = 0;  // blocks wholly before the current point
    auto removed_before = [&](std::size_t x) {
      while (i < firsts.size() && firsts[i] + block <= x) ++i;
      return i * block;
    };
    for (Range const& r : ranges_) {
      std::size_t const b = r.begin - removed_before(r.begin);
      std::size_t const e = r.end - removed_before(r.end);
      if (b < e) out.push_back({b, e});
    }
    ranges_ = std::move(out);
  }

  /// The first n slots as bits, 1 = masked: [n]. O(ranges).
  [[nodiscard]] Brle bits(std::size_t n) const {
    Brle out;
    std::size_t at = 0;
    for (Range const& r : ranges_) {
      if (r.begin >= n) break;
      out.append(false, r.begin - at).append(true, std::min(r.end, n) - r.begin);
      at = std::min(r.end, n);
    }
    return out.append(false, n - at);
  }

  /// Whether any of the first n slots is masked.
  [[nodiscard]] bool any_before(std::size_t n) const noexcept { return !ranges_.empty() && ranges_.front().begin < n; }

  /// The ranges of a sequence of slot flags (one O(slots) scan: imports).
  [[nodiscard]] static MaskedSlots from_tokens(std::span<TokenMeta const> slots) {
    MaskedSlots m;
    for (std::size_t s = 0; s < slots.size(); ++s) {
      if (!slots[s].masked) continue;
      if (!m.ranges_.empty() && m.ranges_.back().end == s) {
        ++m.ranges_.back().end;
      } else {
        m.ranges_.push_back({s, s + 1});
      }
    }
    return m;
  }

 private:
  std::vector<Range> ranges_;  // [num_ranges] ascending, disjoint, not touching
};

}  // namespace piecrust
