#pragma once
// y = beta * y + x W^T for Q4_1 / Q8_0 weights with x quantized to 8-bit blocks first — llama.cpp's CPU
// matmul (ggml-cpu: quantize_row_q8_1 / quantize_row_q8_0, then ggml_vec_dot_q4_1_q8_1 /
// ggml_vec_dot_q8_0_q8_0). Integer dot products per block of 32, so the results equal llama.cpp's up to
// float summation order, and decode reads each weight once for all (few) activation rows.
//
// This is the model layer's matmul for quantized weights on the Host space, for any number of rows
// (LlamaModel::matmul, when llama_cpp_activation_rounding is on): each output is one row's own integer
// dot product, so a row's result never depends on the other rows of the batch (batch invariance). AVX2 code is selected at run time; the scalar code is the
// fallback and the tests' oracle. It belongs in the host backend's gemm; it lives here until the kernel
// layer takes pre-quantized activations.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/weight_matrix.hpp>
#include <piecrust/kernels/detail/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#define PIECRUST_MODEL_X86 1
#else
#define PIECRUST_MODEL_X86 0
#endif

namespace piecrust::detail {

#if PIECRUST_MODEL_X86
[[nodiscard]] inline bool cpu_has_avx2() noexcept {
  // F16C from cpuid leaf 1 (ECX bit 29): clang before 15 does not know __builtin_cpu_supports("f16c").
  static bool const yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    bool const f16c = __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return yes;
}
#endif

/// Whether the 8-bit kernels take their AVX2 code: an x86 CPU with AVX2, FMA and F16C, unless the
/// caller forces the portable code (tests).
[[nodiscard]] inline bool use_avx2_kernels(bool force_scalar) noexcept {
#if PIECRUST_MODEL_X86
  return !force_scalar && cpu_has_avx2();
#else
  (void)force_scalar;
  return false;
#endif
}

#if PIECRUST_MODEL_X86

/// One block of 32: the same values as the scalar loop (max and products are exact, _mm256_round_ps
/// rounds to nearest-even like nearbyint), 8 lanes at a time. Returns sum(q).
__attribute__((target("avx2,fma,f16c"))) inline int quantize_block_avx2(float const* x, std::int8_t* q,
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

/// Activations quantized per block of 32: x ~ d[b] * q[b][j]; s[b] = f16(d * sum_j q) (Q8_1's sum term).
struct Q8Activations {
  std::size_t rows = 0, cols = 0;
  std::vector<std::int8_t> q;  // [rows][cols]
  std::vector<float> d;        // [rows][cols / 32] f16-rounded scale
  std::vector<float> s;        // [rows][cols / 32] f16-rounded d_f32 * sum(q)

  /// x: [rows][cols], cols a multiple of 32. Rounding: nearest-even, as _mm256_round_ps in ggml's AVX2
  /// path. force_scalar selects the portable code (tests; the AVX2 code gives the same bits).
  void quantize(float const* x, std::size_t m, std::size_t k, bool force_scalar = false) {
    rows = m;
    cols = k;
    q.resize(m * k);
    d.resize(m * k / 32);
    s.resize(m * k / 32);
    bool const use_avx2 = use_avx2_kernels(force_scalar);
    for (std::size_t b = 0; b < m * k / 32; ++b) {
      float const* xb = x + b * 32;
      float dd = 0.0f;
      int sum = 0;
#if PIECRUST_MODEL_X86
      if (use_avx2) sum = quantize_block_avx2(xb, q.data() + b * 32, dd);
#endif
      if (!use_avx2) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        dd = amax / 127.0f;
        float const id = dd != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; ++j) {
          auto const v = static_cast<std::int8_t>(std::nearbyint(xb[j] * id));
          q[b * 32 + j] = v;
          sum += v;
        }
      }
      d[b] = f16_to_f32(f32_to_f16(dd));
      s[b] = f16_to_f32(f32_to_f16(dd * static_cast<float>(sum)));
    }
  }
};

inline float q8_dot_scalar(WeightType type, std::byte const* wrow, Q8Activations const& a, std::size_t i) noexcept {
  std::size_t const nb = a.cols / 32;
  std::int8_t const* xq = a.q.data() + i * a.cols;
  float const* xd = a.d.data() + i * nb;
  float const* xs = a.s.data() + i * nb;
  float acc = 0.0f;
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint16_t hd;
    std::memcpy(&hd, wrow + b * weight_block_bytes(type), 2);
    int sumi = 0;
    if (type == WeightType::q4_1) {
      auto const* blk = reinterpret_cast<unsigned char const*>(wrow + b * sizeof(BlockQ4_1));
      std::uint16_t hm;
      std::memcpy(&hm, blk + 2, 2);
      for (int j = 0; j < 16; ++j) {
        sumi += (blk[4 + j] & 0x0f) * xq[b * 32 + j] + (blk[4 + j] >> 4) * xq[b * 32 + j + 16];
      }
      acc += f16_to_f32(hd) * xd[b] * static_cast<float>(sumi) + f16_to_f32(hm) * xs[b];
    } else {
      auto const* qs = reinterpret_cast<std::int8_t const*>(wrow + b * sizeof(BlockQ8_0) + 2);
      for (int j = 0; j < 32; ++j) sumi += qs[j] * xq[b * 32 + j];
      acc += f16_to_f32(hd) * xd[b] * static_cast<float>(sumi);
    }
  }
  return acc;
}

#if PIECRUST_MODEL_X86
__attribute__((target("avx2,fma,f16c"))) inline float hsum_avx2(__m256 v) noexcept {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

/// out[w * out_stride + i] = dot(weight row w, activation row r0 + i) for w < NW, i < M: each weight
/// block is unpacked once for the M rows and each activation block loaded once for the NW weight rows;
/// the NW * M accumulators are independent FMA chains (latency, not throughput, bounds one chain).
/// Every output sees the same operations in the same order whatever NW and M are, so a row's result
/// never depends on the batch around it. Weight row w starts at wrow + w * row_bytes.
template <WeightType Type, std::size_t M, std::size_t NW>
__attribute__((target("avx2,fma,f16c"))) inline void q8_dot_rows_avx2(std::byte const* wrow, std::size_t row_bytes,
                                                                       Q8Activations const& a, std::size_t r0,
                                                                       float* out, std::size_t out_stride) noexcept {
  static_assert(M >= 1 && M <= 8 && NW >= 1);
  std::size_t const nb = a.cols / 32;
  // Q4_1's m * s terms are a scalar fused chain per output over the blocks (ggml's `summs += m * s`).
  // With few outputs the chains run inside the block loop, where the vector work hides their FMA
  // latency; with more they would spill registers, so they run after it. Same order either way.
  constexpr bool inline_min_terms = Type == WeightType::q4_1 && M * NW <= 4;
  __m256 acc[NW][M];
  float sm[NW][M];
#pragma GCC unroll 8
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 8
    for (std::size_t i = 0; i < M; ++i) {
      acc[w][i] = _mm256_setzero_ps();
      sm[w][i] = 0.0f;
    }
  }
  __m256i const ones = _mm256_set1_epi16(1);
  std::int8_t const* xq = a.q.data() + r0 * a.cols;
  float const* xd = a.d.data() + r0 * nb;
  float const* xs = a.s.data() + r0 * nb;
  for (std::size_t b = 0; b < nb; ++b) {
    if constexpr (Type == WeightType::q4_1) {
      __m256i wq[NW];
      __m256 wdv[NW];
#pragma GCC unroll 8
      for (std::size_t w = 0; w < NW; ++w) {
        auto const* blk = reinterpret_cast<unsigned char const*>(wrow + w * row_bytes + b * sizeof(BlockQ4_1));
        std::uint16_t hd;
        std::memcpy(&hd, blk, 2);
        wdv[w] = _mm256_set1_ps(_cvtsh_ss(hd));
        __m128i const raw = _mm_loadu_si128(reinterpret_cast<__m128i const*>(blk + 4));
        // low nibbles = elements 0..15, high nibbles = 16..31 (ggml bytes_from_nibbles_32)
        wq[w] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
      }
#pragma GCC unroll 8
      for (std::size_t i = 0; i < M; ++i) {
        __m256i const x = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(xq + i * a.cols + b * 32));
        __m256 const di = _mm256_broadcast_ss(xd + i * nb + b);
#pragma GCC unroll 8
        for (std::size_t w = 0; w < NW; ++w) {
          __m256i const p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[w], x), ones);
          // wd * d_x rounded to f32 in every lane: the same product as the scalar code's
          acc[w][i] = _mm256_fmadd_ps(_mm256_mul_ps(wdv[w], di), _mm256_cvtepi32_ps(p), acc[w][i]);
        }
      }
      if constexpr (inline_min_terms) {
#pragma GCC unroll 8
        for (std::size_t w = 0; w < NW; ++w) {
          std::uint16_t hm;
          std::memcpy(&hm, wrow + w * row_bytes + b * sizeof(BlockQ4_1) + 2, 2);
          float const mw = _cvtsh_ss(hm);
#pragma GCC unroll 8
          for (std::size_t i = 0; i < M; ++i) sm[w][i] = std::fma(mw, xs[i * nb + b], sm[w][i]);
        }
      }
    } else {
      __m256i wq[NW], aw[NW];
      __m256 wdv[NW];
#pragma GCC unroll 8
      for (std::size_t w = 0; w < NW; ++w) {
        auto const* blk = reinterpret_cast<unsigned char const*>(wrow + w * row_bytes + b * sizeof(BlockQ8_0));
        std::uint16_t hd;
        std::memcpy(&hd, blk, 2);
        wdv[w] = _mm256_set1_ps(_cvtsh_ss(hd));
        wq[w] = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(blk + 2));
        aw[w] = _mm256_sign_epi8(wq[w], wq[w]);  // |w|, so maddubs sees an unsigned operand
      }
#pragma GCC unroll 8
      for (std::size_t i = 0; i < M; ++i) {
        __m256i const x = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(xq + i * a.cols + b * 32));
        __m256 const di = _mm256_broadcast_ss(xd + i * nb + b);
#pragma GCC unroll 8
        for (std::size_t w = 0; w < NW; ++w) {
          __m256i const p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[w], _mm256_sign_epi8(x, wq[w])), ones);
          acc[w][i] = _mm256_fmadd_ps(_mm256_mul_ps(wdv[w], di), _mm256_cvtepi32_ps(p), acc[w][i]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (std::size_t w = 0; w < NW; ++w) {
#pragma GCC unroll 8
    for (std::size_t i = 0; i < M; ++i) {
      if constexpr (Type == WeightType::q4_1 && !inline_min_terms) {
        for (std::size_t b = 0; b < nb; ++b) {
          std::uint16_t hm;
          std::memcpy(&hm, wrow + w * row_bytes + b * sizeof(BlockQ4_1) + 2, 2);
          sm[w][i] = std::fma(_cvtsh_ss(hm), xs[i * nb + b], sm[w][i]);
        }
      }
      out[w * out_stride + i] = hsum_avx2(acc[w][i]) + sm[w][i];
    }
  }
}

/// All m rows of NW consecutive weight rows, in groups of G activation rows (the weight rows stay in L1
/// between groups; NW * G accumulators plus the unpacked weights fit the 16 ymm registers).  out [NW][m]
template <WeightType Type, std::size_t NW, std::size_t G = (NW == 1 ? 4 : 3)>
__attribute__((target("avx2,fma,f16c"))) inline void q8_dot_all_avx2(std::byte const* wrow, std::size_t row_bytes,
                                                                      Q8Activations const& a, float* out) noexcept {
  std::size_t const m = a.rows;
  std::size_t r = 0;
  for (; r + G <= m; r += G) q8_dot_rows_avx2<Type, G, NW>(wrow, row_bytes, a, r, out + r, m);
  switch (m - r) {
    case 3: q8_dot_rows_avx2<Type, 3, NW>(wrow, row_bytes, a, r, out + r, m); break;
    case 2: q8_dot_rows_avx2<Type, 2, NW>(wrow, row_bytes, a, r, out + r, m); break;
    case 1: q8_dot_rows_avx2<Type, 1, NW>(wrow, row_bytes, a, r, out + r, m); break;
    default: break;
  }
}

#endif

/// Weight rows per block: their outputs for all activation rows are gathered in a small buffer and
/// written to y as contiguous runs, not as one strided column per weight row.
inline constexpr std::size_t q8_activation_gemm_row_block = 16;

/// One weight matrix and its output: y [m][w->rows] = beta * y + dot(activation rows, weight rows).
struct Q8GemmOutput {
  WeightMatrix const* w = nullptr;
  float* y = nullptr;
  float beta = 0.0f;
};

/// Several products of the same activations (Q, K and V; gate and up) in one parallel loop over all
/// their output rows: one fork/join instead of one per matrix. `parallel_for(n, f(begin, end))` splits
/// the rows; force_scalar selects the portable code (tests).
template <class ParallelFor>
void q8_activation_gemm_many(ParallelFor&& parallel_for, Q8Activations const& a, std::span<Q8GemmOutput const> outs,
                             bool force_scalar = false) {
  std::vector<std::size_t> start{0};  // [outs + 1] first global row of each output
  for (auto const& o : outs) {
    auto const& w = *o.w;
    if (w.type != WeightType::q4_1 && w.type != WeightType::q8_0) {
      fail<InvalidArgument>("q8_activation_gemm: weight type ", weight_type_name(w.type), " is not q4_1 or q8_0");
    }
    if (a.cols != w.cols) {
      fail<InvalidArgument>("q8_activation_gemm: activations [", a.rows, "][", a.cols, "] vs weights [", w.rows, "][",
                            w.cols, "]");
    }
    start.push_back(start.back() + w.rows);
  }
  std::size_t const m = a.rows;
  bool const use_avx2 = use_avx2_kernels(force_scalar);
  constexpr std::size_t rb = q8_activation_gemm_row_block;
  parallel_for(start.back(), [&](std::size_t begin, std::size_t end) {
    std::vector<float> out(rb * m);  // [rb weight rows][m activation rows]
    std::size_t k = 0;
    std::size_t g = begin;
    while (g < end) {
      while (g >= start[k + 1]) ++k;
      auto const& w = *outs[k].w;
      std::size_t const o0 = g - start[k], n = w.rows;
      std::size_t const nb = std::min({rb, end - g, start[k + 1] - g});  // a block never crosses outputs
      std::size_t jb = 0;
#if PIECRUST_MODEL_X86
      if (use_avx2) {
        std::size_t const row_bytes = w.row_bytes();
        for (; jb + 2 <= nb; jb += 2) {
          if (w.type == WeightType::q4_1) {
            q8_dot_all_avx2<WeightType::q4_1, 2>(w.row(o0 + jb), row_bytes, a, out.data() + jb * m);
          } else {
            q8_dot_all_avx2<WeightType::q8_0, 2>(w.row(o0 + jb), row_bytes, a, out.data() + jb * m);
          }
        }
        for (; jb < nb; ++jb) {
          if (w.type == WeightType::q4_1) {
            q8_dot_all_avx2<WeightType::q4_1, 1>(w.row(o0 + jb), row_bytes, a, out.data() + jb * m);
          } else {
            q8_dot_all_avx2<WeightType::q8_0, 1>(w.row(o0 + jb), row_bytes, a, out.data() + jb * m);
          }
        }
      }
#endif
      for (; jb < nb; ++jb) {
        std::byte const* wr = w.row(o0 + jb);
        float* ob = out.data() + jb * m;
        for (std::size_t i = 0; i < m; ++i) ob[i] = q8_dot_scalar(w.type, wr, a, i);
      }
      float const beta = outs[k].beta;
      for (std::size_t i = 0; i < m; ++i) {
        float* yr = outs[k].y + i * n + o0;
        for (std::size_t jb = 0; jb < nb; ++jb) {
          float const v = out[jb * m + i];
          yr[jb] = beta == 0.0f ? v : beta * yr[jb] + v;
        }
      }
      g += nb;
    }
  });
}

/// y [m][w.rows] = beta * y + dot(a rows, w rows).
template <class ParallelFor>
void q8_activation_gemm(ParallelFor&& parallel_for, Q8Activations const& a, WeightMatrix const& w, float* y, float beta,
                        bool force_scalar = false) {
  Q8GemmOutput const o{&w, y, beta};
  q8_activation_gemm_many(parallel_for, a, std::span<Q8GemmOutput const>(&o, 1), force_scalar);
}

}  // namespace piecrust::detail
