#pragma once
// The decode form of the Q4_1 / Q8_0 integer matmul: rows re-laid out in groups of 8, interleaved 4
// elements at a time, so one 32-bit lane per row. The chunk of elements 4t..4t+3 of the group's 8 rows is
// one register, and maddubs + madd against the broadcast activation chunk give P[t] of quant_dot.hpp for
// the 8 rows at once: lane l of quant_dot.hpp's accumulators becomes register t, lane r the row. The
// same IEEE operations happen per row as in the row-major code, so the bits are the same (and a row's
// result never depends on its batch), while the unpacking and scale work is shared by 8 rows.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/backends/host/detail/quant_activations.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

#if PIECRUST_HOST_X86
#include <immintrin.h>
#endif

namespace piecrust::detail {

inline constexpr std::size_t interleaved_group_rows = 8;

/// A Q4_1 or Q8_0 matrix in groups of 8 rows (the last group padded with zero rows). Group block (one
/// block of 32 columns of the group's 8 rows):
///   Q4_1 (160 bytes): d [8] f16, m [8] f16, nibble bytes [4 chunks p][8 rows][GGUF bytes 4p..4p+3]
///                     (low nibbles: elements 4p.., high nibbles: elements 16 + 4p..);
///   Q8_0 (272 bytes): d [8] f16, codes [8 chunks t][8 rows][elements 4t..4t+3].
struct InterleavedQuant {
  WeightType type = WeightType::q4_1;
  std::size_t rows = 0, cols = 0, groups = 0;
  std::vector<std::uint8_t> data;  // [groups][cols / 32][group_block_bytes()]

  [[nodiscard]] static constexpr bool supports(WeightType t) noexcept {
    return t == WeightType::q4_1 || t == WeightType::q8_0;
  }
  [[nodiscard]] std::size_t group_block_bytes() const noexcept { return type == WeightType::q4_1 ? 160 : 272; }
  [[nodiscard]] std::uint8_t const* group(std::size_t g) const noexcept {
    return data.data() + g * (cols / 32) * group_block_bytes();
  }

  [[nodiscard]] static InterleavedQuant from(WeightMatrix const& w) {
    if (!supports(w.type)) {
      fail<InvalidArgument>("InterleavedQuant: weight type ", weight_type_name(w.type), " is not q4_1 or q8_0");
    }
    InterleavedQuant p;
    p.type = w.type;
    p.rows = w.rows;
    p.cols = w.cols;
    p.groups = (w.rows + interleaved_group_rows - 1) / interleaved_group_rows;
    std::size_t const nb = w.cols / 32, gbb = p.group_block_bytes(), src_block = weight_block_bytes(w.type);
    p.data.assign(p.groups * nb * gbb, 0);  // padding rows: d = m = 0, codes 0
    for (std::size_t row = 0; row < w.rows; ++row) {
      std::size_t const g = row / interleaved_group_rows, r = row % interleaved_group_rows;
      for (std::size_t b = 0; b < nb; ++b) {
        auto const* src = reinterpret_cast<std::uint8_t const*>(w.row(row)) + b * src_block;
        std::uint8_t* dst = p.data.data() + (g * nb + b) * gbb;
        std::memcpy(dst + 2 * r, src, 2);
        if (w.type == WeightType::q4_1) {
          std::memcpy(dst + 16 + 2 * r, src + 2, 2);
          for (std::size_t c = 0; c < 4; ++c) std::memcpy(dst + 32 + (c * 8 + r) * 4, src + 4 + 4 * c, 4);
        } else {
          for (std::size_t c = 0; c < 8; ++c) std::memcpy(dst + 16 + (c * 8 + r) * 4, src + 2 + 4 * c, 4);
        }
      }
    }
    return p;
  }
};

#if PIECRUST_HOST_X86
/// The 4 int8 at p in every 32-bit lane.
__attribute__((target("avx2"))) inline __m256i interleaved_chunk(std::int8_t const* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/// out [8] = the group's 8 row results for activation row i, in quant_dot.hpp's order.
template <WeightType T>
__attribute__((target("avx2,fma,f16c"))) inline void interleaved_dot_avx2(InterleavedQuant const& w, std::size_t g,
                                                                           QuantizedActivations const& a,
                                                                           std::size_t i, float* out) noexcept {
  std::size_t const nb = a.cols / 32, gbb = w.group_block_bytes();
  std::uint8_t const* grp = w.group(g);
  std::int8_t const* xq = a.q.data() + i * a.cols;
  __m256 acc[8];
#pragma GCC unroll 8
  for (std::size_t t = 0; t < 8; ++t) acc[t] = _mm256_setzero_ps();
  __m256 sm = _mm256_setzero_ps();
  __m256i const ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0f);
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* blk = grp + b * gbb;
    std::int8_t const* x = xq + b * 32;
    // dw * dx rounded per lane: the row-major code's scalar product
    __m256 const dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk))),
                                    _mm256_set1_ps(a.d[i * nb + b]));
    if constexpr (T == WeightType::q4_1) {
#pragma GCC unroll 4
      for (std::size_t c = 0; c < 4; ++c) {
        __m256i const raw = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + 32 + 32 * c));
        __m256i const lo = _mm256_and_si256(raw, low);
        __m256i const hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        __m256i const plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, interleaved_chunk(x + 4 * c)), ones);
        __m256i const phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, interleaved_chunk(x + 16 + 4 * c)), ones);
        acc[c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(plo), acc[c]);
        acc[4 + c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(phi), acc[4 + c]);
      }
      __m256 const mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + 16)));
      sm = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[i * nb + b]), sm);
    } else {
#pragma GCC unroll 8
      for (std::size_t t = 0; t < 8; ++t) {
        __m256i const v = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + 16 + 32 * t));
        __m256i const p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(interleaved_chunk(x + 4 * t), v)), ones);
        acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc[t]);
      }
    }
  }
  __m256 h = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                           _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  if constexpr (T == WeightType::q4_1) h = _mm256_add_ps(h, sm);
  _mm256_storeu_ps(out, h);
}
#endif

struct InterleavedQuantOutput {
  InterleavedQuant const* w = nullptr;
  float* y = nullptr;  // [m][w->rows]
  float beta = 0.0f;
};

/// Whether the interleaved kernels run at this level (AVX2 and above).
[[nodiscard]] inline bool interleaved_quant_available(SimdLevel level) noexcept {
  return PIECRUST_HOST_X86 && level != SimdLevel::scalar && cpu_supports(SimdLevel::avx2);
}

/// Several interleaved products of the same activations in one parallel loop over their row groups.
template <class ParallelFor>
void interleaved_quant_gemm_many(ParallelFor&& parallel_for, QuantizedActivations const& a,
                                 std::span<InterleavedQuantOutput const> outs) {
  if (!cpu_supports(SimdLevel::avx2)) fail<Unsupported>("interleaved_quant_gemm: needs AVX2");
  std::vector<std::size_t> start{0};  // [outs + 1] first global group of each output
  for (auto const& o : outs) {
    if (a.cols != o.w->cols || !a.has_q8) {
      fail<InvalidArgument>("interleaved_quant_gemm: activations [", a.rows, "][", a.cols, "] vs weights [",
                            o.w->rows, "][", o.w->cols, "]");
    }
    start.push_back(start.back() + o.w->groups);
  }
#if PIECRUST_HOST_X86
  parallel_for(start.back(), [&](std::size_t begin, std::size_t end) {
    std::size_t k = 0;
    for (std::size_t gg = begin; gg < end; ++gg) {
      while (gg >= start[k + 1]) ++k;
      auto const& o = outs[k];
      std::size_t const g = gg - start[k], r0 = g * interleaved_group_rows;
      std::size_t const nr = std::min(interleaved_group_rows, o.w->rows - r0);
      for (std::size_t i = 0; i < a.rows; ++i) {
        float tmp[interleaved_group_rows];
        if (o.w->type == WeightType::q4_1) {
          interleaved_dot_avx2<WeightType::q4_1>(*o.w, g, a, i, tmp);
        } else {
          interleaved_dot_avx2<WeightType::q8_0>(*o.w, g, a, i, tmp);
        }
        float* yr = o.y + i * o.w->rows + r0;
        for (std::size_t r = 0; r < nr; ++r) yr[r] = o.beta == 0.0f ? tmp[r] : o.beta * yr[r] + tmp[r];
      }
    }
  });
#else
  (void)parallel_for;
#endif
}

}  // namespace piecrust::detail
