#pragma once
// The decode form of the integer matmul for the block-of-32 types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL):
// rows re-laid out in groups of 8, interleaved 4 elements at a time, so one 32-bit lane per row. The chunk
// of elements 4t..4t+3 of the group's 8 rows is one register, and maddubs + madd against the broadcast
// activation chunk give P[t] of quant_dot.hpp for the 8 rows at once: lane l of quant_dot.hpp's
// accumulators becomes register t, lane r the row. The same IEEE operations happen per row as in the
// row-major code, so the bits are the same (and a row's result never depends on its batch), while the
// unpacking and scale work is shared by 8 rows.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/backends/host/detail/quant_activations.hpp"
#include "piecrust/backends/host/detail/quant_dot_avx2.hpp"
#include "piecrust/backends/host/detail/quant_dot_avx512.hpp"
#include "piecrust/backends/host/detail/quant_gemm.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>
#endif

namespace piecrust::detail {

inline constexpr std::size_t interleaved_group_rows = 8;

/// A block-of-32 matrix in groups of 8 rows (the last group padded with zero rows). Group block (one
/// block of 32 columns of the group's 8 rows), in this order, each field only where the type has it:
///   d [8] f16; m [8] f16 (Q4_1, Q5_1); qh [8] u32, the fifth bits (Q5_0, Q5_1);
///   codes: 4-bit types [4 chunks p][8 rows][GGUF nibble bytes 4p..4p+3] (low nibbles: elements 4p..,
///          high nibbles: elements 16 + 4p..); Q8_0 [8 chunks t][8 rows][elements 4t..4t+3].
struct InterleavedQuant {
  WeightType type = WeightType::q4_1;
  std::size_t rows = 0, cols = 0, groups = 0;
  std::vector<std::uint8_t> data;  // [groups][cols / 32][group_block_bytes()]

  [[nodiscard]] static constexpr bool supports(WeightType t) noexcept {
    return t == WeightType::q4_0 || t == WeightType::q4_1 || t == WeightType::q5_0 || t == WeightType::q5_1 ||
           t == WeightType::q8_0 || t == WeightType::iq4_nl;
  }
  [[nodiscard]] static constexpr bool has_high_bits(WeightType t) noexcept {
    return t == WeightType::q5_0 || t == WeightType::q5_1;
  }
  /// Byte offsets inside a group block.
  [[nodiscard]] static constexpr std::size_t qh_offset(WeightType t) noexcept { return has_min_add(t) ? 32 : 16; }
  [[nodiscard]] static constexpr std::size_t codes_offset(WeightType t) noexcept {
    return qh_offset(t) + (has_high_bits(t) ? 32 : 0);
  }
  [[nodiscard]] static constexpr std::size_t group_block_bytes(WeightType t) noexcept {
    return codes_offset(t) + (t == WeightType::q8_0 ? 256 : 128);
  }
  [[nodiscard]] std::size_t group_block_bytes() const noexcept { return group_block_bytes(type); }
  [[nodiscard]] std::uint8_t const* group(std::size_t g) const noexcept {
    return data.data() + g * (cols / 32) * group_block_bytes();
  }

  [[nodiscard]] static InterleavedQuant from(WeightMatrix const& w) {
    if (!supports(w.type)) {
      fail<InvalidArgument>("InterleavedQuant: weight type ", weight_type_name(w.type),
                            " is not one of q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl");
    }
    InterleavedQuant p;
    p.type = w.type;
    p.rows = w.rows;
    p.cols = w.cols;
    p.groups = (w.rows + interleaved_group_rows - 1) / interleaved_group_rows;
    std::size_t const nb = w.cols / 32, gbb = p.group_block_bytes(), src_block = weight_block_bytes(w.type);
    // source block: d, then m, then qh (where present), then the codes
    std::size_t const src_qh = has_min_add(w.type) ? 4 : 2;
    std::size_t const src_codes = src_qh + (has_high_bits(w.type) ? 4 : 0);
    std::size_t const qh = qh_offset(w.type), codes = codes_offset(w.type);
    std::size_t const chunks = w.type == WeightType::q8_0 ? 8 : 4;
    p.data.assign(p.groups * nb * gbb, 0);  // padding rows: d = m = 0, codes 0
    for (std::size_t row = 0; row < w.rows; ++row) {
      std::size_t const g = row / interleaved_group_rows, r = row % interleaved_group_rows;
      for (std::size_t b = 0; b < nb; ++b) {
        auto const* src = reinterpret_cast<std::uint8_t const*>(w.row(row)) + b * src_block;
        std::uint8_t* dst = p.data.data() + (g * nb + b) * gbb;
        std::memcpy(dst + 2 * r, src, 2);
        if (has_min_add(w.type)) std::memcpy(dst + 16 + 2 * r, src + 2, 2);
        if (has_high_bits(w.type)) std::memcpy(dst + qh + 4 * r, src + src_qh, 4);
        for (std::size_t c = 0; c < chunks; ++c) std::memcpy(dst + codes + (c * 8 + r) * 4, src + src_codes + 4 * c, 4);
      }
    }
    return p;
  }
};

#if PIECRUST_HOST_X86
#define PIECRUST_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))

/// The 4 int8 at p in every 32-bit lane.
PIECRUST_TARGET_AVX2 inline __m256i interleaved_chunk(std::int8_t const* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/// The fifth bits (0 or 16) of one nibble register of Q5_0 / Q5_1: byte k of row lane r is bit 8 * B + 4 * N + k
/// of the row's qh word (B = byte of qh, N = its nibble).
template <int B, int N>
PIECRUST_TARGET_AVX2 inline __m256i fifth_bits(__m256i qh) noexcept {
  __m256i const pick = _mm256_setr_epi8(B, B, B, B, 4 + B, 4 + B, 4 + B, 4 + B, 8 + B, 8 + B, 8 + B, 8 + B, 12 + B,
                                        12 + B, 12 + B, 12 + B, B, B, B, B, 4 + B, 4 + B, 4 + B, 4 + B, 8 + B, 8 + B,
                                        8 + B, 8 + B, 12 + B, 12 + B, 12 + B, 12 + B);
  __m256i const bit = _mm256_set1_epi32(static_cast<int>(0x08040201u << (4 * N)));
  __m256i const set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, pick), bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

/// P[t] of quant_dot.hpp for the 8 rows: codes u (as the register holds them: nibbles with their fifth bit,
/// or Q8_0 bytes) against the broadcast activation chunk x.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline __m256i chunk_products(__m256i u, __m256i x) noexcept {
  __m256i c = u;  // the codes as quant::code gives them
  if constexpr (T == WeightType::q4_0) {
    c = _mm256_sub_epi8(u, _mm256_set1_epi8(8));
  } else if constexpr (T == WeightType::q5_0) {
    c = _mm256_sub_epi8(u, _mm256_set1_epi8(16));
  } else if constexpr (T == WeightType::iq4_nl) {
    c = avx2::iq4_lookup(u);
  }
  __m256i const p = _mm256_maddubs_epi16(avx2::weight_operand<T>(c), avx2::activation_operand<T>(x, c));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/// Nibble register C of a 4-bit group block (elements 4C.. and 16 + 4C.. of the 8 rows) into acc[C], acc[4 + C].
template <WeightType T, int C>
PIECRUST_TARGET_AVX2 inline void nibble_chunk(std::uint8_t const* codes, __m256i qh, std::int8_t const* x, __m256 dd,
                                              __m256* acc) noexcept {
  __m256i const low = _mm256_set1_epi8(0x0f);
  __m256i const raw = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(codes + 32 * C));
  __m256i lo = _mm256_and_si256(raw, low);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
  if constexpr (InterleavedQuant::has_high_bits(T)) {
    lo = _mm256_or_si256(lo, fifth_bits<C / 2, C % 2>(qh));
    hi = _mm256_or_si256(hi, fifth_bits<2 + C / 2, C % 2>(qh));
  } else {
    (void)qh;
  }
  __m256i const plo = chunk_products<T>(lo, interleaved_chunk(x + 4 * C));
  __m256i const phi = chunk_products<T>(hi, interleaved_chunk(x + 16 + 4 * C));
  acc[C] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(plo), acc[C]);
  acc[4 + C] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(phi), acc[4 + C]);
}

/// out [8] = the group's 8 row results for activation row i, in quant_dot.hpp's order.
template <WeightType T>
PIECRUST_TARGET_AVX2 inline void interleaved_dot_avx2(InterleavedQuant const& w, std::size_t g,
                                                      QuantizedActivations const& a, std::size_t i,
                                                      float* out) noexcept {
  constexpr std::size_t gbb = InterleavedQuant::group_block_bytes(T), codes = InterleavedQuant::codes_offset(T);
  constexpr std::size_t qh_at = InterleavedQuant::qh_offset(T);
  std::size_t const nb = a.cols / 32;
  std::uint8_t const* grp = w.group(g);
  std::int8_t const* xq = a.q.data() + i * a.cols;
  __m256 acc[8];
#pragma GCC unroll 8
  for (std::size_t t = 0; t < 8; ++t) acc[t] = _mm256_setzero_ps();
  __m256 sm = _mm256_setzero_ps();
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* blk = grp + b * gbb;
    std::int8_t const* x = xq + b * 32;
    // dw * dx rounded per lane: the row-major code's scalar product
    __m256 const dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk))),
                                    _mm256_set1_ps(a.d[i * nb + b]));
    if constexpr (T == WeightType::q8_0) {
#pragma GCC unroll 8
      for (std::size_t t = 0; t < 8; ++t) {
        __m256i const v = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + codes + 32 * t));
        acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(chunk_products<T>(v, interleaved_chunk(x + 4 * t))), acc[t]);
      }
    } else {
      __m256i qh = _mm256_setzero_si256();
      if constexpr (InterleavedQuant::has_high_bits(T)) {
        qh = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + qh_at));
      }
      nibble_chunk<T, 0>(blk + codes, qh, x, dd, acc);
      nibble_chunk<T, 1>(blk + codes, qh, x, dd, acc);
      nibble_chunk<T, 2>(blk + codes, qh, x, dd, acc);
      nibble_chunk<T, 3>(blk + codes, qh, x, dd, acc);
      if constexpr (has_min_add(T)) {
        __m256 const mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + 16)));
        sm = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[i * nb + b]), sm);
      }
    }
  }
  __m256 h = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                           _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  if constexpr (has_min_add(T)) h = _mm256_add_ps(h, sm);
  _mm256_storeu_ps(out, h);
}

// GCC 12's AVX-512 intrinsics self-initialise their "undefined" operands, which -Wmaybe-uninitialized
// reports after inlining (fixed in GCC 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning (clang would warn about the unknown name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define PIECRUST_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

// AVX-512: chunk registers t and t + 1 of the 8 rows side by side in one zmm (the two halves), so every
// per-row, per-chunk operation is the AVX2 code's, two chunks at a time, with vpdpbusd for the products
// (exact, as maddubs + madd are here; quant_dot_avx512.hpp).

/// The fifth bits of nibble registers C and C + 1 (C even; low nibbles when High is false): byte B of each
/// row's qh word with B = C / 2 (+ 2 for the high nibbles), its low nibble's bits for register C and its
/// high nibble's for C + 1 (fifth_bits's rule).
template <int C, bool High>
PIECRUST_TARGET_AVX512 inline __mmask64 fifth_bit_pair(__m512i qh) noexcept {
  constexpr int B = C / 2 + (High ? 2 : 0);
  __m512i const pick = _mm512_broadcast_i32x4(_mm_setr_epi8(B, B, B, B, 4 + B, 4 + B, 4 + B, 4 + B, 8 + B, 8 + B,
                                                            8 + B, 8 + B, 12 + B, 12 + B, 12 + B, 12 + B));
  __m512i const bit = _mm512_inserti64x4(_mm512_set1_epi32(0x08040201), _mm256_set1_epi32(static_cast<int>(0x80402010u)), 1);
  return _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, pick), bit);
}

/// The codes of chunk registers as quant::code gives them, from the register values u (nibbles with their
/// fifth bit, or Q8_0 bytes).
template <WeightType T>
PIECRUST_TARGET_AVX512 inline __m512i chunk_codes(__m512i u) noexcept {
  if constexpr (T == WeightType::q4_0) {
    return _mm512_sub_epi8(u, _mm512_set1_epi8(8));
  } else if constexpr (T == WeightType::q5_0) {
    return _mm512_sub_epi8(u, _mm512_set1_epi8(16));
  } else if constexpr (T == WeightType::iq4_nl) {
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(avx2::iq4_table()), u);
  } else {
    return u;
  }
}

/// Rows i0 .. i0 + M of the activations against group g: out [M][8], each row in quant_dot.hpp's order.
/// A group block's four code registers (chunk pairs; their |code| and sign masks) are unpacked once for
/// the M rows. Code register k holds chunk pair (first[k], first[k] + 1) of the activation dwords and
/// accumulates into acc[slot[k]] = [acc[2 slot] | acc[2 slot + 1]] of the AVX2 code's accumulators.
template <WeightType T, std::size_t M>
PIECRUST_TARGET_AVX512 inline void interleaved_rows_avx512(InterleavedQuant const& w, std::size_t g,
                                                           QuantizedActivations const& a, std::size_t i0,
                                                           float* out) noexcept {
  constexpr std::size_t gbb = InterleavedQuant::group_block_bytes(T), codes = InterleavedQuant::codes_offset(T);
  constexpr std::size_t qh_at = InterleavedQuant::qh_offset(T);
  constexpr bool q8 = T == WeightType::q8_0;
  // 4-bit: registers = low nibbles of chunks 0-1, their high nibbles, low of 2-3, high of 2-3
  constexpr int first[4] = {q8 ? 0 : 0, q8 ? 2 : 4, q8 ? 4 : 2, q8 ? 6 : 6};
  constexpr int slot[4] = {0, q8 ? 1 : 2, q8 ? 2 : 1, 3};
  std::size_t const nb = a.cols / 32;
  std::uint8_t const* grp = w.group(g);
  __m512i pick[4];  // [register] dword indices of its chunk pair
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) pick[k] = _mm512_inserti64x4(_mm512_set1_epi32(first[k]), _mm256_set1_epi32(first[k] + 1), 1);
  __m512 acc[M][4];
  __m256 sm[M];
#pragma GCC unroll 4
  for (std::size_t i = 0; i < M; ++i) {
    sm[i] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (std::size_t k = 0; k < 4; ++k) acc[i][k] = _mm512_setzero_ps();
  }
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* blk = grp + b * gbb;
    avx512::prefetch_range(blk + avx512::prefetch_bytes, gbb);
    __m512i u[4];  // [register] codes as stored
    if constexpr (q8) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) u[k] = _mm512_loadu_si512(blk + codes + 64 * k);
    } else {
      __m512i const low = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m512i const raw = _mm512_loadu_si512(blk + codes + 64 * h);
        u[2 * h] = _mm512_and_si512(raw, low);
        u[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
      }
      if constexpr (InterleavedQuant::has_high_bits(T)) {
        __m512i const qh = avx512::broadcast32(blk + qh_at);
        __m512i const sixteen = _mm512_set1_epi8(16);
        u[0] = _mm512_mask_add_epi8(u[0], fifth_bit_pair<0, false>(qh), u[0], sixteen);
        u[1] = _mm512_mask_add_epi8(u[1], fifth_bit_pair<0, true>(qh), u[1], sixteen);
        u[2] = _mm512_mask_add_epi8(u[2], fifth_bit_pair<2, false>(qh), u[2], sixteen);
        u[3] = _mm512_mask_add_epi8(u[3], fifth_bit_pair<2, true>(qh), u[3], sixteen);
      }
    }
    __m512i wu[4];     // [register] maddubs-style unsigned operand
    __mmask64 neg[4];  // [register] codes < 0
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i const c = chunk_codes<T>(u[k]);
      wu[k] = avx512::weight_operand<T>(c);
      neg[k] = has_unsigned_codes(T) ? __mmask64{0} : _mm512_movepi8_mask(c);
    }
    __m256 const dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk)));
    __m256 mw = _mm256_setzero_ps();
    if constexpr (has_min_add(T)) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + 16)));
#pragma GCC unroll 4
    for (std::size_t i = 0; i < M; ++i) {
      std::size_t const row = i0 + i;
      __m512i const xv = _mm512_castsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<__m256i const*>(a.q.data() + row * a.cols + b * 32)));
      // dw * dx rounded per lane: the row-major code's scalar product
      __m256 const dd8 = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[row * nb + b]));
      __m512 const dd = _mm512_insertf32x8(_mm512_castps256_ps512(dd8), dd8, 1);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        __m512i x = _mm512_permutexvar_epi32(pick[k], xv);
        if constexpr (!has_unsigned_codes(T)) x = _mm512_mask_sub_epi8(x, neg[k], _mm512_setzero_si512(), x);
        __m512i const p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wu[k], x);
        acc[i][slot[k]] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(p), acc[i][slot[k]]);
      }
      if constexpr (has_min_add(T)) sm[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[row * nb + b]), sm[i]);
    }
  }
#pragma GCC unroll 4
  for (std::size_t i = 0; i < M; ++i) {
    // [(a0 + a4) + (a2 + a6) | (a1 + a5) + (a3 + a7)], then the halves: the AVX2 code's sum tree
    __m512 const v = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][2]), _mm512_add_ps(acc[i][1], acc[i][3]));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    if constexpr (has_min_add(T)) h = _mm256_add_ps(h, sm[i]);
    _mm256_storeu_ps(out + 8 * i, h);
  }
}

/// Rows i0 .. i0 + m against group g: out [m][8]; four rows per pass, then the rest.
template <WeightType T>
PIECRUST_TARGET_AVX512 void interleaved_dot_avx512(InterleavedQuant const& w, std::size_t g,
                                                   QuantizedActivations const& a, std::size_t i0, std::size_t m,
                                                   float* out) noexcept {
  std::size_t i = 0;
  for (; i + 4 <= m; i += 4) interleaved_rows_avx512<T, 4>(w, g, a, i0 + i, out + 8 * i);
  switch (m - i) {
    case 3: interleaved_rows_avx512<T, 3>(w, g, a, i0 + i, out + 8 * i); break;
    case 2: interleaved_rows_avx512<T, 2>(w, g, a, i0 + i, out + 8 * i); break;
    case 1: interleaved_rows_avx512<T, 1>(w, g, a, i0 + i, out + 8 * i); break;
    default: break;
  }
}

/// The AVX2 kernel over rows i0 .. i0 + m: out [m][8].
template <WeightType T>
PIECRUST_TARGET_AVX2 void interleaved_dot_rows_avx2(InterleavedQuant const& w, std::size_t g,
                                                    QuantizedActivations const& a, std::size_t i0, std::size_t m,
                                                    float* out) noexcept {
  for (std::size_t i = 0; i < m; ++i) interleaved_dot_avx2<T>(w, g, a, i0 + i, out + 8 * i);
}

/// (weights, group, activations, first row, rows, out [rows][8])
using InterleavedDotFn = void (*)(InterleavedQuant const&, std::size_t, QuantizedActivations const&, std::size_t,
                                  std::size_t, float*) noexcept;

template <WeightType T>
[[nodiscard]] InterleavedDotFn interleaved_dot_for(SimdLevel level) noexcept {
  if (level == SimdLevel::avx512) return &interleaved_dot_avx512<T>;
  return &interleaved_dot_rows_avx2<T>;
}

[[nodiscard]] inline InterleavedDotFn interleaved_dot_fn(WeightType t, SimdLevel level) noexcept {
  switch (t) {
    case WeightType::q4_0: return interleaved_dot_for<WeightType::q4_0>(level);
    case WeightType::q4_1: return interleaved_dot_for<WeightType::q4_1>(level);
    case WeightType::q5_0: return interleaved_dot_for<WeightType::q5_0>(level);
    case WeightType::q5_1: return interleaved_dot_for<WeightType::q5_1>(level);
    case WeightType::iq4_nl: return interleaved_dot_for<WeightType::iq4_nl>(level);
    default: return interleaved_dot_for<WeightType::q8_0>(level);
  }
}
#undef PIECRUST_TARGET_AVX512
#pragma GCC diagnostic pop
#undef PIECRUST_TARGET_AVX2
#endif

struct InterleavedQuantOutput {
  InterleavedQuant const* w = nullptr;
  float* y = nullptr;  // [m][w->rows]
  float beta = 0.0f;
};

/// Whether the interleaved kernels run at this level (AVX2 and above).
[[nodiscard]] inline bool interleaved_quant_available(SimdLevel level) noexcept {
  return PIECRUST_HOST_X86 && level != SimdLevel::scalar && cpu_supports(level);
}

/// Several interleaved products of the same activations in one parallel loop over their row groups, at
/// `level` (avx2 or avx512: the same bits).
template <class ParallelFor>
void interleaved_quant_gemm_many(ParallelFor&& parallel_for, QuantizedActivations const& a,
                                 std::span<InterleavedQuantOutput const> outs, SimdLevel level = best_quant_level()) {
  if (!interleaved_quant_available(level)) {
    fail<Unsupported>("interleaved_quant_gemm: level ", simd_level_name(level), " is not available here (needs AVX2)");
  }
  std::vector<std::size_t> start{0};  // [outs + 1] first global group of each output
  for (auto const& o : outs) {
    if (a.cols != o.w->cols || !a.has_q8) {
      fail<InvalidArgument>("interleaved_quant_gemm: activations [", a.rows, "][", a.cols, "] vs weights [",
                            o.w->rows, "][", o.w->cols, "]");
    }
    start.push_back(start.back() + o.w->groups);
  }
#if PIECRUST_HOST_X86
  std::vector<InterleavedDotFn> fns;  // [outs]
  for (auto const& o : outs) fns.push_back(interleaved_dot_fn(o.w->type, level));
  parallel_for(start.back(), [&](std::size_t begin, std::size_t end) {
    std::size_t k = 0;
    for (std::size_t gg = begin; gg < end; ++gg) {
      while (gg >= start[k + 1]) ++k;
      auto const& o = outs[k];
      std::size_t const g = gg - start[k], r0 = g * interleaved_group_rows;
      std::size_t const nr = std::min(interleaved_group_rows, o.w->rows - r0);
      constexpr std::size_t rows_per_call = 64;
      for (std::size_t i0 = 0; i0 < a.rows; i0 += rows_per_call) {
        std::size_t const mi = std::min(rows_per_call, a.rows - i0);
        float tmp[rows_per_call * interleaved_group_rows];  // [mi][8]
        fns[k](*o.w, g, a, i0, mi, tmp);
        for (std::size_t i = 0; i < mi; ++i) {
          float* yr = o.y + (i0 + i) * o.w->rows + r0;
          float const* t = tmp + i * interleaved_group_rows;
          for (std::size_t r = 0; r < nr; ++r) yr[r] = o.beta == 0.0f ? t[r] : o.beta * yr[r] + t[r];
        }
      }
    }
  });
#else
  (void)parallel_for;
#endif
}

}  // namespace piecrust::detail
