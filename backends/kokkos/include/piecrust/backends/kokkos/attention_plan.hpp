#pragma once
// The Kokkos attention plan (ops::PlanAttention, kernels/attention_plan.hpp): a step's page tables, trims
// and mask rows flattened once on the host into one array of u32 words and uploaded once to the space, so
// that every layer's paged_attention reads device-friendly runs instead of BRLE rows and TrimPlans.
//
// Which positions a token sees is resolved by kernels/attention_rows.hpp (trims, else masks, else causal),
// the same rule every other backend uses. The packed table:
//   tokens [tokens][3]  {first page word of its request, first run, end run}
//   pages  [sum over requests of the pages the rows index]  physical page ids (kept pages only when trimmed)
//   runs   [runs][2]    {begin, end} attended positions, in the rows' coordinates (kept positions when trimmed)

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/attention_plan.hpp"
#include "piecrust/kernels/attention_rows.hpp"

namespace piecrust {
namespace kokkos_detail {

/// The packed table on the host and where its sections start (in words).
struct AttentionTable {
  std::vector<std::uint32_t> words;  // [tokens * 3 | pages | runs * 2]
  std::size_t pages_at = 0;
  std::size_t runs_at = 0;
};

/// Flattens an already validated problem (plan_attention / paged_attention validate before any backend).
[[nodiscard]] inline AttentionTable flatten_attention(AttentionProblem const& p) {
  PagedBatch const& batch = p.batch;
  std::vector<std::uint32_t> info(p.tokens * 3, 0);  // [tokens][3]
  std::vector<std::uint32_t> pages;                   // [pages]
  std::vector<std::uint32_t> runs;                    // [runs][2]
  std::vector<AttendedRun> token_runs;
  constexpr std::size_t limit = std::numeric_limits<std::uint32_t>::max();
  auto word = [&](std::size_t v) {
    if (v > limit) detail::fail<Unsupported>("paged_attention (Kokkos): an index of the step (", v, ") does not fit 32 bits");
    return static_cast<std::uint32_t>(v);
  };
  for (std::size_t b = 0; b < batch.batch_size(); ++b) {
    RequestKv const kv = request_kv(batch, p.selection, b, p.page_size);
    std::size_t const page_base = pages.size();
    for (std::size_t i = 0; i < kv.num_pages(p.page_size); ++i) {
      pages.push_back(batch.kv_indices[batch.kv_indptr[b] + kv.logical_page(i)]);
    }
    std::size_t const qo_len = batch.qo_len(b);
    for (std::size_t i = 0; i < qo_len; ++i) {
      std::size_t const t = batch.qo_indptr[b] + i;
      attended_runs(attention_row(p.selection, b, t, i), kv, qo_len, i, token_runs);
      info[3 * t] = word(page_base);
      info[3 * t + 1] = word(runs.size() / 2);
      for (AttendedRun const& r : token_runs) {
        runs.push_back(word(r.begin));
        runs.push_back(word(r.end));
      }
      info[3 * t + 2] = word(runs.size() / 2);
    }
  }
  AttentionTable table;
  table.pages_at = info.size();
  table.runs_at = info.size() + pages.size();
  word(table.runs_at + runs.size());
  table.words = std::move(info);
  table.words.insert(table.words.end(), pages.begin(), pages.end());
  table.words.insert(table.words.end(), runs.begin(), runs.end());
  return table;
}

/// A step's plan in S::memory_space.
template <class S>
struct KokkosAttentionPlan {
  AttentionProblem problem;                      // shapes, and the host spans it was built from
  Owned1<std::uint32_t, S> table;                // [words] the packed table (see the header comment)
  std::size_t pages_at = 0;
  std::size_t runs_at = 0;
};

template <class S>
[[nodiscard]] KokkosAttentionPlan<S> make_attention_plan(S const& space, AttentionProblem const& problem) {
  AttentionTable const host = flatten_attention(problem);
  KokkosAttentionPlan<S> plan{problem, Owned1<std::uint32_t, S>(Kokkos::view_alloc(std::string("piecrust::attention_plan"),
                                                                                  Kokkos::WithoutInitializing),
                                                               host.words.size()),
                              host.pages_at, host.runs_at};
  Kokkos::deep_copy(space, plan.table, HostUnmanaged1<std::uint32_t const>(host.words.data(), host.words.size()));
  space.fence();  // `host` goes out of scope here
  return plan;
}

}  // namespace kokkos_detail

template <KokkosSpace S>
struct KernelImpl<ops::PlanAttention, S> {
  using plan_type = kokkos_detail::KokkosAttentionPlan<S>;
  static plan_type plan(S const& space, AttentionProblem const& problem) { return kokkos_detail::make_attention_plan(space, problem); }
};

}  // namespace piecrust
