#pragma once
// AttentionMask: the attention row of one input token, in Pie's documented polarity
//   0 = attend, 1 = masked.
// Bit k says whether the token may attend to KV position k; the row's length is the number of KV positions
// the token can see, and every position at or past the row's end is masked.
//
// Coming from Pie: the seeds' sliding-window snippet `[evict_count, window_size]` is written in the opposite
// polarity (Pie's current code uses 1 = attend). In piecrust that row is `[0, evict_count, window_size]`,
// which AttentionMask::window(total, window) builds for you; rows copied from Pie's code go through
// AttentionMask::from_pie_code_runs.

#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace piecrust {

class AttentionMask {
 public:
  /// An empty row: the token attends to nothing.
  AttentionMask() = default;

  /// Wraps bits that already use 0 = attend, 1 = masked. Explicit: a raw Brle has no polarity.
  explicit AttentionMask(Brle bits) : bits_(std::move(bits)) {}

  /// A row that attends to all `visible` positions: a causal row for a token that sees `visible` KV slots.
  static AttentionMask causal(std::size_t visible) { return AttentionMask(Brle().append(false, visible)); }

  /// The causal rows of a pass: `n_new` tokens appended after `kv_before` cached ones; token i sees
  /// kv_before + i + 1 positions.
  static std::vector<AttentionMask> causal_rows(std::size_t kv_before, std::size_t n_new) {
    std::vector<AttentionMask> rows;  // [n_new]
    rows.reserve(n_new);
    for (std::size_t i = 0; i < n_new; ++i) rows.push_back(causal(kv_before + i + 1));
    return rows;
  }

  /// Attend to the last `window` of `total` positions; mask everything before. window >= total attends all.
  static AttentionMask window(std::size_t total, std::size_t window) {
    std::size_t const w = window < total ? window : total;
    return AttentionMask(Brle().append(true, total - w).append(false, w));
  }

  /// StreamingLLM's attention sink: attend to the first `sink` positions and the last `window`, mask the
  /// middle. Where sink + window >= total, every position is attended.
  static AttentionMask sink_window(std::size_t total, std::size_t sink, std::size_t window) {
    if (sink >= total || window >= total - sink) return causal(total);
    return AttentionMask(Brle().append(false, sink).append(true, total - sink - window).append(false, window));
  }

  /// Runs of alternating bits starting with an attend (0) run, in this polarity: [attend, masked, attend, ...].
  static AttentionMask from_runs(std::vector<Brle::run_type> runs) {
    return AttentionMask(Brle::from_runs(std::move(runs)));
  }

  /// A row copied from Pie's code, which writes 1 = attend (its docs, and piecrust, 0 = attend): runs of
  /// alternating bits starting with a masked run there. Pie's sliding window [evict_count, window_size] is
  /// window(evict_count + window_size, window_size) here, its sink [0, sink, middle, window] sink_window.
  static AttentionMask from_pie_code_runs(std::vector<Brle::run_type> runs) {
    runs.insert(runs.begin(), 0);  // this polarity starts with an attend run: an empty one
    return from_runs(std::move(runs));
  }

  /// Number of KV positions the row covers.
  [[nodiscard]] std::size_t size() const { return bits_.size(); }
  [[nodiscard]] Brle const& bits() const { return bits_; }

  /// True if the token must not attend to KV position `pos` (positions past the row's end are masked).
  [[nodiscard]] bool masked(std::size_t pos) const { return pos >= bits_.size() || bits_.bit(pos); }
  [[nodiscard]] bool attends(std::size_t pos) const { return !masked(pos); }

  /// Number of attended positions.
  [[nodiscard]] std::size_t attended_count() const { return bits_.count(false); }

  /// True if every position in [begin, end) is masked (positions past the row's end count as masked).
  [[nodiscard]] bool masks_all(std::size_t begin, std::size_t end) const {
    if (begin >= end) return true;
    if (begin >= bits_.size()) return true;
    std::size_t const inside_end = end < bits_.size() ? end : bits_.size();
    return bits_.is_range_all(begin, inside_end, true);
  }

  /// Equal if they mask the same positions over the longer of the two (past an end counts as masked).
  friend bool operator==(AttentionMask const& a, AttentionMask const& b) {
    Brle x = a.bits_;
    Brle y = b.bits_;
    if (x.size() < y.size()) x.append(true, y.size() - x.size());
    if (y.size() < x.size()) y.append(true, x.size() - y.size());
    return x == y;
  }

 private:
  Brle bits_;  // [size()] 0 = attend, 1 = masked
};

}  // namespace piecrust
