#pragma once
// Host implementation of paged_attention: one work item per (query token, KV head); the item's GQA
// group of query heads shares every K/V row it loads. Online softmax over chunks of up to 64 slots
// (Milakov & Gimelshein 2018; FlashAttention, Dao et al. 2022), f32 throughout. Only the attended
// runs of each row are visited, so masked positions and dropped pages are never read.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/paged_attention.hpp"

namespace piecrust {

namespace host::detail {

/// Attended intervals [begin, end) of one row over `kv_len` positions.
struct Interval {
  std::size_t begin;
  std::size_t end;
};

inline void attended_intervals(AttentionMask const& row, std::size_t kv_len, std::vector<Interval>& out) {
  out.clear();
  for (Brle::Run const run : row.bits()) {
    if (run.bit || run.length == 0) continue;
    std::size_t const e = std::min(run.end(), kv_len);
    if (run.begin < e) out.push_back({run.begin, e});
    if (run.end() >= kv_len) break;
  }
}

}  // namespace host::detail

template <>
struct KernelImpl<ops::PagedAttention, Host> {
  static constexpr std::size_t chunk = 64;  // slots per online-softmax step

  template <std::size_t HeadDim, class T>
  static void run(Host const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, PagedBatch const& batch,
                  ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params,
                  AttentionSelection const& sel) {
    std::size_t const tokens = q.extent(0);
    std::size_t const qo_heads = q.extent(1);
    std::size_t const kv_heads = kv.num_kv_heads;
    std::size_t const group = qo_heads / kv_heads;
    std::size_t const ps = kv.page_size;
    std::vector<std::uint32_t> request_of(tokens);  // [tokens]
    for (std::size_t b = 0; b < batch.batch_size(); ++b) {
      for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) request_of[t] = static_cast<std::uint32_t>(b);
    }
    float const scale = params.sm_scale;
    float const cap = params.logits_soft_cap;

    space.parallel_for(tokens * kv_heads, [&](std::size_t begin, std::size_t end) {
      std::vector<host::detail::Interval> intervals;
      std::vector<float> acc(group * HeadDim);   // [group][HeadDim]
      std::vector<float> scores(group * chunk);  // [group][chunk]
      std::vector<float> m(group), l(group);     // [group]
      for (std::size_t item = begin; item < end; ++item) {
        std::size_t const t = item / kv_heads;
        std::size_t const h = item % kv_heads;
        std::size_t const r = request_of[t];
        std::size_t const i = t - batch.qo_indptr[r];
        std::size_t const qo_len = batch.qo_len(r);
        std::uint32_t const* pages = batch.kv_indices.data() + batch.kv_indptr[r];
        TrimPlan const* plan = sel.trims.empty() ? nullptr : &sel.trims[r];
        std::uint32_t const* kept = nullptr;
        std::size_t kv_len = batch.kv_len(r, ps);
        if (plan != nullptr && plan->trims_anything()) {
          kept = plan->kept_pages.data();
          kv_len = (plan->kept_pages.size() - 1) * ps + batch.kv_last_page_len[r];
        }
        // Rows: the plan's, else the masks, else causal by position.
        AttentionMask const* row = nullptr;
        if (plan != nullptr) {
          if (!plan->rows.empty()) row = &plan->rows[i];
        } else if (!sel.masks.empty()) {
          row = &sel.masks[t];
        }
        if (row != nullptr) {
          host::detail::attended_intervals(*row, kv_len, intervals);
        } else {
          intervals.assign(1, {0, kv_len - qo_len + i + 1});
        }

        float const* qg = q.data() + (t * qo_heads + h * group) * HeadDim;  // [group][HeadDim]
        std::fill(acc.begin(), acc.end(), 0.0f);
        std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
        std::fill(l.begin(), l.end(), 0.0f);
        for (host::detail::Interval const iv : intervals) {
          std::size_t pos = iv.begin;
          while (pos < iv.end) {
            std::size_t const logical = pos / ps;
            std::size_t const slot0 = pos % ps;
            std::size_t const n = std::min({iv.end - pos, ps - slot0, chunk});
            std::size_t const page = pages[kept != nullptr ? kept[logical] : logical];
            for (std::size_t j = 0; j < n; ++j) {
              T const* kp = kv.at(page, 0, slot0 + j, h);
              for (std::size_t g = 0; g < group; ++g) {
                float s = host::detail::dot(qg + g * HeadDim, kp, HeadDim) * scale;
                if (cap > 0.0f) s = cap * std::tanh(s / cap);
                scores[g * chunk + j] = s;
              }
            }
            for (std::size_t g = 0; g < group; ++g) {
              float* sg = scores.data() + g * chunk;
              float const cm = *std::max_element(sg, sg + n);
              float const new_m = std::max(m[g], cm);
              float const corr = std::exp(m[g] - new_m);  // exp(-inf) = 0 on the first chunk
              float sum = 0.0f;
              for (std::size_t j = 0; j < n; ++j) {
                sg[j] = std::exp(sg[j] - new_m);
                sum += sg[j];
              }
              l[g] = l[g] * corr + sum;
              m[g] = new_m;
              if (corr != 1.0f) {
                for (std::size_t d = 0; d < HeadDim; ++d) acc[g * HeadDim + d] *= corr;
              }
            }
            for (std::size_t j = 0; j < n; ++j) {
              T const* vp = kv.at(page, 1, slot0 + j, h);
              for (std::size_t g = 0; g < group; ++g) {
                host::detail::axpy(acc.data() + g * HeadDim, scores[g * chunk + j], vp, HeadDim);
              }
            }
            pos += n;
          }
        }
        for (std::size_t g = 0; g < group; ++g) {
          std::size_t const head = h * group + g;
          float* o = out.data() + (t * qo_heads + head) * HeadDim;
          if (l[g] == 0.0f) {
            std::fill(o, o + HeadDim, 0.0f);
            lse(t, head) = -std::numeric_limits<float>::infinity();
            continue;
          }
          float const inv = 1.0f / l[g];
          for (std::size_t d = 0; d < HeadDim; ++d) o[d] = acc[g * HeadDim + d] * inv;
          lse(t, head) = m[g] + std::log(l[g]);
        }
      }
    });
  }
};

}  // namespace piecrust
