#pragma once
// TilePlan: the host-side schedule of one paged_attention call on a GPU. Plain host C++ (no device
// code), so it is built and checked by g++ as well as by nvcc.
//
// What it holds, and why:
//  * the effective page list of each request (page-trim applied: only kept pages, in kept order), so a
//    kernel maps a position p of the rows' coordinates to page pages[p / page_size], slot p % page_size;
//  * per (query tile, KV tile of kv_tile = 64 positions) a classification computed from the
//    AttentionMask rows: all-masked tiles are not listed at all (never loaded: the point of issue 7),
//    all-attend tiles carry no per-element mask, partial tiles carry one 64-bit word per query token
//    (device polarity: bit set = attend, the inverse of AttentionMask's 0 = attend);
//  * causal requests (no rows) carry no list: the kernel derives the tile range and the diagonal from
//    positions (token i of a request sees [0, kv_len - qo_len + i]), as the host implementation does;
//  * the work items: one per (query tile, chunk of its KV tiles); a query tile is split over several
//    chunks (split-KV, merged afterwards) only when the batch alone cannot fill the GPU. The chunking
//    follows FlashInfer's decode planner (scheduler.cuh: split so the grid covers the SMs a few times);
//    here the chunk is ceil(total tiles / (waves * capacity)), at least min_chunk_tiles, made even.
//
// Requests with qo_len == 1 get decode items (one token, CUDA-core kernel); longer ones get prefill
// items (tokens_per_qtile tokens packed with their GQA group into one tensor-core tile). With
// tokens_per_qtile == 0 every token becomes a decode item (the portable path HIP takes).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "piecrust/core/attention_mask.hpp"
#include "piecrust/core/brle.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/core/trim_plan.hpp"
#include "piecrust/kernels/attention_rows.hpp"
#include "piecrust/kernels/paged_attention.hpp"

namespace piecrust::cuda::attention {

/// KV positions per tile: the mask granularity (one 64-bit word per query token) and the prefill
/// kernel's KV block (64 is FlashAttention-2's kBlockN for head_dim 128 on sm80+).
inline constexpr std::uint32_t kv_tile = 64;
/// Entry::bits value of an all-attend tile.
inline constexpr std::uint32_t full_tile = 0xffffffffu;

/// One request as the kernels see it (16 bytes).
struct RequestInfo {
  std::uint32_t page_begin;  // first index into TilePlan::pages
  std::uint32_t kv_len;      // positions in the rows' coordinates (kept positions when trimmed)
  std::uint32_t qo_begin;    // first token (qo_indptr[b])
  std::uint32_t qo_len;
};

/// One listed KV tile of a query tile (8 bytes).
struct Entry {
  std::uint32_t tile;  // KV tile index: positions [tile * kv_tile, tile * kv_tile + kv_tile)
  std::uint32_t bits;  // full_tile, or the index of the tile's first word (one word per token of the q-tile)
};

/// One CTA's worth of work per KV head (32 bytes).
struct WorkItem {
  std::uint32_t request;
  std::uint32_t token_begin;  // global index of the q-tile's first token
  std::uint32_t token_count;
  std::uint32_t listed;       // 1: [begin, end) indexes entries; 0: KV tiles, causal by position
  std::uint32_t begin;
  std::uint32_t end;
  std::uint32_t split;        // chunk index inside the q-tile
  std::uint32_t num_splits;   // 1: the item writes out / lse itself; > 1: a partial state slot
};

/// What shapes the plan: the pool's page size, the GPU's capacity, the prefill tile.
struct PlanShape {
  std::size_t page_size = 16;
  std::size_t tokens_per_qtile = 16;   // prefill tokens per q-tile (rows = tokens * group); 0 = decode items only
  std::size_t decode_ctas_per_item = 1;   // CTAs launched per decode item (KV heads x head blocks)
  std::size_t prefill_ctas_per_item = 1;  // CTAs per prefill item (KV heads)
  std::size_t decode_capacity = 1;     // resident decode CTAs on the whole GPU (SMs x occupancy)
  std::size_t prefill_capacity = 1;
  std::size_t waves = 4;               // split until the grid covers the capacity this many times
  std::size_t min_chunk_tiles = 4;     // never split finer than 256 positions (merge cost)
};

struct TilePlan {
  std::vector<RequestInfo> requests;     // [batch]
  std::vector<std::uint32_t> pages;      // [sum of kept pages] physical page ids
  std::vector<Entry> entries;            // [listed tiles]
  std::vector<std::uint64_t> words;      // [partial tiles x tokens per q-tile] bit j: position tile*64+j, 1 = attend
  std::vector<WorkItem> decode_items;    // [decode work items]
  std::vector<WorkItem> prefill_items;   // [prefill work items]
  std::vector<std::uint32_t> part_offset;  // [tokens + 1] partial-state slots of each token (0 when unsplit)

  [[nodiscard]] std::uint32_t num_partial_slots() const { return part_offset.empty() ? 0 : part_offset.back(); }
  /// Tiles visited over all items (for tests and benchmarks: how much page-trim / tile skipping saved).
  [[nodiscard]] std::size_t visited_tiles() const {
    std::size_t n = 0;
    for (auto const* list : {&decode_items, &prefill_items}) {
      for (WorkItem const& w : *list) n += w.end - w.begin;
    }
    return n;
  }
};

namespace detail {

/// Bits [lo, hi) of a 64-bit word, 0 <= lo <= hi <= 64.
constexpr std::uint64_t bit_range(std::uint32_t lo, std::uint32_t hi) noexcept {
  std::uint64_t const width = hi - lo;
  return (width >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << width) - 1)) << lo;
}

struct QTile {
  std::uint32_t request, token_begin, token_count, listed, begin, end;
};

/// Appends the entries (and words) of one q-tile whose rows are rows[0 .. count): tiles with no
/// attended cell are left out, tiles whose every cell (row x position < kv_len) is attended are full.
/// O(runs + KV tiles) for the classification (difference array, as block_sparse_summary), then
/// O(tiles a run touches) for the words of partial tiles.
inline void list_tiles(std::span<AttentionMask const* const> rows, std::uint32_t kv_len, TilePlan& plan,
                       std::vector<std::int64_t>& counts, std::vector<std::int64_t>& whole,
                       std::vector<std::uint32_t>& slot_of) {
  std::size_t const nkt = (std::size_t{kv_len} + kv_tile - 1) / kv_tile;
  counts.assign(nkt, 0);
  whole.assign(nkt + 1, 0);
  for (AttentionMask const* row : rows) {
    for (Brle::Run const run : row->bits()) {
      if (run.bit || run.length == 0) continue;  // masked run
      std::size_t const a = run.begin;
      std::size_t const e = std::min<std::size_t>(run.end(), kv_len);
      if (a >= e) break;
      std::size_t const fa = a / kv_tile, la = (e - 1) / kv_tile;
      if (fa == la) {
        counts[fa] += static_cast<std::int64_t>(e - a);
        continue;
      }
      counts[fa] += static_cast<std::int64_t>((fa + 1) * kv_tile - a);
      counts[la] += static_cast<std::int64_t>(e - la * kv_tile);
      ++whole[fa + 1];
      --whole[la];
    }
  }
  std::int64_t running = 0;
  std::size_t const first_entry = plan.entries.size();
  slot_of.assign(nkt, full_tile);
  for (std::size_t kt = 0; kt < nkt; ++kt) {
    running += whole[kt];
    std::int64_t const c = counts[kt] + running * kv_tile;
    if (c == 0) continue;  // every row masks the whole tile: skipped, never loaded
    std::int64_t const cols = std::min<std::int64_t>(kv_tile, static_cast<std::int64_t>(kv_len) - static_cast<std::int64_t>(kt * kv_tile));
    std::uint32_t bits = full_tile;
    if (c != cols * static_cast<std::int64_t>(rows.size())) {
      bits = static_cast<std::uint32_t>(plan.words.size());
      plan.words.resize(plan.words.size() + rows.size(), 0);
      slot_of[kt] = bits;
    }
    plan.entries.push_back({static_cast<std::uint32_t>(kt), bits});
  }
  if (plan.entries.size() == first_entry) return;
  for (std::size_t j = 0; j < rows.size(); ++j) {
    for (Brle::Run const run : rows[j]->bits()) {
      if (run.bit || run.length == 0) continue;
      std::size_t const a = run.begin;
      std::size_t const e = std::min<std::size_t>(run.end(), kv_len);
      if (a >= e) break;
      for (std::size_t kt = a / kv_tile; kt <= (e - 1) / kv_tile; ++kt) {
        if (slot_of[kt] == full_tile) continue;
        std::size_t const t0 = kt * kv_tile;
        std::uint32_t const lo = static_cast<std::uint32_t>(std::max(a, t0) - t0);
        std::uint32_t const hi = static_cast<std::uint32_t>(std::min(e, t0 + kv_tile) - t0);
        plan.words[slot_of[kt] + j] |= bit_range(lo, hi);
      }
    }
  }
}

/// Turns q-tiles into work items, splitting long ones when the q-tiles alone do not fill the GPU.
inline void split_items(std::vector<QTile> const& qtiles, std::size_t ctas_per_item, std::size_t capacity,
                        PlanShape const& shape, std::vector<WorkItem>& items, std::vector<std::uint32_t>& splits_of_token) {
  std::size_t total = 0;
  for (QTile const& qt : qtiles) total += qt.end - qt.begin;
  std::size_t const target = std::max<std::size_t>(1, shape.waves * capacity);
  std::size_t chunk = std::numeric_limits<std::size_t>::max();
  if (qtiles.size() * ctas_per_item < target && total > 0) {
    std::size_t const want_items = std::max<std::size_t>(1, target / std::max<std::size_t>(1, ctas_per_item));
    chunk = std::max<std::size_t>(shape.min_chunk_tiles, (total + want_items - 1) / want_items);
  }
  for (QTile const& qt : qtiles) {
    std::size_t const n = qt.end - qt.begin;
    std::size_t const splits = n <= chunk ? 1 : (n + chunk - 1) / chunk;
    std::size_t const per = splits == 1 ? n : (n + splits - 1) / splits;
    std::size_t made = 0;
    for (std::size_t s = 0; s == 0 || s * per < n; ++s) {
      std::uint32_t const b = qt.begin + static_cast<std::uint32_t>(s * per);
      std::uint32_t const e = qt.begin + static_cast<std::uint32_t>(std::min(n, (s + 1) * per));
      items.push_back({qt.request, qt.token_begin, qt.token_count, qt.listed, b, e, static_cast<std::uint32_t>(s), 0});
      ++made;
    }
    for (std::size_t k = items.size() - made; k < items.size(); ++k) items[k].num_splits = static_cast<std::uint32_t>(made);
    if (made > 1) {
      for (std::uint32_t t = 0; t < qt.token_count; ++t) splits_of_token[qt.token_begin + t] = static_cast<std::uint32_t>(made);
    }
  }
}

}  // namespace detail

/// Builds the plan. The batch and selection must already have passed validate_paged_attention.
inline TilePlan build_tile_plan(PagedBatch const& batch, AttentionSelection const& sel, PlanShape const& shape) {
  TilePlan plan;
  std::size_t const ps = shape.page_size;
  std::size_t const b_count = batch.batch_size();
  std::size_t const tokens = b_count == 0 ? 0 : batch.qo_indptr[b_count];
  if (tokens > std::numeric_limits<std::uint32_t>::max() / 2) {
    piecrust::detail::fail<Unsupported>("paged_attention (GPU): tokens = ", tokens, " exceeds the 32-bit plan indices");
  }
  plan.requests.reserve(b_count);
  std::vector<detail::QTile> decode_tiles, prefill_tiles;  // [q-tiles]
  std::vector<std::int64_t> counts, whole;                 // [KV tiles], [KV tiles + 1]
  std::vector<std::uint32_t> slot_of;                      // [KV tiles]
  std::vector<AttentionMask const*> rows;                  // [tokens of one q-tile]
  for (std::size_t b = 0; b < b_count; ++b) {
    std::uint32_t const* logical = batch.kv_indices.data() + batch.kv_indptr[b];
    RequestKv const rk = request_kv(batch, sel, b, ps);  // kept pages only when trimmed
    RequestInfo info{static_cast<std::uint32_t>(plan.pages.size()), static_cast<std::uint32_t>(rk.kv_len),
                     batch.qo_indptr[b], static_cast<std::uint32_t>(batch.qo_len(b))};
    for (std::size_t p = 0; p < rk.num_pages(ps); ++p) plan.pages.push_back(logical[rk.logical_page(p)]);
    plan.requests.push_back(info);
    // The q-tile rows (the request's rows are consecutive), or none for causal by position.
    AttentionMask const* row0 = info.qo_len == 0 ? nullptr : attention_row(sel, b, info.qo_begin, 0);
    bool const decode = info.qo_len == 1 || shape.tokens_per_qtile == 0;
    std::uint32_t const per = decode ? 1u : static_cast<std::uint32_t>(shape.tokens_per_qtile);
    std::size_t const nkt = (std::size_t{info.kv_len} + kv_tile - 1) / kv_tile;
    for (std::uint32_t i0 = 0; i0 < info.qo_len; i0 += per) {
      std::uint32_t const n = std::min(per, info.qo_len - i0);
      detail::QTile qt{static_cast<std::uint32_t>(b), info.qo_begin + i0, n, 0, 0, 0};
      if (row0 == nullptr) {
        // Token i sees [0, kv_len - qo_len + i]: the q-tile's last token bounds the tile range.
        std::size_t const last_visible = std::size_t{info.kv_len} - info.qo_len + i0 + n - 1;
        qt.end = static_cast<std::uint32_t>(std::min(nkt, last_visible / kv_tile + 1));
      } else {
        rows.clear();
        for (std::uint32_t j = 0; j < n; ++j) rows.push_back(row0 + i0 + j);
        qt.listed = 1;
        qt.begin = static_cast<std::uint32_t>(plan.entries.size());
        detail::list_tiles(rows, info.kv_len, plan, counts, whole, slot_of);
        qt.end = static_cast<std::uint32_t>(plan.entries.size());
      }
      (decode ? decode_tiles : prefill_tiles).push_back(qt);
    }
  }
  if (plan.entries.size() > std::numeric_limits<std::uint32_t>::max() / 2 ||
      plan.words.size() > std::numeric_limits<std::uint32_t>::max() / 2) {
    piecrust::detail::fail<Unsupported>("paged_attention (GPU): ", plan.entries.size(), " mask tiles exceed the 32-bit plan indices");
  }
  std::vector<std::uint32_t> splits_of_token(tokens, 0);  // [tokens]
  detail::split_items(decode_tiles, shape.decode_ctas_per_item, shape.decode_capacity, shape, plan.decode_items, splits_of_token);
  detail::split_items(prefill_tiles, shape.prefill_ctas_per_item, shape.prefill_capacity, shape, plan.prefill_items,
                      splits_of_token);
  plan.part_offset.assign(tokens + 1, 0);
  for (std::size_t t = 0; t < tokens; ++t) plan.part_offset[t + 1] = plan.part_offset[t] + splits_of_token[t];
  return plan;
}

}  // namespace piecrust::cuda::attention
