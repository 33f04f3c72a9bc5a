#pragma once
// AVX2 + FMA variants of paged attention's two micro-kernels (scores = q . K, acc += p V), compiled with
// a function-level target attribute and chosen at run time when the CPU has AVX2 and FMA, whatever flags
// the translation unit was built with (the default x86-64 build is SSE2 only: 4 lanes, a multiply and an
// add per element and head). Decode attention does G FMAs per KV element (G = query heads of a GQA
// group) and is compute-bound on a shared 2-core machine without them. The choice is made once per
// process, so results stay bit-identical whatever the batch, the thread count or the page trim.
// bf16 rows widen 8 values at a time: zero-extend to 32 bits, shift left by 16 (bf16 is the top half of
// an f32).

#include <cstddef>
#include <cstdint>

#include "piecrust/kernels/bfloat16.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PIECRUST_HOST_ATTENTION_AVX2 1
#include <immintrin.h>
#else
#define PIECRUST_HOST_ATTENTION_AVX2 0
#endif

namespace piecrust::host::detail {

#if PIECRUST_HOST_ATTENTION_AVX2

/// True when the CPU runs AVX2 and FMA (checked once).
inline bool attention_avx2_available() noexcept {
  static bool const ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

#define PIECRUST_AVX2 __attribute__((target("avx2,fma"), always_inline))

PIECRUST_AVX2 inline __m256 avx2_load(float const* p) noexcept { return _mm256_loadu_ps(p); }
PIECRUST_AVX2 inline __m256 avx2_load(BFloat16 const* p) noexcept {
  __m128i const h = _mm_loadu_si128(reinterpret_cast<__m128i const*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
PIECRUST_AVX2 inline float avx2_hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/// Raw dot products scores[g * chunk + j] = q[g] . k[j] (scale and soft-cap applied by the caller's
/// finish), two slots at a time while the accumulators fit the 16 registers.
template <std::size_t G, std::size_t D, class T, class Finish>
__attribute__((target("avx2,fma"))) void attention_scores_avx2(float const* q, T const* k, std::size_t slot_stride,
                                                                std::size_t n, float* scores, std::size_t chunk,
                                                                Finish const& finish) noexcept {
  static_assert(D % 8 == 0);
  std::size_t j = 0;
  if constexpr (2 * G + 3 <= 16) {
    for (; j + 2 <= n; j += 2) {
      __m256 a0[G], a1[G];
      for (std::size_t g = 0; g < G; ++g) a0[g] = a1[g] = _mm256_setzero_ps();
      T const* k0 = k + j * slot_stride;
      T const* k1 = k0 + slot_stride;
#pragma GCC unroll 4
      for (std::size_t d = 0; d < D; d += 8) {
        __m256 const x0 = avx2_load(k0 + d);
        __m256 const x1 = avx2_load(k1 + d);
#pragma GCC unroll 8
        for (std::size_t g = 0; g < G; ++g) {
          __m256 const qv = _mm256_loadu_ps(q + g * D + d);
          a0[g] = _mm256_fmadd_ps(qv, x0, a0[g]);
          a1[g] = _mm256_fmadd_ps(qv, x1, a1[g]);
        }
      }
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) {
        scores[g * chunk + j] = finish(avx2_hsum(a0[g]));
        scores[g * chunk + j + 1] = finish(avx2_hsum(a1[g]));
      }
    }
  }
  for (; j < n; ++j) {
    __m256 a[G];
    for (std::size_t g = 0; g < G; ++g) a[g] = _mm256_setzero_ps();
    T const* k0 = k + j * slot_stride;
#pragma GCC unroll 4
    for (std::size_t d = 0; d < D; d += 8) {
      __m256 const x0 = avx2_load(k0 + d);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) a[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + g * D + d), x0, a[g]);
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g) scores[g * chunk + j] = finish(avx2_hsum(a[g]));
  }
}

/// acc[g] += sum_j p[g][j] * v[j], in slices of W vectors of acc kept in registers over the n slots.
template <std::size_t G, std::size_t D, class T>
__attribute__((target("avx2,fma"))) void attention_values_avx2(float* acc, float const* p, std::size_t chunk, T const* v,
                                                                std::size_t slot_stride, std::size_t n) noexcept {
  constexpr std::size_t W = G <= 6 ? 2 : 1;
  static_assert(D % (8 * W) == 0);
  for (std::size_t d0 = 0; d0 < D; d0 += 8 * W) {
    __m256 a[G][W];
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t w = 0; w < W; ++w) a[g][w] = _mm256_loadu_ps(acc + g * D + d0 + 8 * w);
    for (std::size_t j = 0; j < n; ++j) {
      T const* vr = v + j * slot_stride + d0;
      __m256 x[W];
      for (std::size_t w = 0; w < W; ++w) x[w] = avx2_load(vr + 8 * w);
#pragma GCC unroll 8
      for (std::size_t g = 0; g < G; ++g) {
        __m256 const pg = _mm256_broadcast_ss(p + g * chunk + j);
        for (std::size_t w = 0; w < W; ++w) a[g][w] = _mm256_fmadd_ps(pg, x[w], a[g][w]);
      }
    }
#pragma GCC unroll 8
    for (std::size_t g = 0; g < G; ++g)
      for (std::size_t w = 0; w < W; ++w) _mm256_storeu_ps(acc + g * D + d0 + 8 * w, a[g][w]);
  }
}

#undef PIECRUST_AVX2

#else

inline bool attention_avx2_available() noexcept { return false; }

#endif

}  // namespace piecrust::host::detail
