#pragma once
// The attention selection of a sliding-window layer (Gemma 3's local layers, Mistral): each request's rows
// (its own masks or trims, or causal) with every KV position before the token's window masked, expressed as
// TrimPlans, so that pages wholly before the windows of all of a request's new tokens are never read.
//
// Token i of a request that appends q tokens to kv_before cached ones sits at KV position p = kv_before + i
// and sees positions p - window + 1 .. p (llama.cpp's standard SWA: masked when p - pos >= window). The
// window is over KV positions, which are the token positions unless the program evicted or reordered KV.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/trim_plan.hpp>
#include <piecrust/kernels/paged_attention.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

namespace piecrust::detail {

/// A row of `plan` (over its kept pages' positions) back over the request's own KV positions: the pages
/// the plan dropped are masked.
inline AttentionMask untrimmed_row(TrimPlan const& plan, AttentionMask const& row, std::size_t page_size) {
  Brle out;
  for (std::size_t k = 0; k < plan.kept_pages.size(); ++k) {
    std::size_t const b = k * page_size;
    if (b >= row.size()) break;
    std::size_t const at = std::size_t{plan.kept_pages[k]} * page_size;
    if (at > out.size()) out.append(true, at - out.size());
    out.extend(row.bits().slice(b, std::min(b + page_size, row.size())));
  }
  return AttentionMask(std::move(out));
}

/// row with the positions before `cut` masked.
inline AttentionMask mask_before(AttentionMask const& row, std::size_t cut) {
  if (cut == 0) return row;
  std::size_t const n = row.size();
  Brle out;
  out.append(true, std::min(cut, n));
  if (n > cut) out.extend(row.bits().slice(cut, n));
  return AttentionMask(std::move(out));
}

/// One TrimPlan per request of `pages` for a layer that sees the last `window` KV positions, given the
/// step's own selection `user` (masks per token, trims per request, or neither for causal attention).
/// `floor` (empty, or [batch]): request b's layer sees no KV position before floor[b] (its window pages are
/// gone, PageTable::window_floor).
inline std::vector<TrimPlan> sliding_window_trims(std::size_t window, std::size_t page_size, PagedBatch const& pages,
                                                  AttentionSelection const& user,
                                                  std::span<std::uint32_t const> floor = {}) {
  std::vector<TrimPlan> out;  // [batch]
  std::size_t const batch = pages.batch_size();
  out.reserve(batch);
  std::vector<AttentionMask> rows;  // [q] of the request being planned
  for (std::size_t b = 0; b < batch; ++b) {
    std::size_t const q = pages.qo_len(b), kv_len = pages.kv_len(b, page_size), kv_before = kv_len - q;
    rows.clear();
    for (std::size_t i = 0; i < q; ++i) {
      std::size_t const p = kv_before + i;
      AttentionMask base;
      if (!user.trims.empty()) {
        TrimPlan const& plan = user.trims[b];
        base = plan.rows.empty() ? AttentionMask::causal(p + 1) : untrimmed_row(plan, plan.rows[i], page_size);
      } else if (!user.masks.empty()) {
        base = user.masks[pages.qo_indptr[b] + i];
      } else {
        base = AttentionMask::causal(p + 1);
      }
      std::size_t const cut = p + 1 > window ? p + 1 - window : 0;
      rows.push_back(mask_before(base, floor.empty() ? cut : std::max<std::size_t>(cut, floor[b])));
    }
    out.push_back(TrimPlan::compute(static_cast<std::uint32_t>(page_size), kv_before, q, rows));
  }
  return out;
}

}  // namespace piecrust::detail
