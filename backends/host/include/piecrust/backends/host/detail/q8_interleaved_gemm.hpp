#pragma once
// y = beta * y + x W^T for Q4_1 / Q8_0 weights re-laid out in groups of 8 rows, with x quantized to
// 8-bit blocks (Q8Activations): the decode-speed form of q8_activation_gemm.
//
// Why a second layout. In GGUF order one row's block is contiguous, so a SIMD register holds one row and
// every block of every row pays its own int -> float conversion, scale product and FMA, plus a pairwise
// widening (vpmaddwd) per block: on an AVX2 core that float tail is half the work. Here the 8 rows of a
// group are interleaved 4 elements at a time (one 32-bit lane per row), so
//   * one vpmaddubsw multiplies 4 elements of 8 rows by the same 4 activations (broadcast),
//   * Q4_1's 8 steps of a block sum in int16 lanes without overflow (16 products of at most 15 * 127),
//     then one vpmaddwd widens them: 1/8 of the widening of the row-major code,
//   * the 8 lanes of the result are the 8 rows, so the conversion, the scale product (8 row scales from
//     one 16-byte load) and the FMA are paid once per group, not once per row.
// Q4_1 needs no byte shuffling: byte j of a GGUF Q4_1 block holds elements j (low nibble) and j + 16
// (high), so 4-byte chunks of the 8 rows are simply interleaved.
//
// Arithmetic per output row r of a group (for each block b, in block order):
//   S = sum_j w[r][j] * xq[j] (exact, int32);  acc = fma(float(S), d_w * d_x, acc);
//   Q4_1 also: sm = fma(m_w, s_x, sm);  result = acc + sm.
// The AVX2 code does exactly these IEEE operations lane by lane, so it gives the scalar code's bits, and
// a row's result never depends on the other rows of the batch (batch invariance). The summation order is
// not llama.cpp's (8 partial lanes per row there), which is why LlamaModel keeps the row-major code when
// it reproduces llama.cpp bit for bit.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/weight_matrix.hpp>
#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/backends/host/detail/q8_activation_gemm.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace piecrust::detail {

/// Rows per interleaved group.
inline constexpr std::size_t interleave_rows = 8;

/// A Q4_1 or Q8_0 matrix in groups of 8 rows (rows padded to a multiple of 8 with zero weights).
/// Group block (one block of 32 columns of the group's 8 rows):
///   Q4_1 (160 bytes): d [8] f16, m [8] f16, qs [4 steps][8 rows][4 bytes] (GGUF nibble bytes 4p..4p+3);
///   Q8_0 (272 bytes): d [8] f16, qs [8 steps][8 rows][4 int8] (elements 4t..4t+3).
struct InterleavedWeights {
  WeightType type = WeightType::q4_1;
  std::size_t rows = 0, cols = 0;
  std::size_t groups = 0;        // ceil(rows / 8)
  std::vector<std::byte> data;   // [groups][cols / 32][group_block_bytes()]

  [[nodiscard]] static constexpr std::size_t group_block_bytes(WeightType t) noexcept {
    return t == WeightType::q4_1 ? 16 + 16 + 128 : 16 + 256;
  }
  [[nodiscard]] std::size_t group_block_bytes() const noexcept { return group_block_bytes(type); }
  [[nodiscard]] std::size_t blocks() const noexcept { return cols / 32; }
  [[nodiscard]] std::byte const* group(std::size_t g) const noexcept {
    return data.data() + g * blocks() * group_block_bytes();
  }

  /// Copies w (Q4_1 or Q8_0) into the interleaved layout.
  [[nodiscard]] static InterleavedWeights from(WeightMatrix const& w) {
    if (w.type != WeightType::q4_1 && w.type != WeightType::q8_0) {
      fail<InvalidArgument>("InterleavedWeights: weight type ", weight_type_name(w.type), " is not q4_1 or q8_0");
    }
    InterleavedWeights p;
    p.type = w.type;
    p.rows = w.rows;
    p.cols = w.cols;
    p.groups = (w.rows + interleave_rows - 1) / interleave_rows;
    std::size_t const nb = w.cols / 32, gbb = p.group_block_bytes();
    p.data.assign(p.groups * nb * gbb, std::byte{0});  // padding rows: d = m = 0, weights 0
    std::size_t const src_block = weight_block_bytes(w.type);
    for (std::size_t row = 0; row < w.rows; ++row) {
      std::size_t const g = row / interleave_rows, r = row % interleave_rows;
      for (std::size_t b = 0; b < nb; ++b) {
        std::byte const* src = w.row(row) + b * src_block;
        std::byte* dst = p.data.data() + (g * nb + b) * gbb;
        std::memcpy(dst + 2 * r, src, 2);  // d
        if (w.type == WeightType::q4_1) {
          std::memcpy(dst + 16 + 2 * r, src + 2, 2);  // m
          for (std::size_t s = 0; s < 4; ++s) std::memcpy(dst + 32 + (s * 8 + r) * 4, src + 4 + 4 * s, 4);
        } else {
          for (std::size_t s = 0; s < 8; ++s) std::memcpy(dst + 16 + (s * 8 + r) * 4, src + 2 + 4 * s, 4);
        }
      }
    }
    return p;
  }
};

/// out [8] = the group's 8 row results for activation row i (portable; the AVX2 code's oracle).
inline void interleaved_dot_scalar(InterleavedWeights const& w, std::size_t g, Q8Activations const& a, std::size_t i,
                                   float* out) noexcept {
  std::size_t const nb = w.blocks(), gbb = w.group_block_bytes();
  std::int8_t const* xq = a.q.data() + i * a.cols;
  float acc[interleave_rows] = {}, sm[interleave_rows] = {};
  for (std::size_t b = 0; b < nb; ++b) {
    auto const* blk = reinterpret_cast<unsigned char const*>(w.group(g) + b * gbb);
    float const dx = a.d[i * nb + b];
    for (std::size_t r = 0; r < interleave_rows; ++r) {
      std::uint16_t hd;
      std::memcpy(&hd, blk + 2 * r, 2);
      std::int32_t s = 0;
      if (w.type == WeightType::q4_1) {
        for (std::size_t p = 0; p < 4; ++p) {
          for (std::size_t e = 0; e < 4; ++e) {
            unsigned const byte = blk[32 + (p * 8 + r) * 4 + e];
            s += static_cast<std::int32_t>(byte & 0x0f) * xq[b * 32 + 4 * p + e];
            s += static_cast<std::int32_t>(byte >> 4) * xq[b * 32 + 16 + 4 * p + e];
          }
        }
        std::uint16_t hm;
        std::memcpy(&hm, blk + 16 + 2 * r, 2);
        sm[r] = std::fma(f16_to_f32(hm), a.s[i * nb + b], sm[r]);
      } else {
        for (std::size_t t = 0; t < 8; ++t) {
          for (std::size_t e = 0; e < 4; ++e) {
            s += static_cast<std::int32_t>(static_cast<std::int8_t>(blk[16 + (t * 8 + r) * 4 + e])) * xq[b * 32 + 4 * t + e];
          }
        }
      }
      acc[r] = std::fma(static_cast<float>(s), f16_to_f32(hd) * dx, acc[r]);
    }
  }
  for (std::size_t r = 0; r < interleave_rows; ++r) out[r] = acc[r] + sm[r];
}

#if PIECRUST_MODEL_X86
/// The 4 int8 at p in every 32-bit lane.
__attribute__((target("avx2"))) inline __m256i broadcast4_avx2(std::int8_t const* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/// out [MR][8] = the group's 8 row results for activation rows r0 .. r0 + MR - 1: each weight chunk is
/// unpacked once for the MR rows.
template <WeightType Type, std::size_t MR>
__attribute__((target("avx2,fma,f16c"))) inline void interleaved_dot_avx2(InterleavedWeights const& w, std::size_t g,
                                                                           Q8Activations const& a, std::size_t r0,
                                                                           float* out) noexcept {
  static_assert(MR >= 1 && MR <= 3);
  std::size_t const nb = w.blocks(), gbb = w.group_block_bytes(), cols = a.cols;
  std::byte const* grp = w.group(g);
  __m256 acc[MR], sm[MR];
#pragma GCC unroll 4
  for (std::size_t i = 0; i < MR; ++i) {
    acc[i] = _mm256_setzero_ps();
    sm[i] = _mm256_setzero_ps();
  }
  __m256i const ones = _mm256_set1_epi16(1);
  __m256i const low = _mm256_set1_epi8(0x0f);
  std::int8_t const* xq = a.q.data() + r0 * cols;
  for (std::size_t b = 0; b < nb; ++b) {
    std::byte const* blk = grp + b * gbb;
    __m256 const dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk)));
    __m256 mw = _mm256_setzero_ps();  // Q4_1's 8 row minimums
    if constexpr (Type == WeightType::q4_1) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + 16)));
    __m256i s[MR];
    if constexpr (Type == WeightType::q4_1) {
      __m256i s16[MR];
#pragma GCC unroll 4
      for (std::size_t i = 0; i < MR; ++i) s16[i] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (std::size_t p = 0; p < 4; ++p) {
        __m256i const raw = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + 32 + 32 * p));
        __m256i const lo = _mm256_and_si256(raw, low);                         // elements 4p .. 4p + 3
        __m256i const hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);  // elements 16 + 4p ..
#pragma GCC unroll 4
        for (std::size_t i = 0; i < MR; ++i) {
          s16[i] = _mm256_add_epi16(s16[i], _mm256_maddubs_epi16(lo, broadcast4_avx2(xq + i * cols + b * 32 + 4 * p)));
          s16[i] = _mm256_add_epi16(s16[i], _mm256_maddubs_epi16(hi, broadcast4_avx2(xq + i * cols + b * 32 + 16 + 4 * p)));
        }
      }
#pragma GCC unroll 4
      for (std::size_t i = 0; i < MR; ++i) s[i] = _mm256_madd_epi16(s16[i], ones);
    } else {
#pragma GCC unroll 4
      for (std::size_t i = 0; i < MR; ++i) s[i] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (std::size_t t = 0; t < 8; ++t) {
        __m256i const v = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + 16 + 32 * t));
        __m256i const av = _mm256_sign_epi8(v, v);  // |w| (-128 stays 0x80 = 128 unsigned)
#pragma GCC unroll 4
        for (std::size_t i = 0; i < MR; ++i) {
          __m256i const p16 = _mm256_maddubs_epi16(av, _mm256_sign_epi8(broadcast4_avx2(xq + i * cols + b * 32 + 4 * t), v));
          s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(p16, ones));
        }
      }
    }
#pragma GCC unroll 4
    for (std::size_t i = 0; i < MR; ++i) {
      __m256 const scale = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[(r0 + i) * nb + b]));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i]), scale, acc[i]);
      if constexpr (Type == WeightType::q4_1) sm[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[(r0 + i) * nb + b]), sm[i]);
    }
  }
#pragma GCC unroll 4
  for (std::size_t i = 0; i < MR; ++i) _mm256_storeu_ps(out + i * interleave_rows, _mm256_add_ps(acc[i], sm[i]));
}

/// out [a.rows][8] for group g, activation rows three at a time.
template <WeightType Type>
__attribute__((target("avx2,fma,f16c"))) inline void interleaved_dot_all_avx2(InterleavedWeights const& w, std::size_t g,
                                                                               Q8Activations const& a, float* out) noexcept {
  std::size_t const m = a.rows;
  std::size_t r = 0;
  for (; r + 3 <= m; r += 3) interleaved_dot_avx2<Type, 3>(w, g, a, r, out + r * interleave_rows);
  if (m - r == 2) interleaved_dot_avx2<Type, 2>(w, g, a, r, out + r * interleave_rows);
  if (m - r == 1) interleaved_dot_avx2<Type, 1>(w, g, a, r, out + r * interleave_rows);
}
#endif

/// One interleaved matrix and its output: y [m][w->rows] = beta * y + dot(activation rows, weight rows).
struct InterleavedGemmOutput {
  InterleavedWeights const* w = nullptr;
  float* y = nullptr;
  float beta = 0.0f;
};

/// Several products of the same activations in one parallel loop over all their row groups.
/// `parallel_for(n, f(begin, end))` splits the groups; force_scalar selects the portable code (tests).
template <class ParallelFor>
void q8_interleaved_gemm_many(ParallelFor&& parallel_for, Q8Activations const& a,
                              std::span<InterleavedGemmOutput const> outs, bool force_scalar = false) {
  std::vector<std::size_t> start{0};  // [outs + 1] first global group of each output
  for (auto const& o : outs) {
    if (a.cols != o.w->cols) {
      fail<InvalidArgument>("q8_interleaved_gemm: activations [", a.rows, "][", a.cols, "] vs weights [", o.w->rows,
                            "][", o.w->cols, "]");
    }
    start.push_back(start.back() + o.w->groups);
  }
  std::size_t const m = a.rows;
  bool const use_avx2 = use_avx2_kernels(force_scalar);
  parallel_for(start.back(), [&](std::size_t begin, std::size_t end) {
    std::vector<float> out(m * interleave_rows);  // [m activation rows][8 weight rows]
    std::size_t k = 0;
    for (std::size_t gg = begin; gg < end; ++gg) {
      while (gg >= start[k + 1]) ++k;
      InterleavedWeights const& w = *outs[k].w;
      std::size_t const g = gg - start[k];
#if PIECRUST_MODEL_X86
      if (use_avx2) {
        if (w.type == WeightType::q4_1) {
          interleaved_dot_all_avx2<WeightType::q4_1>(w, g, a, out.data());
        } else {
          interleaved_dot_all_avx2<WeightType::q8_0>(w, g, a, out.data());
        }
      }
#endif
      if (!use_avx2) {
        for (std::size_t i = 0; i < m; ++i) interleaved_dot_scalar(w, g, a, i, out.data() + i * interleave_rows);
      }
      std::size_t const row0 = g * interleave_rows;
      std::size_t const nr = std::min(interleave_rows, w.rows - row0);
      float const beta = outs[k].beta;
      for (std::size_t i = 0; i < m; ++i) {
        float* yr = outs[k].y + i * w.rows + row0;
        float const* o = out.data() + i * interleave_rows;
        for (std::size_t r = 0; r < nr; ++r) yr[r] = beta == 0.0f ? o[r] : beta * yr[r] + o[r];
      }
    }
  });
}

}  // namespace piecrust::detail
