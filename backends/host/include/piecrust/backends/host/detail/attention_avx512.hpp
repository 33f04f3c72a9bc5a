#pragma once
// AVX-512 variants of paged attention's score and value micro-kernels (issue 21), compiled with function
// target attributes and chosen once per process at run time (AttentionPath below), like attention_avx2.hpp
// beside this. Decode attention reads every KV element once and does G FMA lanes per element (G = query
// heads of a GQA group), so at 16 lanes per FMA and 32 registers the arithmetic is far from the limit and
// the kernels spend their instructions on loads and prefetches; the online-softmax step (a few
// instructions per 64 slots and head) stays the AVX2 one.
//
// bf16 K and V are read 32 elements per 64-byte load, as two halves of 16: the even elements (low 16 bits
// of each 32-bit pair, shifted up) and the odd ones (high 16 bits, masked in place), one instruction per
// 16 values (bf16 is the top half of an f32). q and acc are kept in that order inside each group of 32
// (group order, see attention_group_width). With AVX512_BF16, scores use vdpbf16ps instead: each lane
// multiplies a pair of consecutive bf16 elements of q and of k and adds both products to an f32 lane, one
// instruction per 32 elements and head, on q rounded to bf16 once per call. That rounding (relative error
// <= 2^-9 per element of q, round to nearest even) is the path's only loss: the products of two bf16 are
// exact in f32 and the sums run in f32, so the scores equal those of a bf16-rounded q up to f32 summation.
//
// f32 KV runs the AVX2 kernels on these paths: they read it faster on the AVX-512 machine measured
// (kernel_path in paged_attention.hpp).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "piecrust/backends/host/detail/attention_avx2.hpp"
#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/kernels/bfloat16.hpp"

namespace piecrust::host::detail {

/// The code path of decode attention's micro-kernels, slowest first. avx512_bf16 differs from avx512 only
/// for bf16 KV (scores through vdpbf16ps).
enum class AttentionPath : int { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3 };

[[nodiscard]] constexpr char const* attention_path_name(AttentionPath p) noexcept {
  switch (p) {
    case AttentionPath::avx2: return "avx2";
    case AttentionPath::avx512: return "avx512";
    case AttentionPath::avx512_bf16: return "avx512_bf16";
    default: return "scalar";
  }
}

/// Every path this CPU runs under PIECRUST_HOST_SIMD's cap (cpu_simd_levels), slowest first; tests run each.
[[nodiscard]] inline std::vector<AttentionPath> attention_paths() {
  std::vector<AttentionPath> out;
  for (piecrust::detail::SimdLevel const l : piecrust::detail::cpu_simd_levels()) {
#if PIECRUST_HOST_ATTENTION_AVX2
    if (l == piecrust::detail::SimdLevel::avx2) out.push_back(AttentionPath::avx2);
    if (l == piecrust::detail::SimdLevel::avx512) {
      out.push_back(AttentionPath::avx512);
      if (piecrust::detail::cpu_features().avx512bf16) out.push_back(AttentionPath::avx512_bf16);
    }
#endif
    if (l == piecrust::detail::SimdLevel::scalar) out.push_back(AttentionPath::scalar);
  }
  return out;
}

/// A test's choice of path (-1: none); see ScopedAttentionPath.
inline std::atomic<int>& attention_path_override() noexcept {
  static std::atomic<int> p{-1};
  return p;
}

/// The path paged attention runs: the fastest one, chosen once per process, so results are bit-identical
/// whatever the batch, the thread count or the page trim; a test may set another for its calls.
[[nodiscard]] inline AttentionPath attention_path() {
  static AttentionPath const best = attention_paths().back();
  int const o = attention_path_override().load(std::memory_order_relaxed);
  return o >= 0 ? static_cast<AttentionPath>(o) : best;
}

/// For tests: runs paged attention on path p (one of attention_paths()) while it lives. Not for
/// concurrent calls: the path is process-wide.
class ScopedAttentionPath {
 public:
  explicit ScopedAttentionPath(AttentionPath p) noexcept
      : old_(attention_path_override().exchange(static_cast<int>(p))) {}
  ~ScopedAttentionPath() { attention_path_override().store(old_); }
  ScopedAttentionPath(ScopedAttentionPath const&) = delete;
  ScopedAttentionPath& operator=(ScopedAttentionPath const&) = delete;

 private:
  int old_;
};

/// Elements per group of the even / odd order that path p keeps q and acc in for KV type T (0: natural).
template <class T>
[[nodiscard]] constexpr std::size_t attention_group_width(AttentionPath p) noexcept {
  if constexpr (!std::is_same_v<T, BFloat16>) {
    return 0;
  } else {
    return p == AttentionPath::avx2 ? 16 : p >= AttentionPath::avx512 ? 32 : 0;
  }
}

#if PIECRUST_HOST_ATTENTION_AVX2

// GCC 12's AVX-512 intrinsics self-initialise their "undefined" operands, which -Wmaybe-uninitialized
// reports after inlining (fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning (clang would warn about the unknown name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define PIECRUST_AVX512_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define PIECRUST_AVX512 __attribute__((target(PIECRUST_AVX512_TARGET), always_inline))

/// Half H of a group of 32 consecutive bf16 KV elements as 16 floats: the even (H = 0) or odd (H = 1)
/// elements of one 64-byte load. (Only bf16: f32 KV runs the AVX2 kernels, see kernel_path.)
template <std::size_t H>
PIECRUST_AVX512 inline __m512 avx512_half(BFloat16 const* p) noexcept {
  __m512i const w = _mm512_loadu_si512(p);
  if constexpr (H == 0) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  } else {
    return _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
}

/// The two 256-bit halves of v added (16 lanes to 8), for AVX2's horizontal-add tree.
PIECRUST_AVX512 inline __m256 avx512_fold(__m512 v) noexcept {
  return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

/// scores[g * chunk + s] = scale * (sum of the lanes of a[g * S + s]), four scores per reduction tree.
template <std::size_t G, std::size_t S>
PIECRUST_AVX512 inline void avx512_store_scores(__m512 const (&a)[G * S], float* scores, std::size_t chunk,
                                                __m128 scale) noexcept {
  constexpr std::size_t R = (G * S + 3) / 4;
  alignas(16) float r[4 * R];  // [G][S] then padding
  __m256 const z = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (std::size_t i = 0; i < R; ++i) {
    constexpr std::size_t last = G * S - 1;  // indices past it read the zero vector
    std::size_t const i1 = 4 * i + 1, i2 = 4 * i + 2, i3 = 4 * i + 3;
    __m128 const sums = avx2_reduce4(avx512_fold(a[4 * i]), i1 <= last ? avx512_fold(a[i1 <= last ? i1 : last]) : z,
                                     i2 <= last ? avx512_fold(a[i2 <= last ? i2 : last]) : z,
                                     i3 <= last ? avx512_fold(a[i3 <= last ? i3 : last]) : z);
    _mm_store_ps(r + 4 * i, _mm_mul_ps(sums, scale));
  }
#pragma GCC unroll 8
  for (std::size_t g = 0; g < G; ++g) std::memcpy(scores + g * chunk, r + g * S, S * sizeof(float));
}

/// scores[g * chunk + s] = scale * q[g] . k[s] for the G query heads of one KV head and S slots (S slots
/// share each q load, G * S accumulators in registers).
///   q [G][D] (bf16 KV: group order), k: slot s at k + s * slot_stride, scores [G][chunk]
template <std::size_t G, std::size_t S, std::size_t D, class T>
PIECRUST_AVX512 inline void avx512_score_block(float const* q, T const* k, std::size_t slot_stride, float* scores,
                                               std::size_t chunk, __m128 scale) noexcept {
  __m512 a[G * S];  // [G][S]
#pragma GCC unroll 16
  for (std::size_t i = 0; i < G * S; ++i) a[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (std::size_t d = 0; d < D; d += 32) {
    __m512 x0[S], x1[S];
#pragma GCC unroll 4
    for (std::size_t s = 0; s < S; ++s) {
      x0[s] = avx512_half<0>(k + s * slot_stride + d);
      x1[s] = avx512_half<1>(k + s * slot_stride + d);
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      __m512 const q0 = _mm512_loadu_ps(q + g * D + d), q1 = _mm512_loadu_ps(q + g * D + d + 16);
#pragma GCC unroll 4
      for (std::size_t s = 0; s < S; ++s) a[g * S + s] = _mm512_fmadd_ps(q1, x1[s], _mm512_fmadd_ps(q0, x0[s], a[g * S + s]));
    }
  }
  avx512_store_scores<G, S>(a, scores, chunk, scale);
}

/// Scaled dot products for all KV heads of n consecutive slots, slot pairs outermost (the K block is read
/// front to back), as attention_scores_avx2 (same arguments; q of bf16 KV in group order of 32).
template <std::size_t G, std::size_t D, class T>
__attribute__((target(PIECRUST_AVX512_TARGET))) void attention_scores_avx512(
    float const* q, std::size_t q_kv_stride, T const* k, std::size_t slot_stride, std::size_t kv_heads, std::size_t n,
    float* scores, std::size_t s_kv_stride, std::size_t chunk, float scale, void const* const* ahead) noexcept {
  static_assert(D % 32 == 0);
  // Two slots per pass: 2G accumulators, four K halves and two q vectors fit the 32 registers for G <= 8.
  constexpr std::size_t S = 2 * G + 6 <= 32 ? 2 : 1;
  constexpr std::size_t head_bytes = D * sizeof(T);
  __m128 const vs = _mm_set1_ps(scale);
  PrefetchCursor pf{ahead, kv_heads * head_bytes};
  std::size_t j = 0;
  for (; j + S <= n; j += S) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, S, h, head_bytes);
      avx512_score_block<G, S, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                  scores + h * s_kv_stride + j, chunk, vs);
    }
  }
  for (; j < n; ++j) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, 1, h, head_bytes);
      avx512_score_block<G, 1, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                  scores + h * s_kv_stride + j, chunk, vs);
    }
  }
}

#define PIECRUST_AVX512BF16_TARGET PIECRUST_AVX512_TARGET ",avx512bf16"
#define PIECRUST_AVX512BF16 __attribute__((target(PIECRUST_AVX512BF16_TARGET), always_inline))

/// 32 bf16 as the operand type of vdpbf16ps (the same 64 bytes).
PIECRUST_AVX512BF16 inline __m512bh avx512_load_bh(BFloat16 const* p) noexcept {
  __m512bh r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}

/// As avx512_score_block with vdpbf16ps: q [G][D] is bf16 in natural order (pairs of consecutive elements).
template <std::size_t G, std::size_t S, std::size_t D>
PIECRUST_AVX512BF16 inline void avx512bf16_score_block(BFloat16 const* q, BFloat16 const* k, std::size_t slot_stride,
                                                       float* scores, std::size_t chunk, __m128 scale) noexcept {
  __m512 a[G * S];  // [G][S]
#pragma GCC unroll 16
  for (std::size_t i = 0; i < G * S; ++i) a[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (std::size_t d = 0; d < D; d += 32) {
    __m512bh x[S];
#pragma GCC unroll 4
    for (std::size_t s = 0; s < S; ++s) x[s] = avx512_load_bh(k + s * slot_stride + d);
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      __m512bh const qv = avx512_load_bh(q + g * D + d);
#pragma GCC unroll 4
      for (std::size_t s = 0; s < S; ++s) a[g * S + s] = _mm512_dpbf16_ps(a[g * S + s], qv, x[s]);
    }
  }
  avx512_store_scores<G, S>(a, scores, chunk, scale);
}

/// attention_scores_avx512 for bf16 K with vdpbf16ps; q: head h's G query heads at q + h * q_kv_stride
/// ([G][D] bf16, natural order).
template <std::size_t G, std::size_t D>
__attribute__((target(PIECRUST_AVX512BF16_TARGET))) void attention_scores_avx512bf16(
    BFloat16 const* q, std::size_t q_kv_stride, BFloat16 const* k, std::size_t slot_stride, std::size_t kv_heads,
    std::size_t n, float* scores, std::size_t s_kv_stride, std::size_t chunk, float scale,
    void const* const* ahead) noexcept {
  static_assert(D % 32 == 0);
  constexpr std::size_t S = 2 * G + 3 <= 32 ? 2 : 1;
  constexpr std::size_t head_bytes = D * sizeof(BFloat16);
  __m128 const vs = _mm_set1_ps(scale);
  PrefetchCursor pf{ahead, kv_heads * head_bytes};
  std::size_t j = 0;
  for (; j + S <= n; j += S) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, S, h, head_bytes);
      avx512bf16_score_block<G, S, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                      scores + h * s_kv_stride + j, chunk, vs);
    }
  }
  for (; j < n; ++j) {
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j, 1, h, head_bytes);
      avx512bf16_score_block<G, 1, D>(q + h * q_kv_stride, k + j * slot_stride + h * D, slot_stride,
                                      scores + h * s_kv_stride + j, chunk, vs);
    }
  }
}

/// acc[g] += sum_j p[g][j] * v[j] for one KV head, 32 elements (two zmm per head) at a time, the 2G
/// accumulators in registers over the n slots.
///   acc [G][D] (bf16 V: group order), p [G][chunk], v: slot j at v + j * slot_stride
template <std::size_t G, std::size_t D, class T>
PIECRUST_AVX512 inline void avx512_value_block(float* acc, float const* p, std::size_t chunk, T const* v,
                                               std::size_t slot_stride, std::size_t n) noexcept {
  static_assert(D % 32 == 0);
  for (std::size_t d0 = 0; d0 < D; d0 += 32) {
    __m512 a[G][2];
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      a[g][0] = _mm512_loadu_ps(acc + g * D + d0);
      a[g][1] = _mm512_loadu_ps(acc + g * D + d0 + 16);
    }
    for (std::size_t j = 0; j < n; ++j) {
      T const* vr = v + j * slot_stride + d0;
      __m512 const x0 = avx512_half<0>(vr), x1 = avx512_half<1>(vr);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) {
        __m512 const pg = _mm512_set1_ps(p[g * chunk + j]);
        a[g][0] = _mm512_fmadd_ps(pg, x0, a[g][0]);
        a[g][1] = _mm512_fmadd_ps(pg, x1, a[g][1]);
      }
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) {
      _mm512_storeu_ps(acc + g * D + d0, a[g][0]);
      _mm512_storeu_ps(acc + g * D + d0 + 16, a[g][1]);
    }
  }
}

/// acc += p V for all KV heads of n consecutive slots, in blocks of `block` slots with all heads inside,
/// as attention_values_avx2 (same arguments; acc of bf16 V in group order of 32).
template <std::size_t G, std::size_t D, class T>
__attribute__((target(PIECRUST_AVX512_TARGET))) void attention_values_avx512(
    float* acc, std::size_t a_kv_stride, float const* p, std::size_t p_kv_stride, std::size_t chunk, T const* v,
    std::size_t slot_stride, std::size_t kv_heads, std::size_t n, std::size_t block, void const* const* ahead) noexcept {
  constexpr std::size_t head_bytes = D * sizeof(T);
  PrefetchCursor pf{ahead, kv_heads * head_bytes};
  for (std::size_t j0 = 0; j0 < n; j0 += block) {
    std::size_t const nj = n - j0 < block ? n - j0 : block;
    for (std::size_t h = 0; h < kv_heads; ++h) {
      pf.issue(j0, nj, h, head_bytes);
      avx512_value_block<G, D>(acc + h * a_kv_stride, p + h * p_kv_stride + j0, chunk, v + j0 * slot_stride + h * D,
                               slot_stride, nj);
    }
  }
}

#undef PIECRUST_AVX512BF16
#undef PIECRUST_AVX512BF16_TARGET
#undef PIECRUST_AVX512
#undef PIECRUST_AVX512_TARGET

#pragma GCC diagnostic pop

#endif

}  // namespace piecrust::host::detail
