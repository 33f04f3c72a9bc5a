#pragma once
// AVX2 integer dot products for every quantized type, in quant_dot.hpp's canonical order: codes are
// unpacked a group of 32 at a time into int8 lanes in element order; maddubs + madd give the int32 partial
// sums of elements 4l..4l+3 (with the sub-block scales folded in by madd for the 256-blocks), and each
// output keeps its own eight-lane accumulator. maddubs adds pairs of u8 * s8 into int16: the unsigned
// operand is the code itself (codes >= 0) or |code| with the sign moved onto the activation, so a pair
// is at most 2 * 128 * 127 < 32768 and never saturates.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/backends/host/detail/quant_activations.hpp"
#include "piecrust/backends/host/detail/quant_dot.hpp"
#include "piecrust/kernels/quant_blocks.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>

#define PIECRUST_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace piecrust::detail::avx2 {

PIECRUST_TARGET_AVX2 inline float half_at(std::uint8_t const* p) noexcept {
  return _cvtsh_ss(quant::load_u16(p));
}

PIECRUST_TARGET_AVX2 inline __m256i load32(void const* p) noexcept {
  return _mm256_loadu_si256(static_cast<__m256i const*>(p));
}

/// 16 bytes of nibbles -> 32 values: low nibbles are elements 0..15, high nibbles 16..31.
PIECRUST_TARGET_AVX2 inline __m256i nibbles32(std::uint8_t const* qs) noexcept {
  __m128i const raw = _mm_loadu_si128(reinterpret_cast<__m128i const*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
}

/// 0xff in byte e where bit e of bits is set.
PIECRUST_TARGET_AVX2 inline __m256i bit_mask32(std::uint32_t bits) noexcept {
  __m256i const v = _mm256_set1_epi32(static_cast<int>(bits));
  __m256i const pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m256i const bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, pick), bit), bit);
}

/// The IQ4 code book (quant::iq4_value) in one 128-bit register.
PIECRUST_TARGET_AVX2 inline __m128i iq4_table() noexcept {
  static constexpr auto table = [] {
    struct T {
      std::int8_t v[16];
    } t{};
    for (unsigned k = 0; k < 16; ++k) t.v[k] = quant::iq4_value(k);
    return t;
  }();
  return _mm_loadu_si128(reinterpret_cast<__m128i const*>(table.v));
}

/// Nibble indices 0..15 -> the IQ4 code book values.
PIECRUST_TARGET_AVX2 inline __m256i iq4_lookup(__m256i idx) noexcept {
  return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(iq4_table()), idx);
}

/// Codes of elements 32g .. 32g + 31 of a block (g = 0 for the 32-weight types), as quant::code gives them.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline __m256i unpack_group(std::uint8_t const* blk, std::size_t g) noexcept {
  namespace o = quant::offset;
  __m256i const m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
  if constexpr (T == WeightType::q4_0) {
    return _mm256_sub_epi8(nibbles32(blk + 2), _mm256_set1_epi8(8));
  } else if constexpr (T == WeightType::q4_1) {
    return nibbles32(blk + 4);
  } else if constexpr (T == WeightType::q5_0) {
    __m256i const hi = _mm256_and_si256(bit_mask32(quant::load_u32(blk + 2)), _mm256_set1_epi8(16));
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(blk + 6), hi), _mm256_set1_epi8(16));
  } else if constexpr (T == WeightType::q5_1) {
    __m256i const hi = _mm256_and_si256(bit_mask32(quant::load_u32(blk + 4)), _mm256_set1_epi8(16));
    return _mm256_or_si256(nibbles32(blk + 8), hi);
  } else if constexpr (T == WeightType::q8_0) {
    return load32(blk + 2);
  } else if constexpr (T == WeightType::iq4_nl) {
    return iq4_lookup(nibbles32(blk + 2));
  } else if constexpr (T == WeightType::q2_k) {
    __m256i const v = load32(blk + o::q2_k_qs + (g / 4) * 32);
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(static_cast<int>(2 * (g % 4)))), m3);
  } else if constexpr (T == WeightType::q3_k) {
    __m256i const v = load32(blk + o::q3_k_qs + (g / 4) * 32);
    __m256i const low = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(static_cast<int>(2 * (g % 4)))), m3);
    __m256i const bit = _mm256_set1_epi8(static_cast<char>(1u << g));
    __m256i const clear = _mm256_cmpeq_epi8(_mm256_and_si256(load32(blk), bit), _mm256_setzero_si256());
    return _mm256_sub_epi8(low, _mm256_and_si256(clear, _mm256_set1_epi8(4)));
  } else if constexpr (T == WeightType::q4_k || T == WeightType::q5_k) {
    std::size_t const qs = T == WeightType::q4_k ? o::q4_k_qs : o::q5_k_qs;
    __m256i const v = load32(blk + qs + (g / 2) * 32);
    __m256i const low = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(static_cast<int>(4 * (g % 2)))), m15);
    if constexpr (T == WeightType::q4_k) {
      return low;
    } else {
      __m256i const bit = _mm256_set1_epi8(static_cast<char>(1u << g));
      __m256i const set = _mm256_cmpeq_epi8(_mm256_and_si256(load32(blk + o::q5_k_qh), bit), bit);
      return _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
  } else if constexpr (T == WeightType::q6_k) {
    std::size_t const h = g / 4, r = g % 4;  // half of 128, group of 32 inside it
    __m256i const lv = load32(blk + h * 64 + 32 * (r % 2));
    __m256i const low = _mm256_and_si256(_mm256_srl_epi16(lv, _mm_cvtsi32_si128(static_cast<int>(4 * (r / 2)))), m15);
    __m256i const hv = load32(blk + o::q6_k_qh + h * 32);
    __m256i const high = _mm256_and_si256(_mm256_srl_epi16(hv, _mm_cvtsi32_si128(static_cast<int>(2 * r))), m3);
    return _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16(high, 4)), _mm256_set1_epi8(32));
  } else {
    static_assert(T == WeightType::iq4_xs);
    return iq4_lookup(nibbles32(blk + o::iq4_xs_qs + g * 16));
  }
}

/// The unsigned maddubs operand of a code vector, and the activation with the code's sign moved onto it.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline __m256i weight_operand(__m256i w) noexcept {
  if constexpr (has_unsigned_codes(T)) {
    return w;
  } else {
    return _mm256_sign_epi8(w, w);
  }
}
template <WeightType T>
PIECRUST_TARGET_AVX2 inline __m256i activation_operand(__m256i x, __m256i w) noexcept {
  if constexpr (has_unsigned_codes(T)) {
    (void)w;
    return x;
  } else {
    return _mm256_sign_epi8(x, w);
  }
}

/// quant_dot.hpp's result from the eight lanes: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), then sm.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline float finish(__m256 acc, float sm) noexcept {
  __m128 const q = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));  // a_l + a_{l+4}
  __m128 const h = _mm_add_ps(q, _mm_movehl_ps(q, q));                                      // (l, l + 2) pairs
  float const r = _mm_cvtss_f32(h) + _mm_cvtss_f32(_mm_shuffle_ps(h, h, 1));
  if constexpr (has_min_add(T)) return r + sm;
  if constexpr (has_min_sub(T)) return r - sm;
  return r;
}

/// Blocks of 32: out[w * out_stride + i] = dot(weight row w, activation row r0 + i), w < NW, i < M. Each
/// weight block is unpacked once for the M rows; the NW * M accumulators are independent chains.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX2 inline void dot32_rows(std::uint8_t const* w0, std::size_t row_bytes, QuantizedActivations const& a,
                                            std::size_t r0, float* out, std::size_t out_stride) noexcept {
  std::size_t const nb = a.cols / 32, bytes = weight_block_bytes(T);
  __m256 acc[NW][M];
  float sm[NW][M];
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) {
      acc[w][i] = _mm256_setzero_ps();
      sm[w][i] = 0.0f;
    }
  }
  __m256i const ones = _mm256_set1_epi16(1);
  for (std::size_t b = 0; b < nb; ++b) {
    __m256i wc[NW], wu[NW];
    float dw[NW], mw[NW];
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      std::uint8_t const* blk = w0 + w * row_bytes + b * bytes;
      wc[w] = unpack_group<T>(blk, 0);
      wu[w] = weight_operand<T>(wc[w]);
      dw[w] = half_at(blk);
      mw[w] = has_min_add(T) ? half_at(blk + 2) : 0.0f;
    }
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) {
      __m256i const x = load32(a.q.data() + (r0 + i) * a.cols + b * 32);
      float const dx = a.d[(r0 + i) * nb + b];
#pragma GCC unroll 16
      for (std::size_t w = 0; w < NW; ++w) {
        __m256i const p = _mm256_madd_epi16(_mm256_maddubs_epi16(wu[w], activation_operand<T>(x, wc[w])), ones);
        acc[w][i] = _mm256_fmadd_ps(_mm256_set1_ps(dw[w] * dx), _mm256_cvtepi32_ps(p), acc[w][i]);
      }
    }
    if constexpr (has_min_add(T)) {
#pragma GCC unroll 16
      for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
        for (std::size_t i = 0; i < M; ++i) sm[w][i] = std::fma(mw[w], a.s[(r0 + i) * nb + b], sm[w][i]);
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) out[w * out_stride + i] = finish<T>(acc[w][i], sm[w][i]);
  }
}

/// The integer sub-block scales of a 256-block as int16: for sub-blocks of 16 all 16 of them; for
/// sub-blocks of 32 the 8 of them in the low 128 bits. Minimums likewise (types with dmin).
struct KScales {
  __m256i scale, min;
};

template <WeightType T>
PIECRUST_TARGET_AVX2 inline KScales k_scales(std::uint8_t const* blk) noexcept {
  namespace o = quant::offset;
  KScales s{_mm256_setzero_si256(), _mm256_setzero_si256()};
  if constexpr (T == WeightType::q4_k || T == WeightType::q5_k) {
    // quant::k4_scale_min for all eight sub-blocks at once, four bytes per 32-bit word
    std::uint32_t const w0 = quant::load_u32(blk + o::k4_scales), w1 = quant::load_u32(blk + o::k4_scales + 4),
                        w2 = quant::load_u32(blk + o::k4_scales + 8);
    std::uint32_t const sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
    std::uint32_t const mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
    __m128i const sc = _mm_set_epi32(0, 0, static_cast<int>(sc_hi), static_cast<int>(w0 & 0x3f3f3f3fu));
    __m128i const mn = _mm_set_epi32(0, 0, static_cast<int>(mn_hi), static_cast<int>(w1 & 0x3f3f3f3fu));
    s.scale = _mm256_castsi128_si256(_mm_cvtepu8_epi16(sc));
    s.min = _mm256_castsi128_si256(_mm_cvtepu8_epi16(mn));
  } else if constexpr (T == WeightType::q6_k) {
    s.scale = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + o::q6_k_scales)));
  } else if constexpr (T == WeightType::q2_k) {
    __m128i const v = _mm_loadu_si128(reinterpret_cast<__m128i const*>(blk));
    __m128i const low = _mm_set1_epi8(0x0f);
    s.scale = _mm256_cvtepu8_epi16(_mm_and_si128(v, low));
    s.min = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), low));
  } else if constexpr (T == WeightType::q3_k) {
    // quant::q3_k_scale for all sixteen: low nibbles of scale bytes 0..7 then their high nibbles; the top two
    // bits of scale j sit in byte 8 + j % 4 at bit 2 * (j / 4), i.e. 32-bit lane j / 4 shifted by 2 (j / 4).
    // The 16 bytes start two before the scales so that they end with the block (d is its last field).
    static_assert(o::q3_k_scales == 96 && o::q3_k_d == 108);
    __m128i const v = _mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + o::q3_k_d - 14));  // scale k at 2 + k
    __m128i const nib = _mm_set1_epi8(0x0f);
    __m128i const first8 = _mm_shuffle_epi8(v, _mm_setr_epi8(2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9));
    __m128i const low = _mm_unpacklo_epi64(_mm_and_si128(first8, nib), _mm_and_si128(_mm_srli_epi16(first8, 4), nib));
    __m128i const tops = _mm_shuffle_epi8(v, _mm_setr_epi8(10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13));
    __m128i const top = _mm_and_si128(_mm_srlv_epi32(tops, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    __m128i const v6 = _mm_or_si128(low, _mm_slli_epi16(top, 4));
    s.scale = _mm256_cvtepi8_epi16(_mm_sub_epi8(v6, _mm_set1_epi8(32)));
  } else {
    static_assert(T == WeightType::iq4_xs);
    // quant::iq4_xs_scale for all eight, one int16 lane each: lane j holds scales_l's byte j / 2 and the
    // 16-bit scales_h; multiplying by 2^(12 - 4 (j % 2)) and 2^(14 - 2j) lifts field j to the top bits,
    // which the shifts bring down (a variable shift without AVX512BW)
    static_assert(o::iq4_xs_scales_h == 2 && o::iq4_xs_scales_l == 4);
    __m128i const v = _mm_loadl_epi64(reinterpret_cast<__m128i const*>(blk));  // d, scales_h, scales_l
    constexpr char z = -128;  // pshufb: a zero byte
    __m128i const low_bytes = _mm_shuffle_epi8(v, _mm_setr_epi8(4, z, 4, z, 5, z, 5, z, 6, z, 6, z, 7, z, 7, z));
    __m128i const high_bits = _mm_shuffle_epi8(v, _mm_setr_epi8(2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
    __m128i const low = _mm_srli_epi16(
        _mm_mullo_epi16(low_bytes, _mm_setr_epi16(4096, 256, 4096, 256, 4096, 256, 4096, 256)), 12);
    __m128i const high = _mm_srli_epi16(
        _mm_mullo_epi16(high_bits, _mm_setr_epi16(16384, 4096, 1024, 256, 64, 16, 4, 1)), 14);
    s.scale = _mm256_castsi128_si256(_mm_sub_epi16(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi16(32)));
  }
  return s;
}

/// The int16 scale of each maddubs pair of group g (elements 0..15 and 16..31 of the group), from the
/// k_scales vector with its low or high 128 bits broadcast to both halves (`half`).
template <std::size_t Sub>
PIECRUST_TARGET_AVX2 inline __m256i group_scales(__m256i half, std::size_t g) noexcept {
  // byte pattern: int16 element e of each half in every pair -> bytes 2e, 2e + 1
  std::size_t const e0 = Sub == 16 ? (2 * g) % 8 : g % 8, e1 = Sub == 16 ? (2 * g + 1) % 8 : g % 8;
  char const a0 = static_cast<char>(2 * e0), b0 = static_cast<char>(2 * e0 + 1);
  char const a1 = static_cast<char>(2 * e1), b1 = static_cast<char>(2 * e1 + 1);
  __m256i const pick = _mm256_setr_epi8(a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0, a0, b0,  //
                                        a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1, a1, b1);
  return _mm256_shuffle_epi8(half, pick);
}

/// The exact integer sum of min_j * (sum of the activations of sub-block j) over a super-block.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline int k_min_sum(__m256i mins, std::int16_t const* bsums) noexcept {
  __m256i const bs = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(bsums));  // 16 sums of 16
  __m128i p;
  if constexpr (quant::sub_block_size(T) == 16) {
    __m256i const q = _mm256_madd_epi16(mins, bs);
    p = _mm_add_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  } else {
    // sums of 32: pairs of the sums of 16 (at most 32 * 127, no int16 overflow)
    __m128i const b32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    p = _mm_madd_epi16(_mm256_castsi256_si128(mins), b32);
  }
  p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
  p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
  return _mm_cvtsi128_si32(p);
}

/// Blocks of 256: out[w * out_stride + i] = dot(weight row w, activation row r0 + i), w < NW, i < M.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX2 inline void dotk_rows(std::uint8_t const* w0, std::size_t row_bytes, QuantizedActivations const& a,
                                           std::size_t r0, float* out, std::size_t out_stride) noexcept {
  constexpr std::size_t sub = quant::sub_block_size(T);
  constexpr quant::HalfFields f = quant::f16_fields(T);
  std::size_t const nb = a.cols / 256, bytes = weight_block_bytes(T);
  __m256 acc[NW][M];
  float sm[NW][M];
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) {
      acc[w][i] = _mm256_setzero_ps();
      sm[w][i] = 0.0f;
    }
  }
  for (std::size_t b = 0; b < nb; ++b) {
    __m256i isum[NW][M], lo_half[NW], hi_half[NW];
    KScales ks[NW];
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      ks[w] = k_scales<T>(w0 + w * row_bytes + b * bytes);
      lo_half[w] = _mm256_permute2x128_si256(ks[w].scale, ks[w].scale, 0x00);
      hi_half[w] = _mm256_permute2x128_si256(ks[w].scale, ks[w].scale, 0x11);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) isum[w][i] = _mm256_setzero_si256();
    }
#pragma GCC unroll 16
    for (std::size_t g = 0; g < 8; ++g) {
#pragma GCC unroll 16
      for (std::size_t w = 0; w < NW; ++w) {
        std::uint8_t const* blk = w0 + w * row_bytes + b * bytes;
        __m256i const scv = group_scales<sub>(sub == 16 && g >= 4 ? hi_half[w] : lo_half[w], g);
        __m256i const wc = unpack_group<T>(blk, g), wu = weight_operand<T>(wc);
#pragma GCC unroll 16
        for (std::size_t i = 0; i < M; ++i) {
          __m256i const x = load32(a.kq.data() + (r0 + i) * a.cols + b * 256 + g * 32);
          __m256i const p = _mm256_maddubs_epi16(wu, activation_operand<T>(x, wc));
          isum[w][i] = _mm256_add_epi32(isum[w][i], _mm256_madd_epi16(p, scv));
        }
      }
    }
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      std::uint8_t const* blk = w0 + w * row_bytes + b * bytes;
      float const dw = half_at(blk + f.at[0]);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) {
        float const dx = a.kd[(r0 + i) * nb + b];
        acc[w][i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(isum[w][i]), acc[w][i]);
      }
      if constexpr (has_min_sub(T)) {
        float const dmin = half_at(blk + f.at[1]);
#pragma GCC unroll 16
        for (std::size_t i = 0; i < M; ++i) {
          int const msum = k_min_sum<T>(ks[w].min, a.kbsums.data() + ((r0 + i) * nb + b) * 16);
          sm[w][i] = std::fma(dmin * a.kd[(r0 + i) * nb + b], static_cast<float>(msum), sm[w][i]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) out[w * out_stride + i] = finish<T>(acc[w][i], sm[w][i]);
  }
}

/// NW weight rows against M activation rows from r0: the kernel of T's block size.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX2 inline void block_rows(std::uint8_t const* w0, std::size_t row_bytes, QuantizedActivations const& a,
                                            std::size_t r0, float* out, std::size_t out_stride) noexcept {
  if constexpr (uses_q8k(T)) {
    dotk_rows<T, M, NW>(w0, row_bytes, a, r0, out, out_stride);
  } else {
    dot32_rows<T, M, NW>(w0, row_bytes, a, r0, out, out_stride);
  }
}

/// All rows of `a` against NW weight rows at wr, G activation rows per pass (and the rest): o [NW][a.rows].
template <WeightType T, std::size_t NW, std::size_t G>
PIECRUST_TARGET_AVX2 inline void rows_of(std::uint8_t const* wr, std::size_t row_bytes, QuantizedActivations const& a,
                                         float* o) noexcept {
  std::size_t const m = a.rows;
  std::size_t r = 0;
  for (; r + G <= m; r += G) block_rows<T, G, NW>(wr, row_bytes, a, r, o + r, m);
  if constexpr (G > 1) {
    switch (m - r) {
      case 3: block_rows<T, 3, NW>(wr, row_bytes, a, r, o + r, m); break;
      case 2: block_rows<T, 2, NW>(wr, row_bytes, a, r, o + r, m); break;
      case 1: block_rows<T, 1, NW>(wr, row_bytes, a, r, o + r, m); break;
      default: break;
    }
  }
}

/// All rows of `a` against nw consecutive weight rows: out [nw][a.rows]. Pairs of weight rows share each
/// activation load (the 256-blocks only at decode, where their chains are short); the rest go one by one,
/// four activation rows per pass.
template <WeightType T>
PIECRUST_TARGET_AVX2 void quant_rows(std::uint8_t const* w0, std::size_t row_bytes, std::size_t nw,
                                     QuantizedActivations const& a, float* out) noexcept {
  std::size_t const m = a.rows;
  std::size_t w = 0;
  if constexpr (uses_q8k(T)) {
    if (m < 4) {
      for (; w + 2 <= nw; w += 2) rows_of<T, 2, 1>(w0 + w * row_bytes, row_bytes, a, out + w * m);
    }
  } else {
    for (; w + 2 <= nw; w += 2) rows_of<T, 2, 3>(w0 + w * row_bytes, row_bytes, a, out + w * m);
  }
  for (; w < nw; ++w) rows_of<T, 1, 4>(w0 + w * row_bytes, row_bytes, a, out + w * m);
}

/// Every code of one block (weight_block_size(T) values) as this path unpacks them (tests compare them
/// with quant::code).
template <WeightType T>
PIECRUST_TARGET_AVX2 void unpack_block(std::uint8_t const* blk, std::int8_t* codes) noexcept {
  for (std::size_t g = 0; g < weight_block_size(T) / 32; ++g) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + 32 * g), unpack_group<T>(blk, g));
  }
}

}  // namespace piecrust::detail::avx2

#undef PIECRUST_TARGET_AVX2
#endif
