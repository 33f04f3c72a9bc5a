#pragma once
// Host implementation of paged_attention: one work item per (query token, piece of up to 1024 KV
// positions), all heads at once so that each page's K and V blocks are read front to back; pieces of
// one token are merged with merge_states' formula (split-KV, as FlashInfer's decode kernels). Online
// softmax over steps of up to 64 attended slots (Milakov & Gimelshein 2018; FlashAttention, Dao et al.
// 2022), f32 throughout. Only the attended runs of each row are visited, so masked positions and
// dropped pages are never read (K/V rows are software-prefetched a fixed distance ahead, only rows
// that will be read).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "piecrust/backends/host/detail/attention_avx2.hpp"
#include "piecrust/backends/host/detail/attention_avx512.hpp"
#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/attention_rows.hpp"
#include "piecrust/kernels/paged_attention.hpp"

namespace piecrust {

namespace host::detail {

/// Portable scores for the G query heads of one KV head and n slots, two slots at a time so each q
/// and k vector load feeds two FMAs: scores[g][j] = scale * q[g] . k[j].
///   q [G][D], k: slot j at k + j * slot_stride, scores [G][chunk]
template <std::size_t G, std::size_t D, class T>
inline void scores_one_head(float const* q, T const* k, std::size_t slot_stride, std::size_t n, float* scores,
                            std::size_t chunk, float scale) noexcept {
  std::size_t j = 0;
  for (; j + 2 <= n; j += 2) {
    Vf a0[G], a1[G];
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) a0[g] = a1[g] = splat(0.0f);
    T const* k0 = k + j * slot_stride;
    T const* k1 = k0 + slot_stride;
    for (std::size_t d = 0; d < D; d += lanes) {
      Vf const x0 = load(k0 + d);
      Vf const x1 = load(k1 + d);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) {
        Vf const qv = load(q + g * D + d);
        a0[g] += qv * x0;
        a1[g] += qv * x1;
      }
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      scores[g * chunk + j] = hsum(a0[g]) * scale;
      scores[g * chunk + j + 1] = hsum(a1[g]) * scale;
    }
  }
  for (; j < n; ++j) {
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) scores[g * chunk + j] = dot(q + g * D, k + j * slot_stride, D) * scale;
  }
}

/// The path whose micro-kernels run for KV type T on `path`. f32 KV keeps the AVX2 kernels on the AVX-512
/// paths: they read f32 KV faster on the AVX-512 machine measured (bench/RESULTS.md, decode attention).
template <class T>
[[nodiscard]] constexpr AttentionPath kernel_path(AttentionPath path) noexcept {
  return std::is_same_v<T, BFloat16> || path < AttentionPath::avx512 ? path : AttentionPath::avx2;
}

/// Scaled scores for all KV heads of n consecutive slots (soft-cap applied by the caller) on path `path`.
/// `ahead` [n]: rows the SIMD kernels prefetch while they read each slot (nullptr: none); the portable
/// kernels leave prefetching to the hardware.
///   q: head h's [G][D] at q + h * q_kv_stride (in the path's group order); qb: the same as bf16 in natural
///   order (read only by avx512_bf16 with bf16 K); k: slot j, KV head h at k + j * slot_stride + h * D;
///   scores: head h's [G][chunk] at scores + h * s_kv_stride
template <std::size_t G, std::size_t D, class T>
inline void attention_scores(AttentionPath path, float const* q, BFloat16 const* qb, std::size_t q_kv_stride,
                             T const* k, std::size_t slot_stride, std::size_t kv_heads, std::size_t n, float* scores,
                             std::size_t s_kv_stride, std::size_t chunk, float scale, void const* const* ahead) noexcept {
#if PIECRUST_HOST_ATTENTION_AVX2
  path = kernel_path<T>(path);
  if constexpr (std::is_same_v<T, BFloat16>) {
    if (path == AttentionPath::avx512_bf16) {
      attention_scores_avx512bf16<G, D>(qb, q_kv_stride, k, slot_stride, kv_heads, n, scores, s_kv_stride, chunk,
                                        scale, ahead);
      return;
    }
    if (path == AttentionPath::avx512) {
      attention_scores_avx512<G, D>(q, q_kv_stride, k, slot_stride, kv_heads, n, scores, s_kv_stride, chunk, scale, ahead);
      return;
    }
  }
  if (path == AttentionPath::avx2) {
    attention_scores_avx2<G, D>(q, q_kv_stride, k, slot_stride, kv_heads, n, scores, s_kv_stride, chunk, scale, ahead);
    return;
  }
#endif
  (void)path, (void)qb, (void)ahead;
  for (std::size_t h = 0; h < kv_heads; ++h) {
    scores_one_head<G, D>(q + h * q_kv_stride, k + h * D, slot_stride, n, scores + h * s_kv_stride, chunk, scale);
  }
}

/// Portable acc[g] += sum_j p[g][j] * v[j] for the G query heads of one KV head, in slices of two
/// vectors kept in registers across all n slots.
///   acc [G][D], p [G][chunk], v: slot j at v + j * slot_stride
template <std::size_t G, std::size_t D, class T>
inline void values_one_head(float* acc, float const* p, std::size_t chunk, T const* v, std::size_t slot_stride,
                            std::size_t n) noexcept {
  for (std::size_t d0 = 0; d0 < D; d0 += 2 * lanes) {
    Vf a[G][2];
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      a[g][0] = load(acc + g * D + d0);
      a[g][1] = load(acc + g * D + d0 + lanes);
    }
    for (std::size_t j = 0; j < n; ++j) {
      T const* vr = v + j * slot_stride + d0;
      Vf const v0 = load(vr);
      Vf const v1 = load(vr + lanes);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) {
        Vf const pg = splat(p[g * chunk + j]);
        a[g][0] += pg * v0;
        a[g][1] += pg * v1;
      }
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      store(acc + g * D + d0, a[g][0]);
      store(acc + g * D + d0 + lanes, a[g][1]);
    }
  }
}

/// acc += p V for all KV heads of n consecutive slots, in blocks of `block` slots with all heads inside.
///   acc: head h's [G][D] at acc + h * a_kv_stride; p: head h's [G][chunk] at p + h * p_kv_stride;
///   v: slot j, KV head h at v + j * slot_stride + h * D
template <std::size_t G, std::size_t D, class T>
inline void attention_values(AttentionPath path, float* acc, std::size_t a_kv_stride, float const* p,
                             std::size_t p_kv_stride, std::size_t chunk, T const* v, std::size_t slot_stride,
                             std::size_t kv_heads, std::size_t n, std::size_t block, void const* const* ahead) noexcept {
#if PIECRUST_HOST_ATTENTION_AVX2
  path = kernel_path<T>(path);
  if constexpr (std::is_same_v<T, BFloat16>) {
    if (path >= AttentionPath::avx512) {
      attention_values_avx512<G, D>(acc, a_kv_stride, p, p_kv_stride, chunk, v, slot_stride, kv_heads, n, block, ahead);
      return;
    }
  }
  if (path == AttentionPath::avx2) {
    attention_values_avx2<G, D>(acc, a_kv_stride, p, p_kv_stride, chunk, v, slot_stride, kv_heads, n, block, ahead);
    return;
  }
#endif
  (void)path, (void)ahead;
  for (std::size_t j0 = 0; j0 < n; j0 += block) {
    std::size_t const nj = std::min(block, n - j0);
    for (std::size_t h = 0; h < kv_heads; ++h) {
      values_one_head<G, D>(acc + h * a_kv_stride, p + h * p_kv_stride + j0, chunk, v + j0 * slot_stride + h * D,
                            slot_stride, nj);
    }
  }
}

/// One online-softmax step for each row of scores [heads][chunk] over n slots (see softmax_step_avx2).
/// Every SIMD path runs the AVX2 step (a few instructions per 64 slots and head).
inline void softmax_step(AttentionPath path, float* scores, std::size_t chunk, std::size_t n, std::size_t heads,
                         float* m, float* l, float* acc, std::size_t head_dim) noexcept {
#if PIECRUST_HOST_ATTENTION_AVX2
  if (path != AttentionPath::scalar) {
    softmax_step_avx2(scores, chunk, n, heads, m, l, acc, head_dim);
    return;
  }
#endif
  (void)path;
  for (std::size_t head = 0; head < heads; ++head) {
    float* sg = scores + head * chunk;
    float const cm = *std::max_element(sg, sg + n);
    float const new_m = std::max(m[head], cm);
    float const corr = std::exp(m[head] - new_m);  // exp(-inf) = 0 on the first step
    // exp over the chunk, lanes at a time (the buffer has room for a full last vector).
    Vf const vm = splat(new_m);
    for (std::size_t j = 0; j < n; j += lanes) store(sg + j, exp_approx(load(sg + j) - vm));
    float sum = 0.0f;
    for (std::size_t j = 0; j < n; ++j) sum += sg[j];
    l[head] = l[head] * corr + sum;
    m[head] = new_m;
    if (corr != 1.0f) {
      for (std::size_t d = 0; d < head_dim; ++d) acc[head * head_dim + d] *= corr;
    }
  }
}

}  // namespace host::detail

template <>
struct KernelImpl<ops::PagedAttention, Host> {
  static constexpr std::size_t chunk = 64;               // slots per online-softmax step (over consecutive pages)
  // V slots per register-blocked step, by KV element type. Larger blocks load and store acc less often
  // (16 ran ~5% faster on cache-resident V) but make each head walk more rows at a time, which the
  // memory-bound f32 case pays for: with the prefetch orders of PrefetchCursor, 2 beat 4 for f32 (SmolLM2
  // heads 0.70-0.78 vs 0.65-0.69 of the read bandwidth over 4 interleaved rounds, GQA-4 d-128 heads
  // level) while bf16, closer to compute-bound, keeps 4 (2 was 0.01-0.05 lower).
  // The sum over slots keeps its order, so the block size never changes a result bit.
  template <class T>
  static constexpr std::size_t value_block = sizeof(T) == 4 ? 2 : 4;
  static constexpr std::size_t piece_positions = 1024;   // KV positions per work item (split-KV)
  // Software-prefetch distance in slot rows (a row: every KV head of one slot, 2-4 KiB for 8 heads of
  // 128, 768 B for SmolLM2's 3 x 64 f32). Against no prefetch, 16 rows took the SmolLM2-head benchmark
  // from 0.43-0.45 to ~0.58 of the read bandwidth and bf16 from 0.31-0.35 to 0.36-0.39 (f32 within the
  // noise); of 4 / 8 / 16 / 32 rows, 16 was best or tied on every 256-768 MiB benchmark.
  static constexpr std::size_t prefetch_rows = 16;

  template <std::size_t HeadDim, class T>
  static void run(Host const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, PagedBatch const& batch,
                  ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params,
                  AttentionSelection const& sel) {
    std::size_t const tokens = q.extent(0);
    std::size_t const qo_heads = q.extent(1);
    std::size_t const ps = kv.page_size;
    // Work items: (token, piece); piece p covers the request's logical pages [p * ppp, (p + 1) * ppp).
    // Pieces depend only on the request's own page count, never on the batch or the thread count, so
    // results are reproducible bit for bit whatever else runs, and a trimmed run visits the same
    // pieces (a dropped page only empties part of one).
    std::size_t const ppp = std::max<std::size_t>(1, piece_positions / ps);
    std::vector<std::uint32_t> request_of(tokens);     // [tokens]
    std::vector<std::size_t> first_item(tokens + 1);   // [tokens + 1] item offsets
    for (std::size_t b = 0; b < batch.batch_size(); ++b) {
      std::size_t const pieces = std::max<std::size_t>(1, (batch.num_pages(b) + ppp - 1) / ppp);
      for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) {
        request_of[t] = static_cast<std::uint32_t>(b);
        first_item[t + 1] = first_item[t] + pieces;
      }
    }
    std::size_t const items = first_item[tokens];
    std::size_t const split_items = items - tokens;  // > 0 when some token has several pieces
    std::vector<float> part_acc(split_items > 0 ? items * qo_heads * HeadDim : 0);  // [items][qo_heads][HeadDim]
    std::vector<float> part_ml(split_items > 0 ? items * qo_heads * 2 : 0);         // [items][qo_heads][m, l]
    // Too few items to keep every thread busy (decode of one or two requests): each item is further cut
    // into KV-head slices. Heads never interact, so a slice computes exactly what the whole item computes
    // for those heads, and the result does not depend on the slicing (nor on the thread count).
    std::size_t const kvh = kv.num_kv_heads;
    std::size_t const slices = items >= 4 * space.concurrency() ? 1 : std::min(kvh, 4 * space.concurrency());
    host::detail::AttentionPath const path = host::detail::attention_path();  // one path for the whole call

    space.parallel_for(items * slices, [&](std::size_t begin, std::size_t end) {
      Worker<HeadDim, T> w(q, kv, batch, params, sel, qo_heads, path);
      for (std::size_t work = begin; work < end; ++work) {
        std::size_t const item = work / slices, slice = work % slices;
        std::size_t const kv_lo = slice * kvh / slices, kv_hi = (slice + 1) * kvh / slices;
        std::size_t const h_lo = kv_lo * w.group, h_hi = kv_hi * w.group;  // query heads of the slice
        std::size_t const t = static_cast<std::size_t>(
            std::upper_bound(first_item.begin(), first_item.end(), item) - first_item.begin() - 1);
        std::size_t const piece = item - first_item[t];
        std::size_t const pieces = first_item[t + 1] - first_item[t];
        w.compute(t, request_of[t], piece * ppp, (piece + 1) * ppp, kv_lo, kv_hi);
        if (pieces == 1) {
          w.finalize(out.data() + t * qo_heads * HeadDim, &lse(t, std::size_t{0}), h_lo, h_hi);
        } else {
          std::copy(w.acc.begin() + static_cast<std::ptrdiff_t>(h_lo * HeadDim),
                    w.acc.begin() + static_cast<std::ptrdiff_t>(h_hi * HeadDim),
                    part_acc.begin() + static_cast<std::ptrdiff_t>((item * qo_heads + h_lo) * HeadDim));
          for (std::size_t h = h_lo; h < h_hi; ++h) {
            part_ml[(item * qo_heads + h) * 2] = w.m[h];
            part_ml[(item * qo_heads + h) * 2 + 1] = w.l[h];
          }
        }
      }
    });
    if (split_items == 0) return;
    // Merge the pieces of split tokens in piece order (merge_states' formula).
    space.parallel_for(tokens * qo_heads, [&](std::size_t begin, std::size_t end) {
      for (std::size_t th = begin; th < end; ++th) {
        std::size_t const t = th / qo_heads;
        std::size_t const h = th % qo_heads;
        std::size_t const i0 = first_item[t], i1 = first_item[t + 1];
        if (i1 - i0 == 1) continue;
        float mx = -std::numeric_limits<float>::infinity();
        for (std::size_t i = i0; i < i1; ++i) mx = std::max(mx, part_ml[(i * qo_heads + h) * 2]);
        float* o = out.data() + (t * qo_heads + h) * HeadDim;
        std::fill(o, o + HeadDim, 0.0f);
        if (mx == -std::numeric_limits<float>::infinity()) {
          lse(t, h) = mx;
          continue;
        }
        float total = 0.0f;
        for (std::size_t i = i0; i < i1; ++i) {
          float const scale = std::exp(part_ml[(i * qo_heads + h) * 2] - mx);
          total += scale * part_ml[(i * qo_heads + h) * 2 + 1];
          host::detail::axpy(o, scale, part_acc.data() + (i * qo_heads + h) * HeadDim, HeadDim);
        }
        float const inv = 1.0f / total;
        for (std::size_t d = 0; d < HeadDim; ++d) o[d] *= inv;
        lse(t, h) = mx + std::log(total);
      }
    });
  }

 private:
  /// One thread's state: the partial softmax of every query head of one token over one piece.
  template <std::size_t HeadDim, class T>
  struct Worker {
    ShapedView<float const, 3> q;
    PagedKv<T const> kv;
    PagedBatch const& batch;
    PagedAttentionParams const& params;
    AttentionSelection const& sel;
    std::size_t qo_heads, group;
    std::vector<AttendedRun> intervals;
    host::detail::AttentionPath path;
    std::vector<float> acc;     // [qo_heads][HeadDim] (in group order while a piece runs, see q_order)
    // bf16 KV read by the SIMD kernels: q and acc in "group order" (even then odd elements of each group
    // of 16 for AVX2, of 32 for AVX-512), 0 for natural order.
    std::size_t group_width;
    std::vector<float> q_order;  // [qo_heads][HeadDim] this token's q in group order (group_width > 0 only)
    // avx512_bf16 with bf16 K: this token's q rounded to bf16, natural order, for vdpbf16ps.
    bool const q_to_bf16;
    std::vector<BFloat16> q_bf16;  // [qo_heads][HeadDim] (q_to_bf16 only)
    std::vector<float> scores;  // [qo_heads][chunk]
    std::vector<float> m, l;    // [qo_heads]
    /// A run of consecutive slots of one page inside the current chunk.
    struct Segment {
      T const* k;          // K of the run's first slot: [n][kv_heads][HeadDim], rows slot_stride apart
      T const* v;          // V of the same slots
      std::size_t n;       // slots
      std::size_t offset;  // first slot's column in scores
    };
    std::array<std::array<Segment, chunk>, 2> segs;  // [this step, next step][up to chunk]
    std::array<void const*, 3 * chunk + prefetch_rows> ahead;  // [K, V of this step, K of the next step, nullptr pad]
    std::array<void const*, chunk> no_rows{};  // [chunk] nullptr: no prefetch (repeated passes of a split group)

    Worker(ShapedView<float const, 3> q_, PagedKv<T const> kv_, PagedBatch const& batch_, PagedAttentionParams const& params_,
           AttentionSelection const& sel_, std::size_t qo_heads_, host::detail::AttentionPath path_)
        : q(q_), kv(kv_), batch(batch_), params(params_), sel(sel_), qo_heads(qo_heads_), group(qo_heads_ / kv_.num_kv_heads),
          path(path_), acc(qo_heads_ * HeadDim), group_width(host::detail::attention_group_width<T>(path_)),
          q_order(group_width > 0 ? qo_heads_ * HeadDim : 0),
          q_to_bf16(std::is_same_v<T, BFloat16> && path_ == host::detail::AttentionPath::avx512_bf16),
          q_bf16(q_to_bf16 ? qo_heads_ * HeadDim : 0), scores(qo_heads_ * chunk), m(qo_heads_), l(qo_heads_) {}

    /// Partial attention of token t (request r) over the positions of logical pages [page_lo, page_hi),
    /// for the query heads of KV heads [kv_lo, kv_hi) (acc, m and l of the other heads are left as they are).
    void compute(std::size_t t, std::size_t r, std::size_t page_lo, std::size_t page_hi, std::size_t kv_lo,
                 std::size_t kv_hi) {
      std::size_t const ps = kv.page_size;
      std::size_t const i = t - batch.qo_indptr[r];
      std::size_t const qo_len = batch.qo_len(r);
      std::uint32_t const* pages = batch.kv_indices.data() + batch.kv_indptr[r];
      RequestKv const rk = request_kv(batch, sel, r, ps);
      std::uint32_t const* kept = rk.trimmed() ? rk.kept.data() : nullptr;
      // The piece's range in the positions the rows index (kept positions when trimmed).
      std::size_t lo = page_lo * ps, hi = page_hi * ps;
      if (rk.trimmed()) {
        lo = static_cast<std::size_t>(std::lower_bound(rk.kept.begin(), rk.kept.end(), page_lo) - rk.kept.begin()) * ps;
        hi = static_cast<std::size_t>(std::lower_bound(rk.kept.begin(), rk.kept.end(), page_hi) - rk.kept.begin()) * ps;
      }
      attended_runs(attention_row(sel, r, t, i), rk, qo_len, i, intervals);

      float const scale = params.sm_scale;
      float const cap = params.logits_soft_cap;
      std::size_t const slot_stride = kv.slot_stride();
      std::size_t const kvh = kv_hi - kv_lo;            // KV heads of this slice
      std::size_t const h0 = kv_lo * group;             // its first query head
      std::size_t const e0 = h0 * HeadDim, e1 = kv_hi * group * HeadDim;  // its elements of q and acc
      std::size_t const kv_offset = kv_lo * HeadDim;    // its first element within a slot row
      float const* qt = q.data() + t * qo_heads * HeadDim;  // [qo_heads][HeadDim]
      BFloat16 const* qb = nullptr;  // [qo_heads][HeadDim] from the slice's first head (q_to_bf16 only)
      if (q_to_bf16) {
        for (std::size_t e = e0; e < e1; ++e) q_bf16[e] = BFloat16(qt[e]);
        qb = q_bf16.data() + e0;
      }
      if (group_width > 0) {
        // The SIMD kernels read bf16 K and V as even / odd halves of each group (one load and one shift
        // or mask per vector of values); q and acc follow that order, acc is put back at the end.
        std::size_t const half = group_width / 2;
        for (std::size_t r0 = e0; r0 < e1; r0 += group_width) {
          for (std::size_t e = 0; e < half; ++e) {
            q_order[r0 + e] = qt[r0 + 2 * e];
            q_order[r0 + half + e] = qt[r0 + 2 * e + 1];
          }
        }
        qt = q_order.data();
      }
      qt += e0;
      float* const acc_s = acc.data() + e0;       // [slice heads][HeadDim]
      float* const scores_s = scores.data() + h0 * chunk;  // [slice heads][chunk]
      std::fill(acc.begin() + static_cast<std::ptrdiff_t>(e0), acc.begin() + static_cast<std::ptrdiff_t>(e1), 0.0f);
      std::fill(m.begin() + static_cast<std::ptrdiff_t>(h0), m.begin() + static_cast<std::ptrdiff_t>(kv_hi * group),
                -std::numeric_limits<float>::infinity());
      std::fill(l.begin() + static_cast<std::ptrdiff_t>(h0), l.begin() + static_cast<std::ptrdiff_t>(kv_hi * group), 0.0f);
      // The piece's attended runs, clipped to [lo, hi).
      std::size_t runs = 0;
      for (AttendedRun const iv : intervals) {
        std::size_t const b = std::max(iv.begin, lo), e = std::min(iv.end, hi);
        if (b < e) intervals[runs++] = {b, e};
      }
      std::size_t run = 0;
      std::size_t pos = runs > 0 ? intervals[0].begin : 0;
      // One online-softmax step over the next `chunk` attended slots of the piece, gathered over
      // consecutive pages and runs: the softmax's per-head work is paid once per 64 slots, not once per
      // page. Counting attended slots (not positions) makes the steps the same with and without page-trim
      // (a dropped page is never attended, so it only joins two runs), bit for bit.
      auto gather = [&](std::array<Segment, chunk>& out, std::size_t& segments) {
        std::size_t filled = 0;
        segments = 0;
        while (run < runs && filled < chunk) {
          if (pos == intervals[run].end) {
            if (++run < runs) pos = intervals[run].begin;
            continue;
          }
          std::size_t const logical = pos / ps;
          std::size_t const slot0 = pos % ps;
          std::size_t const n = std::min({intervals[run].end - pos, ps - slot0, chunk - filled});
          std::size_t const page = pages[kept != nullptr ? kept[logical] : logical];
          out[segments++] = {kv.at(page, 0, slot0, 0) + kv_offset, kv.at(page, 1, slot0, 0) + kv_offset, n, filled};
          filled += n;
          pos += n;
        }
        return filled;
      };
      std::size_t segments[2];
      std::size_t filled[2];
      filled[0] = gather(segs[0], segments[0]);
      for (std::size_t step = 0; filled[step & 1] > 0; ++step) {
        std::size_t const cur = step & 1, nxt = cur ^ 1;
        filled[nxt] = gather(segs[nxt], segments[nxt]);
        // Rows in the order they are consumed: this step's K rows, its V rows, the next step's K rows,
        // then nothing. Each micro-kernel prefetches the row `prefetch_rows` ahead of the one it reads,
        // across pages (the hardware prefetcher stops at every 4 KiB page and cannot guess the next KV
        // page).
        std::size_t const f = filled[cur];
        std::size_t r = 0;
        for (std::size_t kvi = 0; kvi < 2; ++kvi) {
          for (std::size_t sg = 0; sg < segments[cur]; ++sg) {
            T const* base = kvi == 0 ? segs[cur][sg].k : segs[cur][sg].v;
            for (std::size_t j = 0; j < segs[cur][sg].n; ++j) ahead[r++] = base + j * slot_stride;
          }
        }
        for (std::size_t sg = 0; sg < segments[nxt]; ++sg) {
          for (std::size_t j = 0; j < segs[nxt][sg].n; ++j) ahead[r++] = segs[nxt][sg].k + j * slot_stride;
        }
        for (; r < 2 * f + prefetch_rows; ++r) ahead[r] = nullptr;
        // K, then V, of each page front to back: slot pairs (V: blocks of slots) outermost, every KV
        // head inside (a slot's row holds all heads), not head by head across the slots' rows (a 4 KiB
        // stride for f32 d 128 x 8 heads, which the hardware prefetcher follows badly).
        for (std::size_t sg = 0; sg < segments[cur]; ++sg) {
          Segment const& seg = segs[cur][sg];
          for_group(group, [&](auto g_ct, std::size_t g0) {
            host::detail::attention_scores<decltype(g_ct)::value, HeadDim>(
                path, qt + g0 * HeadDim, qb == nullptr ? nullptr : qb + g0 * HeadDim, group * HeadDim, seg.k, slot_stride, kvh, seg.n,
                scores_s + g0 * chunk + seg.offset, group * chunk, chunk, scale,
                g0 == 0 ? ahead.data() + seg.offset + prefetch_rows : no_rows.data());
          });
        }
        if (cap > 0.0f) {
          for (std::size_t head = 0; head < kvh * group; ++head) {
            float* sh = scores_s + head * chunk;
            for (std::size_t j = 0; j < f; ++j) sh[j] = cap * std::tanh(sh[j] / cap);
          }
        }
        host::detail::softmax_step(path, scores_s, chunk, f, kvh * group, m.data() + h0, l.data() + h0, acc_s, HeadDim);
        for (std::size_t sg = 0; sg < segments[cur]; ++sg) {
          Segment const& seg = segs[cur][sg];
          for_group(group, [&](auto g_ct, std::size_t g0) {
            host::detail::attention_values<decltype(g_ct)::value, HeadDim>(
                path, acc_s + g0 * HeadDim, group * HeadDim, scores_s + g0 * chunk + seg.offset, group * chunk,
                chunk, seg.v, slot_stride, kvh, seg.n, value_block<T>,
                g0 == 0 ? ahead.data() + f + seg.offset + prefetch_rows : no_rows.data());
          });
        }
      }
      if (group_width > 0) {
        std::size_t const half = group_width / 2;
        for (std::size_t r0 = e0; r0 < e1; r0 += group_width) {
          float tmp[32];  // [group_width] one group in natural order
          for (std::size_t e = 0; e < half; ++e) {
            tmp[2 * e] = acc[r0 + e];
            tmp[2 * e + 1] = acc[r0 + half + e];
          }
          std::copy(tmp, tmp + group_width, acc.begin() + static_cast<std::ptrdiff_t>(r0));
        }
      }
    }

    /// Calls f(integral_constant<G>, first head of the block) over the GQA group in register-blocked
    /// steps: the whole group at once for groups up to 8, else one head at a time.
    template <class F>
    static void for_group(std::size_t group, F&& f) {
      switch (group) {
        case 1: f(std::integral_constant<std::size_t, 1>{}, 0); return;
        case 2: f(std::integral_constant<std::size_t, 2>{}, 0); return;
        case 3: f(std::integral_constant<std::size_t, 3>{}, 0); return;
        case 4: f(std::integral_constant<std::size_t, 4>{}, 0); return;
        case 5: f(std::integral_constant<std::size_t, 5>{}, 0); return;
        case 6: f(std::integral_constant<std::size_t, 6>{}, 0); return;
        case 7: f(std::integral_constant<std::size_t, 7>{}, 0); return;
        case 8: f(std::integral_constant<std::size_t, 8>{}, 0); return;
        default:
          for (std::size_t g = 0; g < group; ++g) f(std::integral_constant<std::size_t, 1>{}, g);
      }
    }

    /// out [qo_heads][HeadDim] = acc / l, lse [qo_heads] (0 and -inf where nothing was seen), for query
    /// heads [h_lo, h_hi).
    void finalize(float* o, float* lse_row, std::size_t h_lo, std::size_t h_hi) const {
      for (std::size_t head = h_lo; head < h_hi; ++head) {
        float* oh = o + head * HeadDim;
        if (l[head] == 0.0f) {
          std::fill(oh, oh + HeadDim, 0.0f);
          lse_row[head] = -std::numeric_limits<float>::infinity();
          continue;
        }
        float const inv = 1.0f / l[head];
        for (std::size_t d = 0; d < HeadDim; ++d) oh[d] = acc[head * HeadDim + d] * inv;
        lse_row[head] = m[head] + std::log(l[head]);
      }
    }
  };
};

}  // namespace piecrust
