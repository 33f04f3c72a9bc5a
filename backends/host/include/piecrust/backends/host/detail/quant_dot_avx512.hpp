#pragma once
// AVX-512 (F/BW/VL/DQ/VNNI) integer dot products, in quant_dot.hpp's canonical order, so every result has
// the scalar and AVX2 bits. Integer sums are exact and may be formed in any order; only the float chain is
// fixed. A zmm register therefore holds two 256-bit halves that are each one AVX2 register's worth:
//  * blocks of 256: groups 2p and 2p + 1 of one super-block (64 codes), unpacked straight from the block;
//    maddubs gives the int16 pair sums, vpdpwssd multiplies them by the sub-block scales and adds them to
//    the super-block's integer sums; the halves are added (exactly) before the one fma per super-block,
//    which runs on eight lanes as in the AVX2 code;
//  * blocks of 32: one block of two weight rows (rows w and w + 1 in the two halves) against the same
//    activation block, vpdpbusd for the products, and the fma per half with that row's scale, the AVX2
//    code's operations on both rows at once.
// vpdpbusd and vpdpwssd do not saturate, and neither do maddubs's pairs here (see quant_dot_avx2.hpp), so
// the integers equal the AVX2 code's. There is no vpsignb at 512 bits: signed codes use |code| and negate
// the activation under the code's sign mask (activations are >= -127, so negation never overflows).

#include <cstddef>
#include <cmath>
#include <cstdint>

#include "piecrust/backends/host/detail/quant_dot_avx2.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>

#define PIECRUST_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

// GCC 12's AVX-512 intrinsics self-initialise their "undefined" operands, which -Wmaybe-uninitialized
// reports after inlining (fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning (clang would warn about the unknown name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace piecrust::detail::avx512 {

PIECRUST_TARGET_AVX512 inline __m512i broadcast32(void const* p) noexcept {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(static_cast<__m256i const*>(p)));
}

/// Prefetches the lines of [p, p + bytes) into L1 (a hint: never faults).
PIECRUST_TARGET_AVX512 inline void prefetch_range(std::uint8_t const* p, std::size_t bytes) noexcept {
  for (std::size_t c = 0; c < bytes; c += 64) _mm_prefetch(reinterpret_cast<char const*>(p + c), _MM_HINT_T0);
}

/// int16 lanes: a in the low 256 bits, b in the high 256 bits.
PIECRUST_TARGET_AVX512 inline __m512i halves_epi16(short a, short b) noexcept {
  return _mm512_inserti64x4(_mm512_set1_epi16(a), _mm256_set1_epi16(b), 1);
}
/// Bytes: a in the low 256 bits, b in the high 256 bits.
PIECRUST_TARGET_AVX512 inline __m512i halves_epi8(std::uint8_t a, std::uint8_t b) noexcept {
  return _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(a)), _mm256_set1_epi8(static_cast<char>(b)), 1);
}

/// Q3_K and Q6_K unpack to code + code_bias(T) >= 0: maddubs then takes them unsigned, and the bias's share
/// maddubs(bias, x) is one product per activation load shared by every weight row (exact integers, so the
/// same sums as with signed codes).
[[nodiscard]] constexpr int code_bias(WeightType t) noexcept {
  return t == WeightType::q3_k ? 4 : t == WeightType::q6_k ? 32 : 0;
}

/// IQ4_XS: the code-book indices of groups 2p and 2p + 1 (elements 64p .. 64p + 63).
PIECRUST_TARGET_AVX512 inline __m512i iq4_xs_pair_indices(std::uint8_t const* blk, std::size_t p) noexcept {
  // 32 bytes of nibbles: 128-bit lanes [bytes 0..15 low, bytes 0..15 high, bytes 16..31 low, 16..31 high]
  __m512i const v = _mm512_castsi256_si512(avx2::load32(blk + quant::offset::iq4_xs_qs + p * 32));
  __m512i const lanes = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(1, 1, 0, 0));
  __m512i const shift = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4)),
                                           _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4), 1);
  return _mm512_and_si512(_mm512_srlv_epi16(lanes, shift), _mm512_set1_epi8(15));
}

/// Codes of groups 2p and 2p + 1 of a 256-block (elements 64p .. 64p + 63), as quant::code gives them plus
/// code_bias(T).
template <WeightType T>
PIECRUST_TARGET_AVX512 inline __m512i unpack_biased_pair(std::uint8_t const* blk, std::size_t p) noexcept {
  namespace o = quant::offset;
  std::size_t const g = 2 * p;
  __m512i const m3 = _mm512_set1_epi8(3), m15 = _mm512_set1_epi8(15);
  if constexpr (T == WeightType::q2_k || T == WeightType::q3_k) {
    // both groups shift the same 32 bytes, by 2 (g % 4) and 2 (g % 4) + 2
    std::size_t const qs = T == WeightType::q2_k ? o::q2_k_qs : o::q3_k_qs;
    auto const s = static_cast<short>(2 * (g % 4));
    __m512i const v = broadcast32(blk + qs + (g / 4) * 32);
    __m512i const low = _mm512_and_si512(_mm512_srlv_epi16(v, halves_epi16(s, static_cast<short>(s + 2))), m3);
    if constexpr (T == WeightType::q2_k) {
      return low;
    } else {
      __mmask64 const set = _mm512_test_epi8_mask(broadcast32(blk), halves_epi8(std::uint8_t(1u << g),
                                                                                 std::uint8_t(2u << g)));
      return _mm512_mask_add_epi8(low, set, low, _mm512_set1_epi8(4));  // code + 4
    }
  } else if constexpr (T == WeightType::q4_k || T == WeightType::q5_k) {
    std::size_t const qs = T == WeightType::q4_k ? o::q4_k_qs : o::q5_k_qs;
    __m512i const v = broadcast32(blk + qs + p * 32);  // low nibbles: group 2p, high nibbles: 2p + 1
    __m512i const low = _mm512_and_si512(_mm512_srlv_epi16(v, halves_epi16(0, 4)), m15);
    if constexpr (T == WeightType::q4_k) {
      return low;
    } else {
      __mmask64 const set = _mm512_test_epi8_mask(broadcast32(blk + o::q5_k_qh), halves_epi8(std::uint8_t(1u << g),
                                                                                              std::uint8_t(2u << g)));
      return _mm512_mask_add_epi8(low, set, low, _mm512_set1_epi8(16));
    }
  } else if constexpr (T == WeightType::q6_k) {
    // groups 2p, 2p + 1 = chunks r, r + 1 of half h: 64 contiguous low-nibble bytes, one shared qh run
    std::size_t const h = g / 4, r = g % 4;
    __m512i const lv = _mm512_inserti64x4(_mm512_castsi256_si512(avx2::load32(blk + h * 64)), avx2::load32(blk + h * 64 + 32), 1);
    __m512i const low = _mm512_and_si512(_mm512_srli_epi16(lv, static_cast<unsigned>(4 * (r / 2))), m15);
    __m512i const hv = broadcast32(blk + o::q6_k_qh + h * 32);
    auto const s = static_cast<short>(2 * r);
    __m512i const high = _mm512_and_si512(_mm512_srlv_epi16(hv, halves_epi16(s, static_cast<short>(s + 2))), m3);
    return _mm512_or_si512(low, _mm512_slli_epi16(high, 4));  // code + 32
  } else {
    static_assert(T == WeightType::iq4_xs);
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(avx2::iq4_table()), iq4_xs_pair_indices(blk, p));
  }
}

/// Codes of groups 2p and 2p + 1 of a 256-block, as quant::code gives them.
template <WeightType T>
PIECRUST_TARGET_AVX512 inline __m512i unpack_pair(std::uint8_t const* blk, std::size_t p) noexcept {
  __m512i const c = unpack_biased_pair<T>(blk, p);
  if constexpr (code_bias(T) != 0) return _mm512_sub_epi8(c, _mm512_set1_epi8(static_cast<char>(code_bias(T))));
  return c;
}

/// maddubs's unsigned operand (the code, or |code|) and the activation with the code's sign moved onto it.
template <WeightType T>
PIECRUST_TARGET_AVX512 inline __m512i weight_operand(__m512i w) noexcept {
  if constexpr (has_unsigned_codes(T)) {
    return w;
  } else {
    return _mm512_abs_epi8(w);
  }
}
template <WeightType T>
PIECRUST_TARGET_AVX512 inline __m512i activation_operand(__m512i x, __m512i w) noexcept {
  if constexpr (has_unsigned_codes(T)) {
    (void)w;
    return x;
  } else {
    return _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  }
}

/// The int16 scale of every maddubs pair of groups 2p, 2p + 1, from k_scales's vector (sub-blocks of 16:
/// sub-blocks 4p .. 4p + 3, one per 128-bit lane; of 32: sub-blocks 2p and 2p + 1, one per half).
template <std::size_t Sub>
PIECRUST_TARGET_AVX512 inline __m512i pair_scales(__m512i scales, std::size_t p) noexcept {
  __m512i base;
  if constexpr (Sub == 16) {
    base = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
                              _mm256_setr_epi16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), 1);
  } else {
    base = halves_epi16(0, 1);
  }
  auto const first = static_cast<short>(Sub == 16 ? 4 * p : 2 * p);
  return _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16(first)), scales);
}

/// The low and high halves added: eight int32 lanes.
PIECRUST_TARGET_AVX512 inline __m256i fold(__m512i v) noexcept {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/// Groups 2p, 2p + 1 of NW rows' 256-blocks (at w0 + w * row_bytes + off; sub-block scales as int16 from
/// k_scales) against M activation rows (x, row stride x_stride), added to isum: maddubs on the (biased or
/// absolute) codes, then vpdpwssd with each pair's sub-block scale.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX512 inline void k_pair(std::uint8_t const* w0, std::size_t row_bytes, std::size_t off,
                                          __m512i const (&scales)[NW], std::int8_t const* x, std::size_t x_stride,
                                          std::size_t p, __m512i (&isum)[NW][M]) noexcept {
  constexpr std::size_t sub = quant::sub_block_size(T);
  __m512i scv[NW], wc[NW], wu[NW];
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
    scv[w] = pair_scales<sub>(scales[w], p);
    if constexpr (code_bias(T) != 0) {
      wc[w] = wu[w] = unpack_biased_pair<T>(w0 + w * row_bytes + off, p);
    } else {
      wc[w] = unpack_pair<T>(w0 + w * row_bytes + off, p);
      wu[w] = weight_operand<T>(wc[w]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) {
    __m512i const xv = _mm512_loadu_si512(x + i * x_stride);
    if constexpr (code_bias(T) != 0) {
      __m512i const xb = _mm512_maddubs_epi16(_mm512_set1_epi8(static_cast<char>(code_bias(T))), xv);
#pragma GCC unroll 16
      for (std::size_t w = 0; w < NW; ++w) {
        __m512i const pr = _mm512_sub_epi16(_mm512_maddubs_epi16(wu[w], xv), xb);
        isum[w][i] = _mm512_dpwssd_epi32(isum[w][i], pr, scv[w]);
      }
    } else {
#pragma GCC unroll 16
      for (std::size_t w = 0; w < NW; ++w) {
        __m512i const pr = _mm512_maddubs_epi16(wu[w], activation_operand<T>(xv, wc[w]));
        isum[w][i] = _mm512_dpwssd_epi32(isum[w][i], pr, scv[w]);
      }
    }
  }
}

/// IQ4_XS groups 2p, 2p + 1 of NW rows' blocks (at w0 + w * row_bytes + off) against M activation rows
/// (x, row stride x_stride), added to isum. The signed codes go in as code + 128 (unsigned) to vpdpbusd,
/// whose accumulator starts at -128 * (the same activation sums), so each int32 lane gets exactly the sum
/// of code * x over its four elements, which the sub-block scale then multiplies: the AVX2 code's lane.
template <std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX512 inline void iq4_xs_pair(std::uint8_t const* w0, std::size_t row_bytes, std::size_t off,
                                               __m512i const (&scales32)[NW], std::int8_t const* x,
                                               std::size_t x_stride, std::size_t p, __m512i (&isum)[NW][M]) noexcept {
  __m512i const biased = _mm512_add_epi8(_mm512_broadcast_i32x4(avx2::iq4_table()), _mm512_set1_epi8(-128));
  __m512i const lane_sub = _mm512_inserti64x4(_mm512_set1_epi32(static_cast<int>(2 * p)),
                                              _mm256_set1_epi32(static_cast<int>(2 * p + 1)), 1);
  __m512i u[NW], sc[NW];
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
    u[w] = _mm512_shuffle_epi8(biased, iq4_xs_pair_indices(w0 + w * row_bytes + off, p));
    sc[w] = _mm512_permutexvar_epi32(lane_sub, scales32[w]);
  }
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) {
    __m512i const xv = _mm512_loadu_si512(x + i * x_stride);
    __m512i const bias = _mm512_sub_epi32(_mm512_setzero_si512(),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), xv));
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      isum[w][i] = _mm512_add_epi32(isum[w][i], _mm512_mullo_epi32(_mm512_dpbusd_epi32(bias, u[w], xv), sc[w]));
    }
  }
}

/// How far ahead of the block being read the 256-block kernels prefetch: at this speed the hardware
/// prefetchers alone leave decode well under the read bandwidth (RESULTS.md). Prefetches never fault, so
/// running past the end of the weights is harmless.
inline constexpr std::size_t prefetch_bytes = 8192;

/// Blocks of 256: out[w * out_stride + i] = dot(weight row w, activation row r0 + i), w < NW, i < M.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX512 inline void dotk_rows(std::uint8_t const* w0, std::size_t row_bytes,
                                             QuantizedActivations const& a, std::size_t r0, float* out,
                                             std::size_t out_stride) noexcept {
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
    __m512i isum[NW][M], scales[NW];
    avx2::KScales ks[NW];
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      // a line per 64 bytes: the blocks are contiguous, so a line this block's range misses is the next's
      prefetch_range(w0 + w * row_bytes + b * bytes + prefetch_bytes, bytes);
      ks[w] = avx2::k_scales<T>(w0 + w * row_bytes + b * bytes);
      // IQ4_XS multiplies int32 lanes (iq4_xs_pair), the others int16 pairs
      scales[w] = T == WeightType::iq4_xs ? _mm512_cvtepi16_epi32(ks[w].scale) : _mm512_castsi256_si512(ks[w].scale);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) isum[w][i] = _mm512_setzero_si512();
    }
#pragma GCC unroll 4
    for (std::size_t p = 0; p < 4; ++p) {
      std::int8_t const* x = a.kq.data() + r0 * a.cols + b * 256 + p * 64;
      if constexpr (T == WeightType::iq4_xs) {
        iq4_xs_pair<M, NW>(w0, row_bytes, b * bytes, scales, x, a.cols, p, isum);
      } else {
        k_pair<T, M, NW>(w0, row_bytes, b * bytes, scales, x, a.cols, p, isum);
      }
    }
#pragma GCC unroll 16
    for (std::size_t w = 0; w < NW; ++w) {
      std::uint8_t const* blk = w0 + w * row_bytes + b * bytes;
      float const dw = avx2::half_at(blk + f.at[0]);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) {
        float const dx = a.kd[(r0 + i) * nb + b];
        acc[w][i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(fold(isum[w][i])), acc[w][i]);
      }
      if constexpr (has_min_sub(T)) {
        float const dmin = avx2::half_at(blk + f.at[1]);
#pragma GCC unroll 16
        for (std::size_t i = 0; i < M; ++i) {
          int const msum = avx2::k_min_sum<T>(ks[w].min, a.kbsums.data() + ((r0 + i) * nb + b) * 16);
          sm[w][i] = std::fma(dmin * a.kd[(r0 + i) * nb + b], static_cast<float>(msum), sm[w][i]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) out[w * out_stride + i] = avx2::finish<T>(acc[w][i], sm[w][i]);
  }
}

/// Blocks of 32, two weight rows (w0 and w0 + row_bytes) per register: out[w * out_stride + i] for w < 2,
/// i < M. Each half runs the AVX2 code's lane operations for its row.
template <WeightType T, std::size_t M>
PIECRUST_TARGET_AVX512 inline void dot32_row_pair(std::uint8_t const* w0, std::size_t row_bytes,
                                                  QuantizedActivations const& a, std::size_t r0, float* out,
                                                  std::size_t out_stride) noexcept {
  std::size_t const nb = a.cols / 32, bytes = weight_block_bytes(T);
  __m512 acc[M];
  float sm[2][M];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) {
    acc[i] = _mm512_setzero_ps();
    sm[0][i] = sm[1][i] = 0.0f;
  }
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* b0 = w0 + b * bytes;
    std::uint8_t const* b1 = b0 + row_bytes;
    __m512i const wc = _mm512_inserti64x4(_mm512_castsi256_si512(avx2::unpack_group<T>(b0, 0)),
                                          avx2::unpack_group<T>(b1, 0), 1);
    __m512i const wu = weight_operand<T>(wc);
    float const d0 = avx2::half_at(b0), d1 = avx2::half_at(b1);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) {
      __m512i const x = broadcast32(a.q.data() + (r0 + i) * a.cols + b * 32);
      float const dx = a.d[(r0 + i) * nb + b];
      __m512i const p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wu, activation_operand<T>(x, wc));
      __m512 const dd = _mm512_insertf32x8(_mm512_set1_ps(d0 * dx), _mm256_set1_ps(d1 * dx), 1);
      acc[i] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(p), acc[i]);
      if constexpr (has_min_add(T)) {
        float const s = a.s[(r0 + i) * nb + b];
        sm[0][i] = std::fma(avx2::half_at(b0 + 2), s, sm[0][i]);
        sm[1][i] = std::fma(avx2::half_at(b1 + 2), s, sm[1][i]);
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) {
    out[i] = avx2::finish<T>(_mm512_castps512_ps256(acc[i]), sm[0][i]);
    out[out_stride + i] = avx2::finish<T>(_mm512_extractf32x8_ps(acc[i], 1), sm[1][i]);
  }
}

/// NW weight rows (a pair for the 32-blocks) against M activation rows from r0.
template <WeightType T, std::size_t M, std::size_t NW>
PIECRUST_TARGET_AVX512 inline void block_rows(std::uint8_t const* w0, std::size_t row_bytes,
                                              QuantizedActivations const& a, std::size_t r0, float* out,
                                              std::size_t out_stride) noexcept {
  if constexpr (uses_q8k(T)) {
    dotk_rows<T, M, NW>(w0, row_bytes, a, r0, out, out_stride);
  } else {
    static_assert(NW == 2);
    dot32_row_pair<T, M>(w0, row_bytes, a, r0, out, out_stride);
  }
}

/// All rows of `a` against NW weight rows at wr, G activation rows per pass and the rest: o [NW][a.rows].
template <WeightType T, std::size_t NW, std::size_t G>
PIECRUST_TARGET_AVX512 inline void rows_of(std::uint8_t const* wr, std::size_t row_bytes,
                                           QuantizedActivations const& a, float* o) noexcept {
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

/// All rows of `a` against nw consecutive weight rows: out [nw][a.rows]. The 256-blocks take two weight
/// rows per activation load at decode (short chains) and one at a time, four activation rows per pass,
/// otherwise; the 32-blocks go in row pairs, and an odd last row runs the AVX2 code (the same bits).
template <WeightType T>
PIECRUST_TARGET_AVX512 void quant_rows(std::uint8_t const* w0, std::size_t row_bytes, std::size_t nw,
                                       QuantizedActivations const& a, float* out) noexcept {
  std::size_t const m = a.rows;
  std::size_t w = 0;
  if constexpr (uses_q8k(T)) {
    if (m < 4) {
      for (; w + 2 <= nw; w += 2) rows_of<T, 2, 1>(w0 + w * row_bytes, row_bytes, a, out + w * m);
    }
    for (; w < nw; ++w) rows_of<T, 1, 4>(w0 + w * row_bytes, row_bytes, a, out + w * m);
  } else {
    for (; w + 2 <= nw; w += 2) rows_of<T, 2, 3>(w0 + w * row_bytes, row_bytes, a, out + w * m);
    if (w < nw) avx2::quant_rows<T>(w0 + w * row_bytes, row_bytes, nw - w, a, out + w * m);
  }
}

/// Every code of one 256-block as this path unpacks them (tests compare them with quant::code).
template <WeightType T>
PIECRUST_TARGET_AVX512 void unpack_block(std::uint8_t const* blk, std::int8_t* codes) noexcept {
  static_assert(uses_q8k(T));
  for (std::size_t p = 0; p < 4; ++p) _mm512_storeu_si512(codes + 64 * p, unpack_pair<T>(blk, p));
}

}  // namespace piecrust::detail::avx512
#pragma GCC diagnostic pop

#undef PIECRUST_TARGET_AVX512
#endif
