#pragma once
// Naive double-precision reference of paged attention and merge_states: for each (token, head), the
// list of visible positions is computed position by position from the full (untrimmed) page table.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "piecrust/core/attention_mask.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/paged_kv.hpp"

namespace piecrust::reference {

struct AttentionResult {
  std::vector<double> out;  // [tokens][qo_heads][head_dim]
  std::vector<double> lse;  // [tokens][qo_heads] natural log; -inf when nothing is visible
};

/// masks empty: causal by position (token i of a request sees [0, kv_len - qo_len + i]).
template <class T>
AttentionResult paged_attention(std::span<float const> q, std::size_t qo_heads, PagedKv<T const> kv,
                                PagedBatch const& batch, double sm_scale, double soft_cap,
                                std::span<AttentionMask const> masks = {}) {
  std::size_t const hd = kv.head_dim;
  std::size_t const tokens = q.size() / (qo_heads * hd);
  std::size_t const group = qo_heads / kv.num_kv_heads;
  AttentionResult res{std::vector<double>(q.size(), 0.0), std::vector<double>(tokens * qo_heads)};
  for (std::size_t b = 0; b < batch.batch_size(); ++b) {
    std::size_t const kv_len = batch.kv_len(b, kv.page_size);
    for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) {
      std::size_t const i = t - batch.qo_indptr[b];
      std::vector<std::size_t> visible;
      for (std::size_t p = 0; p < kv_len; ++p) {
        bool const ok = masks.empty() ? p + batch.qo_len(b) <= kv_len + i : masks[t].attends(p);
        if (ok) visible.push_back(p);
      }
      for (std::size_t h = 0; h < qo_heads; ++h) {
        std::size_t const kh = h / group;
        std::vector<double> logits;
        for (std::size_t p : visible) {
          std::size_t const page = batch.kv_indices[batch.kv_indptr[b] + p / kv.page_size];
          T const* k = kv.at(page, 0, p % kv.page_size, kh);
          double s = 0;
          for (std::size_t d = 0; d < hd; ++d) s += double{q[(t * qo_heads + h) * hd + d]} * to_float(k[d]);
          s *= sm_scale;
          if (soft_cap > 0) s = soft_cap * std::tanh(s / soft_cap);
          logits.push_back(s);
        }
        if (visible.empty()) {
          res.lse[t * qo_heads + h] = -std::numeric_limits<double>::infinity();
          continue;
        }
        double mx = -std::numeric_limits<double>::infinity();
        for (double s : logits) mx = std::max(mx, s);
        double sum = 0;
        for (double s : logits) sum += std::exp(s - mx);
        for (std::size_t j = 0; j < visible.size(); ++j) {
          std::size_t const p = visible[j];
          std::size_t const page = batch.kv_indices[batch.kv_indptr[b] + p / kv.page_size];
          T const* v = kv.at(page, 1, p % kv.page_size, kh);
          double const w = std::exp(logits[j] - mx) / sum;
          for (std::size_t d = 0; d < hd; ++d) res.out[(t * qo_heads + h) * hd + d] += w * to_float(v[d]);
        }
        res.lse[t * qo_heads + h] = mx + std::log(sum);
      }
    }
  }
  return res;
}

}  // namespace piecrust::reference
