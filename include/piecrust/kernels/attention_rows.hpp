#pragma once
// Which KV positions a query token sees, resolved in one place for every attention implementation (the host
// kernels, llama.cpp's arithmetic, the GPU tile planner, Kokkos): AttentionSelection's rule (trims, else
// masks, else causal by position) turned into the request's visited pages and each token's attended runs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/core/attention_mask.hpp"
#include "piecrust/core/trim_plan.hpp"
#include "piecrust/kernels/paged_attention.hpp"

namespace piecrust {

/// The KV positions request b's rows index: all of its pages, or only the kept ones when its TrimPlan drops
/// some (rows then index the kept positions, in kept order).
struct RequestKv {
  std::span<std::uint32_t const> kept;  // logical pages visited, ascending; empty: every page, no trim
  std::size_t kv_len = 0;               // positions in the rows' coordinates

  [[nodiscard]] bool trimmed() const noexcept { return !kept.empty(); }
  /// Logical page of the rows' page index p (kept page p when trimmed).
  [[nodiscard]] std::size_t logical_page(std::size_t p) const noexcept { return trimmed() ? kept[p] : p; }
  /// Pages the rows' positions span.
  [[nodiscard]] std::size_t num_pages(std::size_t page_size) const noexcept {
    return (kv_len + page_size - 1) / page_size;
  }
};

[[nodiscard]] inline RequestKv request_kv(PagedBatch const& batch, AttentionSelection const& sel, std::size_t b,
                                          std::size_t page_size) {
  TrimPlan const* plan = sel.trims.empty() ? nullptr : &sel.trims[b];
  if (plan != nullptr && plan->trims_anything()) {
    return {plan->kept_pages, (plan->kept_pages.size() - 1) * page_size + batch.kv_last_page_len[b]};
  }
  return {{}, batch.kv_len(b, page_size)};
}

/// The mask row of token t (the i-th token of request b), or nullptr for causal by position.
[[nodiscard]] inline AttentionMask const* attention_row(AttentionSelection const& sel, std::size_t b, std::size_t t,
                                                        std::size_t i) noexcept {
  if (!sel.trims.empty()) return sel.trims[b].rows.empty() ? nullptr : &sel.trims[b].rows[i];
  return sel.masks.empty() ? nullptr : &sel.masks[t];
}

/// Attended positions [begin, end) of one token, in the rows' coordinates.
struct AttendedRun {
  std::size_t begin;
  std::size_t end;
};

/// The attended runs of the i-th token of request b (qo_len new tokens) over `kv` positions: the row's
/// 0-runs clipped to kv.kv_len, or [0, kv_len - qo_len + i] when causal.
inline void attended_runs(AttentionMask const* row, RequestKv const& kv, std::size_t qo_len, std::size_t i,
                          std::vector<AttendedRun>& out) {
  out.clear();
  if (row == nullptr) {
    out.push_back({0, kv.kv_len - qo_len + i + 1});
    return;
  }
  for (Brle::Run const run : row->bits()) {
    if (run.bit || run.length == 0) continue;
    std::size_t const e = std::min(run.end(), kv.kv_len);
    if (run.begin < e) out.push_back({run.begin, e});
    if (run.end() >= kv.kv_len) break;
  }
}

}  // namespace piecrust
