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

/// Nibble indices 0..15 -> the IQ4 code book values (quant::iq4_value).
PIECRUST_TARGET_AVX2 inline __m256i iq4_lookup(__m256i idx) noexcept {
  static constexpr auto table = [] {
    struct T {
      std::int8_t v[16];
    } t{};
    for (unsigned k = 0; k < 16; ++k) t.v[k] = quant::iq4_value(k);
    return t;
  }();
  __m256i const tab = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<__m128i const*>(table.v)));
  return _mm256_shuffle_epi8(tab, idx);
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

template <WeightType T>
PIECRUST_TARGET_AVX2 inline float finish(__m256 acc, float sm) noexcept {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  return finish_dot(T, lanes, sm);
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

/// Blocks of 256: out[i] = dot(the weight row, activation row r0 + i), i < M.
template <WeightType T, std::size_t M>
PIECRUST_TARGET_AVX2 inline void dotk_rows(std::uint8_t const* wrow, QuantizedActivations const& a, std::size_t r0,
                                           float* out) noexcept {
  constexpr std::size_t sub = quant::sub_block_size(T), nsub = 256 / sub;
  constexpr quant::HalfFields f = quant::f16_fields(T);
  std::size_t const nb = a.cols / 256, bytes = weight_block_bytes(T);
  __m256 acc[M];
  float sm[M];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) {
    acc[i] = _mm256_setzero_ps();
    sm[i] = 0.0f;
  }
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* blk = wrow + b * bytes;
    int sc[nsub], mn[nsub];
#pragma GCC unroll 16
    for (std::size_t j = 0; j < nsub; ++j) {
      quant::ScaleMin const s = quant::integer_scale_min(T, blk, j);
      sc[j] = s.scale;
      mn[j] = s.min;
    }
    __m256i isum[M];
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) isum[i] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (std::size_t g = 0; g < 8; ++g) {
      __m256i scv;  // int16 scale of each maddubs pair: elements 0..15 and 16..31 of the group
      if constexpr (sub == 16) {
        scv = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(sc[2 * g + 1])),
                               _mm_set1_epi16(static_cast<short>(sc[2 * g])));
      } else {
        scv = _mm256_set1_epi16(static_cast<short>(sc[g]));
      }
      __m256i const wc = unpack_group<T>(blk, g), wu = weight_operand<T>(wc);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) {
        __m256i const x = load32(a.kq.data() + (r0 + i) * a.cols + b * 256 + g * 32);
        __m256i const p = _mm256_maddubs_epi16(wu, activation_operand<T>(x, wc));
        isum[i] = _mm256_add_epi32(isum[i], _mm256_madd_epi16(p, scv));
      }
    }
    float const dw = half_at(blk + f.at[0]);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < M; ++i) {
      float const dx = a.kd[(r0 + i) * nb + b];
      acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(isum[i]), acc[i]);
    }
    if constexpr (has_min_sub(T)) {
      float const dmin = half_at(blk + f.at[1]);
#pragma GCC unroll 16
      for (std::size_t i = 0; i < M; ++i) {
        std::int16_t const* bs = a.kbsums.data() + ((r0 + i) * nb + b) * 16;
        int msum = 0;
#pragma GCC unroll 16
        for (std::size_t j = 0; j < nsub; ++j) {
          int const bsum = sub == 16 ? bs[j] : bs[2 * j] + bs[2 * j + 1];
          msum += mn[j] * bsum;
        }
        sm[i] = std::fma(dmin * a.kd[(r0 + i) * nb + b], static_cast<float>(msum), sm[i]);
      }
    }
  }
#pragma GCC unroll 16
  for (std::size_t i = 0; i < M; ++i) out[i] = finish<T>(acc[i], sm[i]);
}

/// All rows of `a` against nw consecutive weight rows: out [nw][a.rows].
template <WeightType T>
PIECRUST_TARGET_AVX2 void quant_rows(std::uint8_t const* w0, std::size_t row_bytes, std::size_t nw,
                                     QuantizedActivations const& a, float* out) noexcept {
  std::size_t const m = a.rows;
  if constexpr (uses_q8k(T)) {
    constexpr std::size_t G = 4;
    for (std::size_t w = 0; w < nw; ++w) {
      std::uint8_t const* wr = w0 + w * row_bytes;
      float* o = out + w * m;
      std::size_t r = 0;
      for (; r + G <= m; r += G) dotk_rows<T, G>(wr, a, r, o + r);
      switch (m - r) {
        case 3: dotk_rows<T, 3>(wr, a, r, o + r); break;
        case 2: dotk_rows<T, 2>(wr, a, r, o + r); break;
        case 1: dotk_rows<T, 1>(wr, a, r, o + r); break;
        default: break;
      }
    }
  } else {
    auto rows = [&]<std::size_t NW, std::size_t G>(std::uint8_t const* wr, float* o) {
      std::size_t r = 0;
      for (; r + G <= m; r += G) dot32_rows<T, G, NW>(wr, row_bytes, a, r, o + r, m);
      switch (m - r) {
        case 3: dot32_rows<T, 3, NW>(wr, row_bytes, a, r, o + r, m); break;
        case 2: dot32_rows<T, 2, NW>(wr, row_bytes, a, r, o + r, m); break;
        case 1: dot32_rows<T, 1, NW>(wr, row_bytes, a, r, o + r, m); break;
        default: break;
      }
    };
    std::size_t w = 0;
    for (; w + 2 <= nw; w += 2) rows.template operator()<2, 3>(w0 + w * row_bytes, out + w * m);
    for (; w < nw; ++w) rows.template operator()<1, 4>(w0 + w * row_bytes, out + w * m);
  }
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
