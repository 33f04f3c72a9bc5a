#pragma once
// The typed alternatives to ejKernel's overloaded representations (spec S2, S3, S6, S7, S9):
//   TokenSpans      F1: one [begin, end) span per batch row (what upstream calls cu_seqlens in from_cu_seqlens)
//   SegmentCumLens  F2: cumulative token counts by segment-id value over the whole batch (what the
//                   cu_seqlens_q property returns once ids exist)
//   CuSeqlens       F3: FlashAttention varlen offsets, num_sequences + 1 entries, starting at 0
// plus per-row / per-segment counts, a per-row multi-sequence predicate, explicit top-left / bottom-right
// alignment, a mode enum that rejects unknown strings, and a real segment recovery that checks the mask
// is block-structured (unlike mask_to_segment_ids, which only groups identical rows).

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/detail/grouping.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/options.hpp"
#include "piecrust/mask_info/tensor.hpp"
#include "piecrust/mask_info/transforms.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

/// A half-open token range [begin, end) within one batch row.
struct TokenSpan {
  std::int32_t begin = 0;
  std::int32_t end = 0;
  [[nodiscard]] std::int32_t length() const { return end > begin ? end - begin : 0; }
  [[nodiscard]] bool contains(std::int64_t i) const { return begin <= i && i < end; }
  friend bool operator==(TokenSpan const&, TokenSpan const&) = default;
};

/// F1: one span per batch row. Upstream stores these interleaved, [s0, e0, s1, e1, ...].
class TokenSpans {
 public:
  TokenSpans() = default;
  explicit TokenSpans(std::vector<TokenSpan> spans) : spans_(std::move(spans)) {}

  /// From upstream's interleaved (2B,) array; throws InvalidArgument for a non-1-D or odd-length input.
  static TokenSpans from_interleaved(IntTensor const& pairs) {
    if (pairs.rank() != 1) {
      piecrust::detail::fail<InvalidArgument>("TokenSpans: interleaved spans must be 1-D, got shape ", shape_repr(pairs.shape()));
    }
    if (pairs.size() % 2 != 0) {
      piecrust::detail::fail<InvalidArgument>("TokenSpans: interleaved spans need an even length, got ", pairs.size());
    }
    std::vector<TokenSpan> s(pairs.size() / 2);  // [batch]
    for (std::size_t b = 0; b < s.size(); ++b) s[b] = {pairs[2 * b], pairs[2 * b + 1]};
    return TokenSpans(std::move(s));
  }

  /// The first..last valid token of each row of a (B, S) mask (holes are not represented).
  static TokenSpans from_valid_mask(BoolTensor const& valid) {
    return from_interleaved(qkv_masks_to_cu_seqlens(valid).q);
  }

  [[nodiscard]] IntTensor to_interleaved() const {
    IntTensor out(Shape{static_cast<std::int64_t>(2 * spans_.size())});  // [2 * batch]
    for (std::size_t b = 0; b < spans_.size(); ++b) {
      out[2 * b] = spans_[b].begin;
      out[2 * b + 1] = spans_[b].end;
    }
    return out;
  }
  [[nodiscard]] BoolTensor to_mask(std::int64_t max_len) const {
    return cu_seqlens_to_mask(to_interleaved(), max_len).bools();
  }

  [[nodiscard]] std::size_t size() const { return spans_.size(); }
  [[nodiscard]] TokenSpan const& operator[](std::size_t b) const { return spans_[b]; }
  [[nodiscard]] std::span<TokenSpan const> spans() const { return spans_; }
  friend bool operator==(TokenSpans const&, TokenSpans const&) = default;

 private:
  std::vector<TokenSpan> spans_;  // [batch]
};

/// F2: cum[s + 1] - cum[s] = number of tokens with id s in the whole batch (rows merged), s < max_segments.
class SegmentCumLens {
 public:
  static SegmentCumLens from_segment_ids(IntTensor const& ids, std::int64_t max_segments = 128) {
    if (max_segments < 0) {
      piecrust::detail::fail<InvalidArgument>("SegmentCumLens: max_segments = ", max_segments, " must be >= 0");
    }
    SegmentCumLens s;
    auto const t = segment_ids_to_cu_seqlens(ids, max_segments);
    s.cum_.assign(t.data().begin(), t.data().end());
    return s;
  }
  [[nodiscard]] std::int64_t max_segments() const { return static_cast<std::int64_t>(cum_.size()) - 1; }
  [[nodiscard]] std::int32_t count(std::int64_t segment) const {
    return cum_.at(static_cast<std::size_t>(segment) + 1) - cum_.at(static_cast<std::size_t>(segment));
  }
  [[nodiscard]] std::span<std::int32_t const> cumulative() const { return cum_; }
  [[nodiscard]] IntTensor to_tensor() const { return IntTensor(Shape{static_cast<std::int64_t>(cum_.size())}, cum_); }

 private:
  std::vector<std::int32_t> cum_;  // [max_segments + 1]
};

/// F3: FlashAttention varlen offsets: sequence s occupies packed tokens [offsets[s], offsets[s + 1]).
class CuSeqlens {
 public:
  CuSeqlens() : offsets_{0} {}

  static CuSeqlens from_lengths(std::span<std::int32_t const> lengths) {
    CuSeqlens c;
    for (auto const n : lengths) {
      if (n < 0) piecrust::detail::fail<InvalidArgument>("CuSeqlens: sequence length = ", n, " must be >= 0");
      c.offsets_.push_back(c.offsets_.back() + n);
    }
    return c;
  }

  /// Validates: 1-D, at least one entry, starts at 0, non-decreasing.
  static CuSeqlens from_offsets(IntTensor const& offsets) {
    if (offsets.rank() != 1 || offsets.size() == 0) {
      piecrust::detail::fail<InvalidArgument>("CuSeqlens: offsets must be 1-D and non-empty, got shape ",
                                              shape_repr(offsets.shape()));
    }
    if (offsets[0] != 0) piecrust::detail::fail<InvalidArgument>("CuSeqlens: offsets[0] = ", offsets[0], " must be 0");
    for (std::size_t i = 1; i < offsets.size(); ++i) {
      if (offsets[i] < offsets[i - 1]) {
        piecrust::detail::fail<InvalidArgument>("CuSeqlens: offsets[", i, "] = ", offsets[i], " < offsets[", i - 1,
                                                "] = ", offsets[i - 1]);
      }
    }
    CuSeqlens c;
    c.offsets_.assign(offsets.data().begin(), offsets.data().end());
    return c;
  }

  /// Packed sequences of (B, S) segment ids: each maximal run of one non-negative id in a row is one
  /// sequence, rows in order; padding (id < 0) is skipped. O(B * S).
  static CuSeqlens from_segment_ids(IntTensor const& ids) {
    detail::require_rank(ids.shape(), 2, "CuSeqlens::from_segment_ids: segment_ids");
    std::vector<std::int32_t> lengths;
    std::int64_t const b = ids.dim(0), s = ids.dim(1);
    for (std::int64_t r = 0; r < b; ++r) {
      std::int32_t prev = -1;
      for (std::int64_t i = 0; i < s; ++i) {
        std::int32_t const id = ids.at(r, i);
        if (id < 0) {
          prev = -1;
          continue;
        }
        if (id != prev) lengths.push_back(0);
        ++lengths.back();
        prev = id;
      }
    }
    return from_lengths(lengths);
  }

  [[nodiscard]] std::size_t num_sequences() const { return offsets_.size() - 1; }
  [[nodiscard]] std::int32_t total_tokens() const { return offsets_.back(); }
  [[nodiscard]] std::int32_t length(std::size_t s) const { return offsets_.at(s + 1) - offsets_.at(s); }
  [[nodiscard]] std::int32_t max_seqlen() const {
    std::int32_t m = 0;
    for (std::size_t s = 0; s < num_sequences(); ++s) m = std::max(m, length(s));
    return m;
  }
  [[nodiscard]] std::span<std::int32_t const> offsets() const { return offsets_; }
  [[nodiscard]] IntTensor to_tensor() const { return IntTensor(Shape{static_cast<std::int64_t>(offsets_.size())}, offsets_); }
  friend bool operator==(CuSeqlens const&, CuSeqlens const&) = default;

 private:
  std::vector<std::int32_t> offsets_;  // [num_sequences + 1]
};

/// Valid (id >= 0) tokens per row of (B, S) ids: always (B,), unlike q_lens (S6).
[[nodiscard]] inline IntTensor per_row_valid_counts(IntTensor const& ids) {
  detail::require_rank(ids.shape(), 2, "per_row_valid_counts: segment_ids");
  IntTensor out(Shape{ids.dim(0)});  // [batch]
  for (std::int64_t b = 0; b < ids.dim(0); ++b)
    for (std::int64_t i = 0; i < ids.dim(1); ++i) out[static_cast<std::size_t>(b)] += ids.at(b, i) >= 0;
  return out;
}

/// Tokens of each id 0..max_segments-1 per row: (B, max_segments); ids are not merged across rows.
[[nodiscard]] inline IntTensor per_segment_counts(IntTensor const& ids, std::int64_t max_segments) {
  detail::require_rank(ids.shape(), 2, "per_segment_counts: segment_ids");
  if (max_segments < 0) piecrust::detail::fail<InvalidArgument>("per_segment_counts: max_segments = ", max_segments, " must be >= 0");
  IntTensor out(Shape{ids.dim(0), max_segments});  // [batch][max_segments]
  for (std::int64_t b = 0; b < ids.dim(0); ++b)
    for (std::int64_t i = 0; i < ids.dim(1); ++i) {
      std::int32_t const id = ids.at(b, i);
      if (id >= 0 && id < max_segments) ++out.at(b, id);
    }
  return out;
}

/// Per row: more than one distinct non-negative id (the per-row question is_multi_sequence does not ask, S7).
[[nodiscard]] inline BoolTensor has_multiple_sequences(IntTensor const& ids) {
  detail::require_rank(ids.shape(), 2, "has_multiple_sequences: segment_ids");
  BoolTensor out(Shape{ids.dim(0)});  // [batch]
  for (std::int64_t b = 0; b < ids.dim(0); ++b) {
    std::int32_t first = -1;
    for (std::int64_t i = 0; i < ids.dim(1); ++i) {
      std::int32_t const id = ids.at(b, i);
      if (id < 0) continue;
      if (first < 0) {
        first = id;
      } else if (id != first) {
        out[static_cast<std::size_t>(b)] = 1;
        break;
      }
    }
  }
  return out;
}

/// How query index i lines up with key index j when Q != K.
enum class Align {
  top_left,      // upstream: query i is at kv position i
  bottom_right,  // FlashAttention / decode: query i is at kv position i + (K - Q)
};

/// apply_causal with an explicit alignment: bottom_right passes offset = K - Q.
[[nodiscard]] inline MaskInfo apply_causal_aligned(MaskInfo const& m, Align align, std::int64_t extra_offset = 0) {
  std::int64_t off = extra_offset;
  if (align == Align::bottom_right) {
    auto const q = m.q_len(), k = m.kv_len();
    if (!q || !k) piecrust::detail::fail<InvalidState>("apply_causal_aligned: q_len / kv_len are unknown");
    off += *k - *q;
  }
  return apply_causal(m, BatchInts(off));
}

/// The sliding-window modes, typed: unknown strings are rejected instead of meaning "default" (S9).
enum class WindowMode { standard, decode, prefill };

[[nodiscard]] inline WindowMode parse_window_mode(std::string_view s) {
  if (s == "default") return WindowMode::standard;
  if (s == "decode") return WindowMode::decode;
  if (s == "prefill") return WindowMode::prefill;
  piecrust::detail::fail<InvalidArgument>("window mode = '", s, "' is not one of 'default', 'decode', 'prefill'");
}

/// apply_sliding_window with a typed mode and explicit alignment (bottom_right adds K - Q to offset).
[[nodiscard]] inline MaskInfo apply_sliding_window_aligned(MaskInfo const& m, SlidingWindow const& window, Align align,
                                                           WindowMode mode = WindowMode::standard,
                                                           std::optional<BatchInts> index = std::nullopt) {
  std::int64_t off = 0;
  if (align == Align::bottom_right) {
    auto const q = m.q_len(), k = m.kv_len();
    if (!q || !k) piecrust::detail::fail<InvalidState>("apply_sliding_window_aligned: q_len / kv_len are unknown");
    off = *k - *q;
  }
  SlidingWindowOptions o;
  o.offset = BatchInts(off);
  if (mode == WindowMode::decode) o.mode = "decode";
  if (mode == WindowMode::prefill) o.mode = "prefill";
  o.index = std::move(index);
  return apply_sliding_window(m, window, o);
}

/// Segment recovery that checks structure: returns q / kv ids with matched numbering such that
/// segment_ids_to_mask(q, kv) reproduces the mask exactly, or throws InvalidArgument naming the first
/// batch row whose mask is not block-structured (e.g. causal, or a permuted block layout).
/// Accepts (Q,K), (B,Q,K) or (B,H,Q,K) with identical heads. O(B * (Q*K/64 + G*K)) expected.
[[nodiscard]] inline QkvPair<IntTensor> recover_segments(Array const& mask) {
  BoolTensor m = mask.to_bool();
  if (m.rank() == 2) m = m.reshaped(Shape{1, 1, m.dim(0), m.dim(1)});
  if (m.rank() == 3) m = m.reshaped(Shape{m.dim(0), 1, m.dim(1), m.dim(2)});
  if (m.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>("recover_segments: mask must be 2D, 3D or 4D, got shape ", shape_repr(mask.shape()));
  }
  std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
  std::size_t const qk = static_cast<std::size_t>(q * k);
  IntTensor qo(Shape{b, q}, -1), ko(Shape{b, k}, -1);  // [batch][q_len], [batch][kv_len]
  for (std::int64_t bb = 0; bb < b; ++bb) {
    std::uint8_t const* base = m.data().data() + static_cast<std::size_t>(bb * h) * qk;
    for (std::int64_t hh = 1; hh < h; ++hh) {
      if (!std::equal(base, base + qk, base + static_cast<std::size_t>(hh) * qk)) {
        piecrust::detail::fail<InvalidArgument>("recover_segments: batch ", bb, " head ", hh, " differs from head 0");
      }
    }
    auto const rows = detail::group_identical(base, static_cast<std::size_t>(q), static_cast<std::size_t>(k),
                                              static_cast<std::size_t>(k), 1);
    auto const cols = detail::group_identical(base, static_cast<std::size_t>(k), static_cast<std::size_t>(q), 1,
                                              static_cast<std::size_t>(k));
    std::int32_t const n_col_groups = cols.empty() ? 0 : *std::max_element(cols.begin(), cols.end()) + 1;
    std::vector<std::int32_t> col_to_seg(static_cast<std::size_t>(std::max(n_col_groups, 0)), -1);  // [col groups]
    std::vector<std::int64_t> checked_group;  // row groups already verified
    std::int32_t next = 0;
    for (std::int64_t i = 0; i < q; ++i) {
      std::int32_t const g = rows[static_cast<std::size_t>(i)];
      if (g < 0) continue;
      if (static_cast<std::size_t>(g) < checked_group.size() && checked_group[static_cast<std::size_t>(g)] >= 0) {
        qo.at(bb, i) = static_cast<std::int32_t>(checked_group[static_cast<std::size_t>(g)]);
        continue;
      }
      std::uint8_t const* row = base + static_cast<std::size_t>(i * k);
      std::int64_t const first = std::find(row, row + k, std::uint8_t{1}) - row;
      std::int32_t const cg = cols[static_cast<std::size_t>(first)];
      for (std::int64_t j = 0; j < k; ++j) {
        if ((row[j] != 0) != (cols[static_cast<std::size_t>(j)] == cg)) {
          piecrust::detail::fail<InvalidArgument>("recover_segments: batch ", bb, " is not block-structured: query ", i,
                                                  " and key ", j, " break the block of key ", first);
        }
      }
      if (col_to_seg[static_cast<std::size_t>(cg)] >= 0) {
        piecrust::detail::fail<InvalidArgument>("recover_segments: batch ", bb, " is not block-structured: query ", i,
                                                " repeats another query group's keys");
      }
      col_to_seg[static_cast<std::size_t>(cg)] = next;
      if (checked_group.size() <= static_cast<std::size_t>(g)) checked_group.resize(static_cast<std::size_t>(g) + 1, -1);
      checked_group[static_cast<std::size_t>(g)] = next;
      qo.at(bb, i) = next++;
    }
    for (std::int64_t j = 0; j < k; ++j) {
      std::int32_t const cg = cols[static_cast<std::size_t>(j)];
      if (cg >= 0) ko.at(bb, j) = col_to_seg[static_cast<std::size_t>(cg)];
    }
  }
  return {std::move(qo), std::move(ko)};
}

}  // namespace piecrust::maskinfo
