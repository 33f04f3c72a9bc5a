#pragma once
// AVX2 + FMA variants of paged attention's micro-kernels (scores = q . K, acc += p V, the online-softmax
// step), compiled with a function-level target attribute and chosen at run time when the CPU has AVX2 and
// FMA, whatever flags the translation unit was built with (the default x86-64 build is SSE2 only: 4
// lanes, a multiply and an add per element and head). The choice is made once per process, so results
// stay bit-identical whatever the batch, the thread count or the page trim.
//
// Cost model (why these kernels are shaped this way): decode attention does G FMA lanes per K element and
// G per V element (G = query heads of a GQA group). A core that retires one 8-lane FMA per cycle (Zen 1
// splits a 256-bit FMA over its two 128-bit pipes) therefore consumes at most 8 / G KV elements per
// cycle: 2 per cycle for G = 4, i.e. ~10 G elements/s on two 2.5 GHz cores, 40 GB/s of f32 KV but only
// 20 GB/s of bf16 KV, about the machine's read bandwidth. bf16 is close to compute-bound, so every
// instruction that is not an FMA or a KV load counts: the kernels walk all KV heads of a slot pair in one
// call, reduce the dot products of a slot pair with a horizontal-add tree (5 instructions for 4 scores
// instead of ~6 per score), and the softmax step runs on 8 lanes.
// bf16 rows widen 8 values at a time: zero-extend to 32 bits, shift left by 16 (bf16 is the top half of
// an f32).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/kernels/bfloat16.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PIECRUST_HOST_ATTENTION_AVX2 1
#include <immintrin.h>
#else
#define PIECRUST_HOST_ATTENTION_AVX2 0
#endif

namespace piecrust::host::detail {

#if PIECRUST_HOST_ATTENTION_AVX2

/// True when the CPU runs the AVX2 level (AVX2, FMA, F16C; cpu_features.hpp, the project's one dispatch),
/// whatever PIECRUST_HOST_SIMD caps (the attention path, attention_avx512.hpp, applies the cap).
inline bool attention_avx2_available() noexcept { return piecrust::detail::cpu_supports(piecrust::detail::SimdLevel::avx2); }

#define PIECRUST_AVX2 __attribute__((target("avx2,fma"), always_inline))

PIECRUST_AVX2 inline __m256 avx2_load(float const* p) noexcept { return _mm256_loadu_ps(p); }
PIECRUST_AVX2 inline __m256 avx2_load(BFloat16 const* p) noexcept {
  __m128i const h = _mm_loadu_si128(reinterpret_cast<__m128i const*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/// Half H of a group of 16 consecutive KV elements as 8 floats. f32: elements [8H, 8H + 8). bf16: one
/// 32-byte load gives the even elements (H = 0: the low 16 bits of each 32-bit pair, shifted up) or the
/// odd ones (H = 1: the high 16 bits, masked in place), one instruction per 8 values instead of a
/// zero-extension and a shift (bf16 is the top half of an f32). Kernels that read bf16 this way use q
/// and acc in the same order inside each group of 16 (see bf16_group_order).
template <std::size_t H>
PIECRUST_AVX2 inline __m256 avx2_half(float const* p) noexcept {
  return _mm256_loadu_ps(p + 8 * H);
}
template <std::size_t H>
PIECRUST_AVX2 inline __m256 avx2_half(BFloat16 const* p) noexcept {
  __m256i const w = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(p));
  if constexpr (H == 0) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  } else {
    return _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
}
PIECRUST_AVX2 inline float avx2_hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
PIECRUST_AVX2 inline float avx2_hmax(__m256 v) noexcept {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
/// [sum a, sum b, sum c, sum d]: three horizontal adds and one 128-bit add for four dot products.
PIECRUST_AVX2 inline __m128 avx2_reduce4(__m256 a, __m256 b, __m256 c, __m256 d) noexcept {
  __m256 const u = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}
/// Lanes [0, n) set (n <= 8), as a blend mask.
PIECRUST_AVX2 inline __m256 avx2_first_lanes(std::size_t n) noexcept {
  __m256i const idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx));
}

/// Software prefetch of `bytes` (a multiple of 64) from p, one instruction per 64-byte line; p may be
/// null (nothing ahead).
PIECRUST_AVX2 inline void avx2_prefetch(void const* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  char const* c = static_cast<char const*>(p);
  for (std::size_t o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

/// The software prefetches of one micro-kernel call: the rows `prefetch_rows` ahead of the ones read, in
/// consumption order, a head slice of `slots` rows per call (the kernels read head by head within a
/// group of slots), in one of two orders:
///  * reading order (rows of >= 4 KiB): for each of the group's rows, the slice of the head being read.
///    Each row is its own 4 KiB page, so every page still sees ascending addresses.
///  * row order (shorter rows): the walk goes through each row front to back and each call issues the
///    next slots * head_bytes of it. In reading order the rows sharing a 4 KiB page would be visited
///    back and forth (row r head 0, row r+1 head 0, row r head 1, ...), and the L2's stream prefetcher,
///    which trains on L1 misses (software prefetches included) within a 4 KiB page and runs ahead of an
///    ascending stream, would not follow; in row order it does, so a software prefetch finds its line on
///    its way and frees its L1 miss buffer early. The SmolLM2-head benchmark (768-byte rows, 768 MiB)
///    went from 0.55-0.64 of the read bandwidth to 0.65-0.74 with the same lines at the same rate; the
///    GQA-4 d-128 f32 benchmarks (4 KiB rows) lost 5-7 points in row order, hence the two orders.
///    Issuing a whole row at once (ascending but in bursts) was worse everywhere (0.52-0.55 for SmolLM2
///    heads): the prefetches then stall on full miss buffers between the FMAs.
/// A null row ends the walk.
struct PrefetchCursor {
  void const* const* rows;  // [..] row starts, nullptr-terminated
  std::size_t row_bytes;    // bytes prefetched per row: the call's KV heads (a multiple of 64)
  std::size_t offset = 0;   // row order: bytes of *rows already issued
  /// The prefetches that go with reading head h (head_bytes) of rows [j, j + slots); calls come in
  /// reading order (groups of rows in order, heads in order within a group).
  PIECRUST_AVX2 void issue(std::size_t j, std::size_t slots, std::size_t h, std::size_t head_bytes) noexcept {
    if (row_bytes < 4096) {
      advance(slots * head_bytes);
      return;
    }
    for (std::size_t s = 0; s < slots; ++s) {
      if (rows[j + s] != nullptr) avx2_prefetch(static_cast<char const*>(rows[j + s]) + h * head_bytes, head_bytes);
    }
  }
  /// Row order: the next `bytes` of the walk.
  PIECRUST_AVX2 void advance(std::size_t bytes) noexcept {
    while (bytes > 0 && *rows != nullptr) {
      std::size_t const take = bytes < row_bytes - offset ? bytes : row_bytes - offset;
      avx2_prefetch(static_cast<char const*>(*rows) + offset, take);
      bytes -= take;
      offset += take;
      if (offset == row_bytes) {
        ++rows;
        offset = 0;
      }
    }
  }
};

/// exp(x) per lane, the same range reduction and polynomial as simd.hpp's exp_approx (Cephes' expf,
/// relative error ~2e-7) on 8 lanes with FMA.
PIECRUST_AVX2 inline __m256 avx2_exp(__m256 x) noexcept {
  x = _mm256_min_ps(x, _mm256_set1_ps(88.37626f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
  __m256 const k = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  __m256i const bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

/// a[g][s] += q[g] . k[s] over half H of the 16 elements at d.
template <std::size_t G, std::size_t S, std::size_t D, std::size_t H, class T>
PIECRUST_AVX2 inline void avx2_score_step(__m256 (&a)[G * S], float const* q, T const* k, std::size_t slot_stride,
                                          std::size_t d) noexcept {
  __m256 x[S];
#pragma GCC unroll 4
  for (std::size_t s = 0; s < S; ++s) x[s] = avx2_half<H>(k + s * slot_stride + d);
#pragma GCC unroll 8
  for (std::size_t g = 0; g < G; ++g) {
    __m256 const qv = _mm256_loadu_ps(q + g * D + d + 8 * H);
#pragma GCC unroll 4
    for (std::size_t s = 0; s < S; ++s) a[g * S + s] = _mm256_fmadd_ps(qv, x[s], a[g * S + s]);
  }
}

/// scores[g * chunk + s] = scale * q[g] . k[s] for the G query heads of one KV head and S slots (S
/// slots share each q load; G * S accumulators stay in registers).
///   q [G][D], k: slot s at k + s * slot_stride, scores [G][chunk]
template <std::size_t G, std::size_t S, std::size_t D, class T>
PIECRUST_AVX2 inline void avx2_score_block(float const* q, T const* k, std::size_t slot_stride, float* scores,
                                           std::size_t chunk, __m128 scale) noexcept {
  __m256 a[G * S];  // [G][S]
#pragma GCC unroll 16
  for (std::size_t i = 0; i < G * S; ++i) a[i] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (std::size_t d = 0; d < D; d += 16) {
    avx2_score_step<G, S, D, 0>(a, q, k, slot_stride, d);
    avx2_score_step<G, S, D, 1>(a, q, k, slot_stride, d);
  }
  constexpr std::size_t R = (G * S + 3) / 4;
  alignas(16) float r[4 * R];  // [G][S] then padding
  __m256 const z = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (std::size_t i = 0; i < R; ++i) {
    constexpr std::size_t last = G * S - 1;  // indices past it read the zero vector
    std::size_t const i1 = 4 * i + 1, i2 = 4 * i + 2, i3 = 4 * i + 3;
    __m128 const sums = avx2_reduce4(a[4 * i], i1 <= last ? a[i1 <= last ? i1 : last] : z,
                                     i2 <= last ? a[i2 <= last ? i2 : last] : z, i3 <= last ? a[i3 <= last ? i3 : last] : z);
    _mm_store_ps(r + 4 * i, _mm_mul_ps(sums, scale));
  }
#pragma GCC unroll 8
  for (std::size_t g = 0; g < G; ++g) std::memcpy(scores + g * chunk, r + g * S, S * sizeof(float));
}

/// Scaled dot products for all KV heads of n consecutive slots, groups of S slots outermost so the K block is
/// read front to back (a slot's row holds every KV head).
///   q: head h's G query heads at q + h * q_kv_stride ([G][D]); k: slot j, KV head h at
///   k + j * slot_stride + h * D; scores: head h's [G][chunk] at scores + h * s_kv_stride
///   ahead [n]: the row to prefetch while slot j is read (a row ahead in consumption order, every KV head
///   of one slot), or nullptr
template <std::size_t G, std::size_t D, class T>
__attribute__((target("avx2,fma"))) void attention_scores_avx2(float const* q, std::size_t q_kv_stride, T const* k,
                                                                std::size_t slot_stride, std::size_t kv_heads,
                                                                std::size_t n, float* scores, std::size_t s_kv_stride,
                                                                std::size_t chunk, float scale,
                                                                void const* const* ahead) noexcept {
  static_assert(D % 16 == 0);
  // Two slots per pass while the 2G accumulators, two K vectors and a q vector fit the 16 registers.
  // Three slots (G <= 4) ran faster on L1-resident f32 K (3.2 -> 3.7 G elements/s per core, FMA peak
  // 4.9 G for G = 4) but slower on the 256 MiB benchmarks (f32 0.79-0.83 -> 0.68-0.73 of the read
  // bandwidth, bf16 0.48-0.51 -> 0.43-0.46), so two it is.
  constexpr std::size_t S = 2 * G + 3 <= 16 ? 2 : 1;
  constexpr std::size_t head_bytes = D * sizeof(T);
  __m128 const vs = _mm_set1_ps(scale);
  PrefetchCursor pf{ahead, kv_heads * head_bytes};
  std::size_t j = 0;
  for (; j + S <= n; j += S) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, S, h, head_bytes);
      avx2_score_block<G, S, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                scores + h * s_kv_stride + j, chunk, vs);
    }
  }
  for (; j < n; ++j) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, 1, h, head_bytes);
      avx2_score_block<G, 1, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                scores + h * s_kv_stride + j, chunk, vs);
    }
  }
}

/// acc[g] slice += sum_j p[g][j] * v[j] slice for halves [H0, H0 + W) of the 16 elements at d0, the W
/// slices of each of the G heads kept in registers over the n slots.
template <std::size_t G, std::size_t D, std::size_t H0, std::size_t W, class T>
PIECRUST_AVX2 inline void avx2_value_slice(float* acc, float const* p, std::size_t chunk, T const* v,
                                           std::size_t slot_stride, std::size_t n, std::size_t d0) noexcept {
  __m256 a[G][W];
#pragma GCC unroll 8
  for (std::size_t g = 0; g < G; ++g)
#pragma GCC unroll 2
    for (std::size_t w = 0; w < W; ++w) a[g][w] = _mm256_loadu_ps(acc + g * D + d0 + 8 * (H0 + w));
  for (std::size_t j = 0; j < n; ++j) {
    T const* vr = v + j * slot_stride + d0;
    __m256 x[W];
    x[0] = avx2_half<H0>(vr);
    if constexpr (W == 2) x[1] = avx2_half<1>(vr);
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      __m256 const pg = _mm256_broadcast_ss(p + g * chunk + j);
#pragma GCC unroll 2
      for (std::size_t w = 0; w < W; ++w) a[g][w] = _mm256_fmadd_ps(pg, x[w], a[g][w]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t g = 0; g < G; ++g)
#pragma GCC unroll 2
    for (std::size_t w = 0; w < W; ++w) _mm256_storeu_ps(acc + g * D + d0 + 8 * (H0 + w), a[g][w]);
}

/// acc[g] += sum_j p[g][j] * v[j] for one KV head, 16 elements at a time (both halves in registers
/// while the 2G accumulators fit, else one half per pass).
///   acc [G][D], p [G][chunk], v: slot j at v + j * slot_stride
template <std::size_t G, std::size_t D, class T>
PIECRUST_AVX2 inline void avx2_value_block(float* acc, float const* p, std::size_t chunk, T const* v,
                                           std::size_t slot_stride, std::size_t n) noexcept {
  static_assert(D % 16 == 0);
  for (std::size_t d0 = 0; d0 < D; d0 += 16) {
    if constexpr (G <= 6) {
      avx2_value_slice<G, D, 0, 2>(acc, p, chunk, v, slot_stride, n, d0);
    } else {
      avx2_value_slice<G, D, 0, 1>(acc, p, chunk, v, slot_stride, n, d0);
      avx2_value_slice<G, D, 1, 1>(acc, p, chunk, v, slot_stride, n, d0);
    }
  }
}

/// acc += p V for all KV heads of n consecutive slots, in blocks of `block` slots with all heads inside
/// (the V block is read front to back; the sum over slots keeps its order).
///   acc: head h's [G][D] at acc + h * a_kv_stride; p: head h's [G][chunk] at p + h * p_kv_stride;
///   v: slot j, KV head h at v + j * slot_stride + h * D; ahead [n]: as for attention_scores_avx2
template <std::size_t G, std::size_t D, class T>
__attribute__((target("avx2,fma"))) void attention_values_avx2(float* acc, std::size_t a_kv_stride, float const* p,
                                                                std::size_t p_kv_stride, std::size_t chunk, T const* v,
                                                                std::size_t slot_stride, std::size_t kv_heads,
                                                                std::size_t n, std::size_t block,
                                                                void const* const* ahead) noexcept {
  constexpr std::size_t head_bytes = D * sizeof(T);
  PrefetchCursor pf{ahead, kv_heads * head_bytes};
  for (std::size_t j0 = 0; j0 < n; j0 += block) {
    std::size_t const nj = n - j0 < block ? n - j0 : block;
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j0, nj, h, head_bytes);
      avx2_value_block<G, D>(acc + h * a_kv_stride, p + h * p_kv_stride + j0, chunk, v + j0 * slot_stride + h * D,
                             slot_stride, nj);
    }
  }
}

/// One online-softmax step (Milakov & Gimelshein 2018) for each of `heads` rows of scores over n slots:
/// m = max(m, max_j s_j), s_j <- exp(s_j - m), l = l * corr + sum_j s_j, acc *= corr with
/// corr = exp(m_old - m) (skipped when the maximum did not move).
///   scores [heads][chunk] (chunk a multiple of 8), m, l [heads], acc [heads][head_dim]
__attribute__((target("avx2,fma"))) inline void softmax_step_avx2(float* scores, std::size_t chunk, std::size_t n,
                                                                   std::size_t heads, float* m, float* l, float* acc,
                                                                   std::size_t head_dim) noexcept {
  __m256 const tail = avx2_first_lanes(n % 8);
  __m256 const ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  std::size_t const full = n / 8 * 8;
  for (std::size_t head = 0; head < heads; ++head) {
    float* s = scores + head * chunk;
    __m256 vmax = ninf;
    for (std::size_t j = 0; j < full; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
    if (full < n) vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, _mm256_loadu_ps(s + full), tail));
    float const new_m = m[head] > avx2_hmax(vmax) ? m[head] : avx2_hmax(vmax);
    __m256 const vm = _mm256_set1_ps(new_m);
    __m256 sum = _mm256_setzero_ps();
    for (std::size_t j = 0; j < full; j += 8) {
      __m256 const e = avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
      _mm256_storeu_ps(s + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    if (full < n) {  // lanes past n are zeroed (the buffer has room for a full last vector)
      __m256 const e = _mm256_and_ps(avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(s + full), vm)), tail);
      _mm256_storeu_ps(s + full, e);
      sum = _mm256_add_ps(sum, e);
    }
    float const corr = __builtin_expf(m[head] - new_m);  // exp(-inf) = 0 on the first step
    l[head] = l[head] * corr + avx2_hsum(sum);
    m[head] = new_m;
    if (corr != 1.0f) {
      __m256 const c = _mm256_set1_ps(corr);
      float* a = acc + head * head_dim;
      for (std::size_t d = 0; d < head_dim; d += 8) _mm256_storeu_ps(a + d, _mm256_mul_ps(_mm256_loadu_ps(a + d), c));
    }
  }
}

#undef PIECRUST_AVX2

#else

inline bool attention_avx2_available() noexcept { return false; }

#endif

}  // namespace piecrust::host::detail
