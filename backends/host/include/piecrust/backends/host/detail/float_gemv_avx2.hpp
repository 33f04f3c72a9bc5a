#pragma once
// AVX2 products of f32, f16 and bf16 weight rows with a few f32 activation rows, converting the weights
// eight at a time in registers (F16C for f16, a shift for bf16): the weights are read once, in their own
// size, which is what bounds decode-shaped products. Chosen at run time (cpu_supports(avx2)); the portable
// direct path of gemm.hpp is the fallback.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/kernels/weight_type.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>

#define PIECRUST_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace piecrust::detail::avx2 {

/// Weights j .. j + 7 of a row as f32.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline __m256 load_weights8(std::uint8_t const* row, std::size_t j) noexcept {
  if constexpr (T == WeightType::f32) {
    return _mm256_loadu_ps(reinterpret_cast<float const*>(row) + j);
  } else {
    __m128i const h = _mm_loadu_si128(reinterpret_cast<__m128i const*>(row + 2 * j));
    if constexpr (T == WeightType::f16) {
      return _mm256_cvtph_ps(h);
    } else {
      static_assert(T == WeightType::bf16);
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));  // bf16: the top half of an f32
    }
  }
}

[[nodiscard]] PIECRUST_TARGET_AVX2 inline float hsum_ps(__m256 v) noexcept {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

/// d[i] = dot(x row i, weight row) for i < M; x [M][k] with rows ldx apart. Two accumulators per
/// activation row over alternating groups of 8 keep the FMA chains short; the k % 8 tail is scalar.
template <WeightType T, std::size_t M>
PIECRUST_TARGET_AVX2 inline void float_row_dots(float const* x, std::size_t ldx, std::size_t k, std::uint8_t const* row,
                                                float* d) noexcept {
  __m256 acc[M][2];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  std::size_t j = 0;
  for (; j + 16 <= k; j += 16) {
    __m256 const w0 = load_weights8<T>(row, j), w1 = load_weights8<T>(row, j + 8);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < M; ++i) {
      acc[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + j), acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * ldx + j + 8), acc[i][1]);
    }
  }
  if (j + 8 <= k) {
    __m256 const w0 = load_weights8<T>(row, j);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < M; ++i) acc[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + j), acc[i][0]);
    j += 8;
  }
#pragma GCC unroll 8
  for (std::size_t i = 0; i < M; ++i) d[i] = hsum_ps(_mm256_add_ps(acc[i][0], acc[i][1]));
  for (; j < k; ++j) {
    float w = 0.0f;
    if constexpr (T == WeightType::f32) {
      w = reinterpret_cast<float const*>(row)[j];
    } else {
      std::uint16_t const h = static_cast<std::uint16_t>(row[2 * j] | (row[2 * j + 1] << 8));
      if constexpr (T == WeightType::f16) {
        w = _cvtsh_ss(h);
      } else {
        std::uint32_t const bits = std::uint32_t{h} << 16;
        std::memcpy(&w, &bits, sizeof w);
      }
    }
#pragma GCC unroll 8
    for (std::size_t i = 0; i < M; ++i) d[i] += w * x[i * ldx + j];
  }
}

/// y [m][ldy], columns [o0, o1): beta * y + x [m][k] * W^T for weight rows o0 .. o1 (row_bytes apart from w0).
template <WeightType T>
PIECRUST_TARGET_AVX2 void float_rows(float const* x, std::size_t m, std::size_t k, std::uint8_t const* w0,
                                     std::size_t row_bytes, std::size_t o0, std::size_t o1, float* y, std::size_t ldy,
                                     float beta) noexcept {
  constexpr std::size_t G = 4;  // activation rows per pass over a weight row
  for (std::size_t o = o0; o < o1; ++o) {
    std::uint8_t const* row = w0 + o * row_bytes;
    for (std::size_t i0 = 0; i0 < m; i0 += G) {
      float d[G];
      switch (m - i0 < G ? m - i0 : G) {
        case 1: float_row_dots<T, 1>(x + i0 * k, k, k, row, d); break;
        case 2: float_row_dots<T, 2>(x + i0 * k, k, k, row, d); break;
        case 3: float_row_dots<T, 3>(x + i0 * k, k, k, row, d); break;
        default: float_row_dots<T, G>(x + i0 * k, k, k, row, d); break;
      }
      for (std::size_t i = i0; i < m && i < i0 + G; ++i) {
        float& yo = y[i * ldy + o];
        yo = beta == 0.0f ? d[i - i0] : beta * yo + d[i - i0];
      }
    }
  }
}

using FloatRowsFn = void (*)(float const*, std::size_t, std::size_t, std::uint8_t const*, std::size_t, std::size_t,
                             std::size_t, float*, std::size_t, float);

/// The AVX2 kernel for weights of type t (f32, f16 or bf16), or null for other types.
[[nodiscard]] inline FloatRowsFn float_rows_fn(WeightType t) noexcept {
  switch (t) {
    case WeightType::f32: return &float_rows<WeightType::f32>;
    case WeightType::f16: return &float_rows<WeightType::f16>;
    case WeightType::bf16: return &float_rows<WeightType::bf16>;
    default: return nullptr;
  }
}

}  // namespace piecrust::detail::avx2

#undef PIECRUST_TARGET_AVX2
#endif
