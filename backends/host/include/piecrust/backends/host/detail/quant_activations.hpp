#pragma once
// Activations quantized the way llama.cpp's CPU matmul quantizes them before integer dot products:
//  * blocks of 32 (ggml's Q8_0 / Q8_1, for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL weights):
//    d = amax / 127, q = round-to-nearest-even(x * 127 / amax), d stored f16-rounded, and s = f16(d * sum q)
//    (Q8_1's term for the weights' minimums);
//  * blocks of 256 (ggml's Q8_K, for Q2_K..Q6_K and IQ4_XS weights): with v the element of largest |x|
//    (the first one), iscale = -127 / v, q = min(127, round(iscale * x)), d = 1 / iscale in f32, and the
//    sums of q over each 16 elements.
// Every path gives the same bits: the AVX2 block-of-32 code computes the scalar code's operations lane
// by lane, and the 256-block format has one (scalar) code.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/kernels/detail/half.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>
#endif

namespace piecrust::detail {

#if PIECRUST_HOST_X86
/// One block of 32 (AVX2): the scalar code's values (max and products are exact; _mm256_round_ps rounds
/// to nearest-even like nearbyint). Returns sum(q).
__attribute__((target("avx2,fma,f16c"))) inline int quantize_q8_block_avx2(float const* x, std::int8_t* q,
                                                                            float& dd) noexcept {
  __m256 const sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 mx = _mm256_setzero_ps();
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(x + 8 * j);
    mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float const amax = _mm_cvtss_f32(m4);
  dd = amax / 127.0f;
  __m256 const id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
  __m256i r[4];
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  __m256i const sum32 = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum32), _mm256_extracti128_si256(sum32, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  // int32 -> int8 in element order: packs interleave 128-bit lanes, the permute puts them back.
  __m256i const p16a = _mm256_packs_epi32(r[0], r[1]);
  __m256i const p16b = _mm256_packs_epi32(r[2], r[3]);
  __m256i const p8 = _mm256_packs_epi16(p16a, p16b);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q),
                      _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return _mm_cvtsi128_si32(s4);
}
#endif

/// One block of 32, portable code. Returns sum(q).
inline int quantize_q8_block_scalar(float const* x, std::int8_t* q, float& dd) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  dd = amax / 127.0f;
  float const id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    auto const v = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
    q[j] = v;
    sum += v;
  }
  return sum;
}

/// One block of 256 (Q8_K): q [256], bsums [16]; returns d.
inline float quantize_q8k_block(float const* x, std::int8_t* q, std::int16_t* bsums) noexcept {
  float amax = 0.0f, vmax = 0.0f;
  for (int j = 0; j < 256; ++j) {
    float const ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      vmax = x[j];
    }
  }
  if (amax == 0.0f) {
    std::fill(q, q + 256, std::int8_t{0});
    std::fill(bsums, bsums + 16, std::int16_t{0});
    return 0.0f;
  }
  float const iscale = -127.0f / vmax;
  for (int j = 0; j < 256; ++j) q[j] = static_cast<std::int8_t>(std::min(127.0f, std::nearbyint(iscale * x[j])));
  for (int j = 0; j < 16; ++j) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += q[16 * j + i];
    bsums[j] = static_cast<std::int16_t>(s);
  }
  return 1.0f / iscale;
}

/// The activations of one product input, in the formats its weights need (each computed once).
struct QuantizedActivations {
  std::size_t rows = 0, cols = 0;
  bool has_q8 = false, has_q8k = false;
  std::vector<std::int8_t> q;         // [rows][cols] blocks of 32
  std::vector<float> d;               // [rows][cols / 32] f16-rounded scale
  std::vector<float> s;               // [rows][cols / 32] f16-rounded d * sum(q)
  std::vector<std::int8_t> kq;        // [rows][cols] blocks of 256
  std::vector<float> kd;              // [rows][cols / 256] f32 scale
  std::vector<std::int16_t> kbsums;   // [rows][cols / 16] sums of kq per 16

  /// x: [m][k]. q8 needs k % 32 == 0, q8k needs k % 256 == 0 (the weights' block sizes guarantee it).
  void quantize(float const* x, std::size_t m, std::size_t k, bool q8, bool q8k, SimdLevel level) {
    rows = m;
    cols = k;
    has_q8 = q8;
    has_q8k = q8k;
    if (q8) {
      q.resize(m * k);
      d.resize(m * k / 32);
      s.resize(m * k / 32);
      for (std::size_t b = 0; b < m * k / 32; ++b) {
        float dd = 0.0f;
        int sum = 0;
#if PIECRUST_HOST_X86
        if (level != SimdLevel::scalar) {
          sum = quantize_q8_block_avx2(x + 32 * b, q.data() + 32 * b, dd);
        } else {
          sum = quantize_q8_block_scalar(x + 32 * b, q.data() + 32 * b, dd);
        }
#else
        (void)level;
        sum = quantize_q8_block_scalar(x + 32 * b, q.data() + 32 * b, dd);
#endif
        d[b] = f16_to_f32(f32_to_f16(dd));
        s[b] = f16_to_f32(f32_to_f16(dd * static_cast<float>(sum)));
      }
    }
    if (q8k) {
      kq.resize(m * k);
      kd.resize(m * k / 256);
      kbsums.resize(m * k / 16);
      for (std::size_t b = 0; b < m * k / 256; ++b) {
        kd[b] = quantize_q8k_block(x + 256 * b, kq.data() + 256 * b, kbsums.data() + 16 * b);
      }
    }
  }
};

}  // namespace piecrust::detail
