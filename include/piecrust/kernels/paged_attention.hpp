#pragma once
// paged_attention: attention of a ragged batch of queries over a paged KV cache, with per-token
// attention masks, page-trim, GQA, softmax scale and logits soft-cap; returns output and log-sum-exp.
// Layout and batch description follow FlashInfer's BatchPrefillWithPagedKVCache (qo_indptr, kv_indptr,
// kv_indices, kv_last_page_len); soft-cap as in Gemma 2 / FlashInfer (cap * tanh(s / cap)).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "piecrust/core/attention_mask.hpp"
#include "piecrust/core/trim_plan.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/detail/dispatch.hpp"
#include "piecrust/kernels/paged_kv.hpp"

namespace piecrust {
namespace ops {
struct PagedAttention {};
}  // namespace ops

/// A ragged batch over a paged KV cache, FlashInfer's layout. Request b owns query tokens
/// [qo_indptr[b], qo_indptr[b+1]) and logical pages kv_indices[kv_indptr[b] .. kv_indptr[b+1]); its
/// last page holds kv_last_page_len[b] tokens, so its KV length is
/// (num_pages - 1) * page_size + kv_last_page_len[b] (0 with no pages).
struct PagedBatch {
  std::span<std::uint32_t const> qo_indptr;         // [batch + 1]
  std::span<std::uint32_t const> kv_indptr;         // [batch + 1]
  std::span<std::uint32_t const> kv_indices;        // [kv_indptr[batch]] physical page ids
  std::span<std::uint32_t const> kv_last_page_len;  // [batch]

  [[nodiscard]] std::size_t batch_size() const noexcept { return kv_last_page_len.size(); }
  [[nodiscard]] std::size_t num_pages(std::size_t b) const noexcept { return kv_indptr[b + 1] - kv_indptr[b]; }
  [[nodiscard]] std::size_t qo_len(std::size_t b) const noexcept { return qo_indptr[b + 1] - qo_indptr[b]; }
  [[nodiscard]] std::size_t kv_len(std::size_t b, std::size_t page_size) const noexcept {
    std::size_t const n = num_pages(b);
    return n == 0 ? 0 : (n - 1) * page_size + kv_last_page_len[b];
  }
};

struct PagedAttentionParams {
  float sm_scale = 0.0f;         // logits = q.k * sm_scale; 0 = 1 / sqrt(head_dim) (Vaswani et al. 2017)
  float logits_soft_cap = 0.0f;  // > 0: logits = cap * tanh(logits / cap) (Gemma 2); 0 = off
};

/// Which KV positions each query token sees:
///  * masks empty and trims empty: causal by position, token i of a request with qo_len q and KV
///    length L sees positions [0, L - q + i] (its own K/V was appended at L - q + i);
///  * masks: one AttentionMask per query token (0 = attend), over the request's KV positions;
///  * trims: one TrimPlan per request (TrimPlan::compute over the request's rows); only kept_pages are
///    read and the plan's rows (over the kept positions) are used, so masks are then ignored. A plan
///    with no rows means causal by position.
struct AttentionSelection {
  std::span<AttentionMask const> masks;  // [tokens] or empty
  std::span<TrimPlan const> trims;       // [batch] or empty
};

namespace detail {
inline void validate_paged_attention(std::size_t tokens, std::size_t qo_heads, std::size_t head_dim,
                                     std::size_t num_kv_heads, std::size_t kv_head_dim, std::size_t num_pages_pool,
                                     std::size_t page_size, PagedBatch const& batch, AttentionSelection const& sel) {
  constexpr std::string_view op = "paged_attention";
  check_extent(op, "q.extent(2) (head_dim)", head_dim, kv_head_dim);
  if (qo_heads == 0 || qo_heads % num_kv_heads != 0) {
    fail<InvalidArgument>(op, ": num_qo_heads = ", qo_heads, " is not a positive multiple of num_kv_heads = ", num_kv_heads);
  }
  std::size_t const b_count = batch.kv_last_page_len.size();
  check_extent(op, "qo_indptr.size()", batch.qo_indptr.size(), b_count + 1);
  check_extent(op, "kv_indptr.size()", batch.kv_indptr.size(), b_count + 1);
  if (batch.qo_indptr[0] != 0) fail<InvalidArgument>(op, ": qo_indptr[0] = ", batch.qo_indptr[0], ", expected 0");
  if (batch.kv_indptr[0] != 0) fail<InvalidArgument>(op, ": kv_indptr[0] = ", batch.kv_indptr[0], ", expected 0");
  check_extent(op, "qo_indptr[batch] (tokens)", batch.qo_indptr[b_count], tokens);
  if (batch.kv_indptr[b_count] > batch.kv_indices.size()) {
    fail<InvalidArgument>(op, ": kv_indptr[batch] = ", batch.kv_indptr[b_count], " > kv_indices.size() = ",
                          batch.kv_indices.size());
  }
  for (std::size_t b = 0; b < b_count; ++b) {
    if (batch.qo_indptr[b + 1] < batch.qo_indptr[b]) {
      fail<InvalidArgument>(op, ": qo_indptr[", b + 1, "] = ", batch.qo_indptr[b + 1], " < qo_indptr[", b, "]");
    }
    if (batch.kv_indptr[b + 1] < batch.kv_indptr[b]) {
      fail<InvalidArgument>(op, ": kv_indptr[", b + 1, "] = ", batch.kv_indptr[b + 1], " < kv_indptr[", b, "]");
    }
    std::size_t const np = batch.num_pages(b);
    std::uint32_t const last = batch.kv_last_page_len[b];
    if (np > 0 && (last == 0 || last > page_size)) {
      fail<InvalidArgument>(op, ": kv_last_page_len[", b, "] = ", last, " must be in [1, page_size = ", page_size, "]");
    }
    for (std::size_t p = batch.kv_indptr[b]; p < batch.kv_indptr[b + 1]; ++p) {
      if (batch.kv_indices[p] >= num_pages_pool) {
        fail<OutOfRange>(op, ": kv_indices[", p, "] = ", batch.kv_indices[p], " >= kv pool num_pages = ", num_pages_pool);
      }
    }
  }
  if (!sel.masks.empty()) check_extent(op, "masks.size() (tokens)", sel.masks.size(), tokens);
  if (!sel.trims.empty()) check_extent(op, "trims.size() (batch)", sel.trims.size(), b_count);
  for (std::size_t b = 0; b < b_count; ++b) {
    std::size_t const kv_len = batch.kv_len(b, page_size);
    std::size_t const qo_len = batch.qo_len(b);
    if (!sel.trims.empty()) {
      TrimPlan const& plan = sel.trims[b];
      std::size_t const np = batch.num_pages(b);
      if (plan.num_pages != np) {
        fail<InvalidArgument>(op, ": trims[", b, "].num_pages = ", plan.num_pages, " but request ", b, " has ", np, " pages");
      }
      std::size_t kept_len = 0;
      for (std::size_t i = 0; i < plan.kept_pages.size(); ++i) {
        std::uint32_t const p = plan.kept_pages[i];
        if (p >= np || (i > 0 && p <= plan.kept_pages[i - 1])) {
          fail<InvalidArgument>(op, ": trims[", b, "].kept_pages[", i, "] = ", p, " is not ascending inside [0, ", np, ")");
        }
        kept_len += (p + 1 == np) ? batch.kv_last_page_len[b] : page_size;
      }
      if (np > 0 && (plan.kept_pages.empty() || plan.kept_pages.back() + 1 != np)) {
        fail<InvalidArgument>(op, ": trims[", b, "] drops the last page of request ", b);
      }
      if (plan.rows.empty()) {
        if (plan.trims_anything()) fail<InvalidArgument>(op, ": trims[", b, "] drops pages but has no rows");
        if (kv_len < qo_len) fail<InvalidArgument>(op, ": request ", b, " has kv length ", kv_len, " < qo length ", qo_len, " (causal)");
      } else {
        check_extent(op, "trims[b].rows.size() (qo length)", plan.rows.size(), qo_len);
        for (std::size_t i = 0; i < qo_len; ++i) {
          if (plan.rows[i].size() > kept_len) {
            fail<InvalidArgument>(op, ": trims[", b, "].rows[", i, "].size() = ", plan.rows[i].size(),
                                  " > kept kv length ", kept_len);
          }
        }
      }
    } else if (!sel.masks.empty()) {
      for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) {
        if (sel.masks[t].size() > kv_len) {
          fail<InvalidArgument>(op, ": masks[", t, "].size() = ", sel.masks[t].size(), " > kv length ", kv_len,
                                " of request ", b);
        }
      }
    } else if (kv_len < qo_len) {
      fail<InvalidArgument>(op, ": request ", b, " has kv length ", kv_len, " < qo length ", qo_len,
                            " (causal attention needs the new tokens' K/V appended first)");
    }
  }
}
}  // namespace detail

/// Attention of every query token over the KV positions it sees (AttentionSelection), GQA with
/// num_qo_heads / num_kv_heads query heads per KV head (query head h reads KV head h / group).
///   q   [tokens][num_qo_heads][head_dim]
///   kv  [num_pages][2][page_size][num_kv_heads][head_dim], float or BFloat16, head_dim 64 or 128
///   out [tokens][num_qo_heads][head_dim]  softmax(logits) . V
///   lse [tokens][num_qo_heads]            natural-log log-sum-exp of the (scaled, capped) logits;
///                                         a token that sees nothing gets out = 0 and lse = -inf.
template <ExecutionSpace S, class T>
  requires KvElement<std::remove_const_t<T>>
void paged_attention(S const& space, ShapedView<float const, 3> q, PagedKv<T> kv, PagedBatch const& batch,
                     ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params = {},
                     AttentionSelection const& selection = {}) {
  static_assert(HasKernel<ops::PagedAttention, S>,
                "piecrust::paged_attention: this execution space does not implement op PagedAttention "
                "(no KernelImpl<ops::PagedAttention, Space> specialization is visible)");
  if constexpr (HasKernel<ops::PagedAttention, S>) {
    kv.validate("paged_attention");
    detail::validate_paged_attention(q.extent(0), q.extent(1), q.extent(2), kv.num_kv_heads, kv.head_dim, kv.num_pages,
                                     kv.page_size, batch, selection);
    detail::check_extent("paged_attention", "out.extent(0)", out.extent(0), q.extent(0));
    detail::check_extent("paged_attention", "out.extent(1)", out.extent(1), q.extent(1));
    detail::check_extent("paged_attention", "out.extent(2)", out.extent(2), q.extent(2));
    detail::check_extent("paged_attention", "lse.extent(0)", lse.extent(0), q.extent(0));
    detail::check_extent("paged_attention", "lse.extent(1)", lse.extent(1), q.extent(1));
    if (!(params.logits_soft_cap >= 0.0f)) {
      detail::fail<InvalidArgument>("paged_attention: logits_soft_cap = ", params.logits_soft_cap, " must be >= 0");
    }
    PagedAttentionParams p = params;
    if (p.sm_scale == 0.0f) p.sm_scale = 1.0f / std::sqrt(static_cast<float>(q.extent(2)));
    using E = std::remove_const_t<T>;
    PagedKv<E const> const ro{kv.data, kv.num_pages, kv.page_size, kv.num_kv_heads, kv.head_dim};
    detail::dispatch_head_dim("paged_attention", q.extent(2), [&](auto head_dim) {
      KernelImpl<ops::PagedAttention, S>::template run<decltype(head_dim)::value>(space, q, ro, batch, out, lse, p, selection);
    });
  }
}

}  // namespace piecrust
