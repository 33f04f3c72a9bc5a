#pragma once
// TrimPlan: which KV pages a forward pass of one request can leave out because its attention mask makes them
// dead, and the mask rows rewritten over the pages that stay.
//
// Rules (Pie's page-trim, DESIGN.md): a logical page is dropped only if
//   1. every row of the request masks all of its positions (positions past a row's end count as masked),
//   2. it lies before the first page that receives new K/V (page kv_before / page_size), and
//   3. it is not the last page.
// Positions (RoPE) are never changed by a trim; only the pages handed to attention shrink. With no rows
// (plain causal attention) nothing is dropped. When nothing is dropped the rows are returned unchanged.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust {

struct TrimPlan {
  std::vector<std::uint32_t> kept_pages;  // [num_kept] logical page indices, ascending
  std::vector<AttentionMask> rows;        // [n_input] rows over the kept pages' positions only
  std::size_t num_pages = 0;              // logical pages of the request after the pass

  [[nodiscard]] bool trims_anything() const { return kept_pages.size() < num_pages; }

  /// Computes the plan in O(runs + pages) per row. Throws InvalidArgument for page_size = 0, a row count that
  /// is neither 0 nor n_input, or a row longer than kv_before + n_input.
  static TrimPlan compute(std::uint32_t page_size, std::size_t kv_before, std::size_t n_input,
                          std::span<AttentionMask const> rows) {
    if (page_size == 0) detail::fail<InvalidArgument>("TrimPlan::compute: page_size = 0");
    if (!rows.empty() && rows.size() != n_input) {
      detail::fail<InvalidArgument>("TrimPlan::compute: rows.size() = ", rows.size(), " but n_input = ", n_input,
                                    " (give one row per input token, or none)");
    }
    std::size_t const kv_len = kv_before + n_input;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (rows[r].size() > kv_len) {
        detail::fail<InvalidArgument>("TrimPlan::compute: rows[", r, "].size() = ", rows[r].size(),
                                      " > kv length ", kv_len, " (kv_before ", kv_before, " + n_input ", n_input, ")");
      }
    }

    TrimPlan plan;
    plan.num_pages = (kv_len + page_size - 1) / page_size;
    std::size_t const first_write_page = kv_before / page_size;
    // Candidates are pages before the first written page and before the last page.
    std::size_t const candidates =
        rows.empty() ? 0 : std::min(first_write_page, plan.num_pages == 0 ? 0 : plan.num_pages - 1);

    // dead[p] counts the rows that mask all of page p, via a difference array per row.
    std::vector<std::int64_t> delta(candidates + 1, 0);  // [candidates + 1]
    for (AttentionMask const& row : rows) {
      auto mark = [&](std::size_t begin, std::size_t end) {  // masked positions [begin, end)
        std::size_t const first = (begin + page_size - 1) / page_size;
        std::size_t const last = std::min(end / page_size, candidates);  // pages [first, last) wholly inside
        if (first < last) {
          ++delta[first];
          --delta[last];
        }
      };
      std::size_t run_begin = 0;
      bool in_masked = false;
      for (Brle::Run const run : row.bits()) {
        if (run.length == 0) continue;
        if (run.bit && !in_masked) {
          run_begin = run.begin;
          in_masked = true;
        } else if (!run.bit && in_masked) {
          mark(run_begin, run.begin);
          in_masked = false;
        }
      }
      // Past the row's end everything is masked: the open masked stretch extends to the end of the KV.
      if (!in_masked) run_begin = row.size();
      mark(run_begin, kv_len);
    }

    std::int64_t dead = 0;
    for (std::size_t p = 0; p < plan.num_pages; ++p) {
      if (p < candidates) dead += delta[p];
      bool const drop = p < candidates && dead == static_cast<std::int64_t>(rows.size());
      if (!drop) plan.kept_pages.push_back(static_cast<std::uint32_t>(p));
    }

    if (!plan.trims_anything()) {
      plan.rows.assign(rows.begin(), rows.end());
      return plan;
    }
    plan.rows.reserve(rows.size());
    for (AttentionMask const& row : rows) {
      Brle rewritten;
      for (std::uint32_t const p : plan.kept_pages) {
        std::size_t const b = std::size_t{p} * page_size;
        std::size_t const e = std::min(b + page_size, row.size());
        if (b >= e) break;  // the row ends before this page: the rest is masked by the past-the-end rule
        rewritten.extend(row.bits().slice(b, e));
      }
      plan.rows.emplace_back(std::move(rewritten));
    }
    return plan;
  }
};

}  // namespace piecrust
