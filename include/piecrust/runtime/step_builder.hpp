#pragma once
// The step builder: turns the passes admitted to one engine step into one ragged model batch (FlashInfer's
// layout), with each pass's attention rows, the page-trim plans and the rows whose logits are read.
// Pure: it reads the passes and writes a StepBatch, nothing else (no page table, pool, KV or model), so it is
// tested on its own (tests/unit/test_step_builder.cpp). The scheduler admits passes first (reserves their
// pages, appends their tokens); the model then plans attention once per step from the batch.
//
//   std::vector<StepPass> passes = ...;            // one per admitted pass, in submission order
//   StepBatch batch = build_step(passes, page_size);  // masks are moved out of `passes`
//   for (auto const& r : batch.rejected) ...;          // passes left out, each with its own error
//   model.forward(kv, batch.forward_batch(), logits);
//
// A pass that cannot join the batch is left out of it rather than failing the step, so one program's bad
// pass never changes what the others compute.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/trim_plan.hpp>
#include <piecrust/kernels/paged_attention.hpp>
#include <piecrust/model/forward_batch.hpp>
#include <piecrust/model/token_type.hpp>
#include <piecrust/runtime/masked_slots.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <optional>
#include <span>
#include <vector>

namespace piecrust {

class LoraAdapter;

/// One admitted pass as the step builder sees it. Its tokens are already in its page table: `kv_pages` and
/// `last_page_len` describe the context's KV after the pass, whose new slots are kv_before .. kv_before + n - 1.
struct StepPass {
  std::span<std::uint32_t const> tokens;     // [n] tokens the pass appends (ids < vocab)
  std::span<std::uint32_t const> positions;  // [n] their RoPE positions
  std::size_t kv_before = 0;                 // KV slots of the context before the pass
  std::vector<std::uint32_t> kv_pages;       // [pages] the context's page ids after the pass
  std::vector<std::uint32_t> window_pages;   // [pages] their window pages (PagePool's window store), or empty
  std::size_t window_floor = 0;              // first KV slot the sliding-window layers see (PageTable::window_floor)
  std::uint32_t last_page_len = 0;           // valid slots of its last page
  std::size_t prefix = 0;                    // leading tokens that are not indexable (pending tokens fed first)
  std::vector<AttentionMask> masks;          // [n - prefix] explicit rows, or empty; moved into the batch
  MaskedSlots const* masked = nullptr;       // slots flagged by mask_token_range (used when masks is empty)
  std::vector<std::uint32_t> logit_indices;  // indexable-token indices (after `prefix`) whose logits are read, in order
  bool keep_last_logits = false;             // the logits of the last token are kept (Forward::keep_next_logits)
  LoraAdapter const* adapter = nullptr;      // of every token of the pass, or nullptr
};

/// The batch of one step. forward_batch() views it: keep the StepBatch alive while the model runs.
struct StepBatch {
  std::vector<TokenId> tokens;                // [num_tokens]
  std::vector<std::uint32_t> positions;       // [num_tokens]
  std::vector<std::uint32_t> qo_indptr{0};    // [batch + 1]
  std::vector<std::uint32_t> kv_indptr{0};    // [batch + 1]
  std::vector<std::uint32_t> kv_indices;      // [total pages]
  std::vector<std::uint32_t> last_page_len;   // [batch]
  std::vector<std::uint32_t> window_indices;  // [total pages] window pages when the passes have them, else empty
  std::vector<std::uint32_t> window_floor;    // [batch] when window_indices is not empty
  std::vector<TrimPlan> trims;                // [batch] when any pass has non-causal rows, else empty
  std::vector<std::uint32_t> logit_rows;      // [num_logits] token indices in the step
  std::vector<LoraAdapter const*> adapters;   // [batch] when any pass has an adapter, else empty
  std::vector<std::size_t> first_token;       // [batch] index of each pass's first token in the step
  std::vector<std::size_t> first_row;         // [batch] index of each pass's first logits row in the step
  std::vector<std::size_t> members;           // [batch] index in build_step's passes of each request
  // Rows 0 .. read_rows - 1 are read by samplers and probes, pass by pass; after them come the kept rows
  // (StepPass::keep_last_logits), which no sampler reads: kept_row[i] is pass i's, or no_row.
  static constexpr std::size_t no_row = static_cast<std::size_t>(-1);
  std::size_t read_rows = 0;
  std::vector<std::size_t> kept_row;          // [batch]

  /// A pass left out of the batch, with the error it made.
  struct Rejected {
    std::size_t pass = 0;  // index in build_step's passes
    std::exception_ptr error;
  };
  std::vector<Rejected> rejected;  // [left out] in pass order

  [[nodiscard]] std::size_t size() const noexcept { return last_page_len.size(); }

  /// The batch of request i by itself: what build_step makes of that pass alone (the engine retries a batch
  /// the model failed one pass at a time, so that the error stays with the pass that causes it).
  [[nodiscard]] StepBatch alone(std::size_t i) const {
    StepBatch a;
    std::size_t const t0 = qo_indptr[i], t1 = qo_indptr[i + 1];
    a.tokens.assign(tokens.begin() + static_cast<std::ptrdiff_t>(t0), tokens.begin() + static_cast<std::ptrdiff_t>(t1));
    a.positions.assign(positions.begin() + static_cast<std::ptrdiff_t>(t0), positions.begin() + static_cast<std::ptrdiff_t>(t1));
    a.qo_indptr.push_back(static_cast<std::uint32_t>(t1 - t0));
    a.kv_indices.assign(kv_indices.begin() + kv_indptr[i], kv_indices.begin() + kv_indptr[i + 1]);
    a.kv_indptr.push_back(static_cast<std::uint32_t>(a.kv_indices.size()));
    a.last_page_len.push_back(last_page_len[i]);
    if (!window_indices.empty()) {
      a.window_indices.assign(window_indices.begin() + kv_indptr[i], window_indices.begin() + kv_indptr[i + 1]);
      a.window_floor.push_back(window_floor[i]);
    }
    if (!trims.empty() && !trims[i].rows.empty()) a.trims.push_back(trims[i]);  // alone, a causal pass has no plan
    std::size_t const r1 = i + 1 < size() ? first_row[i + 1] : read_rows;
    for (std::size_t r = first_row[i]; r < r1; ++r) a.logit_rows.push_back(static_cast<std::uint32_t>(logit_rows[r] - t0));
    a.read_rows = a.logit_rows.size();
    a.kept_row.push_back(no_row);
    if (i < kept_row.size() && kept_row[i] != no_row) {
      a.kept_row.back() = a.logit_rows.size();
      a.logit_rows.push_back(static_cast<std::uint32_t>(logit_rows[kept_row[i]] - t0));
    }
    if (!adapters.empty() && adapters[i] != nullptr) a.adapters.push_back(adapters[i]);
    a.first_token.push_back(0);
    a.first_row.push_back(0);
    a.members.push_back(members[i]);
    return a;
  }

  [[nodiscard]] ForwardBatch forward_batch() const {
    ForwardBatch fb;
    fb.tokens = tokens;
    fb.positions = positions;
    fb.pages = PagedBatch{qo_indptr, kv_indptr, kv_indices, last_page_len};
    if (!window_indices.empty()) fb.window = WindowPages{window_indices, window_floor};
    if (!trims.empty()) fb.attention = AttentionSelection{{}, trims};
    fb.logit_rows = logit_rows;
    if (!adapters.empty()) fb.adapters = adapters;
    return fb;
  }
};

namespace detail {

/// Causal rows for `n` new tokens after `kv_before` slots that also skip every slot flagged in `masked`;
/// empty when none before kv_before is flagged (plain causal). O(n x masked ranges).
inline std::vector<AttentionMask> rows_skipping_masked(MaskedSlots const& masked, std::size_t kv_before, std::size_t n) {
  if (!masked.any_before(kv_before)) return {};
  Brle const history = masked.bits(kv_before);  // [kv_before] 1 = masked slot
  std::vector<AttentionMask> rows;              // [n]
  rows.reserve(n);
  for (std::size_t i = 0; i < n; ++i) rows.emplace_back(Brle(history).append(false, i + 1));
  return rows;
}

/// A pass's attention rows: its own rows after causal rows for the non-indexable prefix, or causal rows that
/// skip masked slots, or empty (plain causal).
inline std::vector<AttentionMask> pass_rows(StepPass& p) {
  if (p.masks.empty()) return p.masked != nullptr ? rows_skipping_masked(*p.masked, p.kv_before, p.tokens.size())
                                                  : std::vector<AttentionMask>{};
  std::vector<AttentionMask> rows = AttentionMask::causal_rows(p.kv_before, p.prefix);
  rows.insert(rows.end(), std::make_move_iterator(p.masks.begin()), std::make_move_iterator(p.masks.end()));
  p.masks.clear();
  return rows;
}

}  // namespace detail

/// The step's batch, passes in order; the passes' masks are moved out. A pass whose rows do not fit its tokens
/// (TrimPlan::compute's InvalidArgument) is left out and listed in `rejected` with that error; the batch of
/// the others is exactly the one they would make without it.
inline StepBatch build_step(std::span<StepPass> passes, std::uint32_t page_size) {
  std::vector<std::optional<TrimPlan>> plans(passes.size());  // [passes] for the passes with rows of their own
  StepBatch b;
  bool any_rows = false, any_adapter = false;
  for (std::size_t i = 0; i < passes.size(); ++i) {
    try {
      std::vector<AttentionMask> const rows = detail::pass_rows(passes[i]);  // [n or 0]
      if (!rows.empty()) plans[i] = TrimPlan::compute(page_size, passes[i].kv_before, passes[i].tokens.size(), rows);
    } catch (...) {
      b.rejected.push_back({i, std::current_exception()});
      continue;
    }
    b.members.push_back(i);
    any_rows = any_rows || plans[i].has_value();
    any_adapter = any_adapter || passes[i].adapter != nullptr;
  }
  for (std::size_t const i : b.members) {
    StepPass const& p = passes[i];
    b.first_token.push_back(b.tokens.size());
    b.first_row.push_back(b.logit_rows.size());
    for (std::uint32_t const j : p.logit_indices) {
      b.logit_rows.push_back(static_cast<std::uint32_t>(b.tokens.size() + p.prefix + j));
    }
    b.tokens.insert(b.tokens.end(), p.tokens.begin(), p.tokens.end());
    b.positions.insert(b.positions.end(), p.positions.begin(), p.positions.end());
    b.qo_indptr.push_back(static_cast<std::uint32_t>(b.tokens.size()));
    b.kv_indices.insert(b.kv_indices.end(), p.kv_pages.begin(), p.kv_pages.end());
    b.kv_indptr.push_back(static_cast<std::uint32_t>(b.kv_indices.size()));
    b.last_page_len.push_back(p.last_page_len);
    if (!p.window_pages.empty()) {
      b.window_indices.insert(b.window_indices.end(), p.window_pages.begin(), p.window_pages.end());
      b.window_floor.push_back(static_cast<std::uint32_t>(p.window_floor));
    }
    if (any_rows) b.trims.push_back(plans[i] ? std::move(*plans[i]) : TrimPlan::compute(page_size, p.kv_before, p.tokens.size(), {}));
    if (any_adapter) b.adapters.push_back(p.adapter);
  }
  b.read_rows = b.logit_rows.size();
  for (std::size_t k = 0; k < b.members.size(); ++k) {
    StepPass const& p = passes[b.members[k]];
    b.kept_row.push_back(StepBatch::no_row);
    if (p.keep_last_logits && !p.tokens.empty()) {
      b.kept_row.back() = b.logit_rows.size();
      b.logit_rows.push_back(static_cast<std::uint32_t>(b.first_token[k] + p.tokens.size() - 1));
    }
  }
  return b;
}

}  // namespace piecrust
