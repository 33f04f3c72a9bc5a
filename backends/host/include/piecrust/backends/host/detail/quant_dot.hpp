#pragma once
// Integer dot products of one quantized weight row with one quantized activation row (quant_activations.hpp),
// for every quantized WeightType; this file defines the canonical order of the float operations and the
// scalar code, which the SIMD paths (quant_dot_avx2.hpp) reproduce bit for bit.
//
// Integer sums are exact, so the order is defined in terms of them. Eight float lanes acc[0..8), zero first;
// lane l owns elements 4l..4l+3 of every group of 32 (the int32 lanes of maddubs + madd).
//  * Blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL), per block b in order:
//      P[l] = sum of code * xq over elements 4l..4l+3;  acc[l] = fma(dw * dx, float(P[l]), acc[l])
//    and for Q4_1 / Q5_1 one more chain  sm = fma(m_w, s_x, sm)  (m_w the block's f16 minimum, s_x the
//    activation block's f16 d * sum).
//  * Blocks of 256 (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS), per super-block in order:
//      S[l] = sum over the 8 groups of scale(sub-block of e) * code * xq over lane l's elements;
//      acc[l] = fma(d_w * d_x, float(S[l]), acc[l])
//    and for Q2_K / Q4_K / Q5_K  sm = fma(dmin_w * d_x, float(sum_j min_j * bsum_j), sm).
//  * Result: h = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)); then h + sm for
//    Q4_1 / Q5_1, h - sm for Q2_K / Q4_K / Q5_K, h otherwise.
// Every product of dw * dx is rounded to f32 once before its fma. A row's result depends only on its own
// weight and activation rows, whatever batch it is computed in.

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/host/detail/quant_activations.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/weight_type.hpp"

namespace piecrust::detail {

/// Whether weights of type t take 256-value activation blocks (Q8_K) rather than blocks of 32.
[[nodiscard]] constexpr bool uses_q8k(WeightType t) noexcept { return weight_block_size(t) == 256; }

/// Types whose minimum term adds (Q4_1 / Q5_1) or subtracts (K-quants with dmin) a second chain.
[[nodiscard]] constexpr bool has_min_add(WeightType t) noexcept {
  return t == WeightType::q4_1 || t == WeightType::q5_1;
}
[[nodiscard]] constexpr bool has_min_sub(WeightType t) noexcept {
  return t == WeightType::q2_k || t == WeightType::q4_k || t == WeightType::q5_k;
}

/// Types whose codes are all >= 0 (maddubs takes them as its unsigned operand directly; the others use
/// |code| and move the sign to the activation).
[[nodiscard]] constexpr bool has_unsigned_codes(WeightType t) noexcept {
  return t == WeightType::q4_1 || t == WeightType::q5_1 || t == WeightType::q2_k || t == WeightType::q4_k ||
         t == WeightType::q5_k;
}

/// The fixed horizontal sum of the eight lanes.
[[nodiscard]] inline float hsum8(float const* a) noexcept {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

[[nodiscard]] inline float finish_dot(WeightType t, float const* acc, float sm) noexcept {
  float const h = hsum8(acc);
  if (has_min_add(t)) return h + sm;
  if (has_min_sub(t)) return h - sm;
  return h;
}

/// dot(weight row, activation row i) in the canonical order, codes and scales read through quant::.
[[nodiscard]] inline float quant_dot_scalar(WeightType t, std::uint8_t const* wrow, QuantizedActivations const& a,
                                            std::size_t i) noexcept {
  std::size_t const n = weight_block_size(t), bytes = weight_block_bytes(t), nb = a.cols / n;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float sm = 0.0f;
  if (!uses_q8k(t)) {
    std::int8_t const* xq = a.q.data() + i * a.cols;
    for (std::size_t b = 0; b < nb; ++b) {
      std::uint8_t const* blk = wrow + b * bytes;
      quant::Affine const w = quant::sub_block_affine(t, blk, 0);
      float const dd = w.d * a.d[i * nb + b];
      for (std::size_t l = 0; l < 8; ++l) {
        int p = 0;
        for (std::size_t e = 4 * l; e < 4 * l + 4; ++e) p += quant::code(t, blk, e) * xq[b * 32 + e];
        acc[l] = std::fma(dd, static_cast<float>(p), acc[l]);
      }
      if (has_min_add(t)) sm = std::fma(w.m, a.s[i * nb + b], sm);
    }
    return finish_dot(t, acc, sm);
  }
  std::int8_t const* xq = a.kq.data() + i * a.cols;
  std::size_t const sub = quant::sub_block_size(t);
  quant::HalfFields const f = quant::f16_fields(t);
  for (std::size_t b = 0; b < nb; ++b) {
    std::uint8_t const* blk = wrow + b * bytes;
    std::int8_t const* x = xq + b * 256;
    float const dx = a.kd[i * nb + b];
    int s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::size_t e = 0; e < 256; ++e) {
      s[(e % 32) / 4] += quant::integer_scale_min(t, blk, e / sub).scale * quant::code(t, blk, e) * x[e];
    }
    float const dd = quant::load_f16(blk + f.at[0]) * dx;
    for (std::size_t l = 0; l < 8; ++l) acc[l] = std::fma(dd, static_cast<float>(s[l]), acc[l]);
    if (has_min_sub(t)) {
      std::int16_t const* bs = a.kbsums.data() + (i * nb + b) * 16;
      int msum = 0;
      for (std::size_t j = 0; j < 256 / sub; ++j) {
        int bsum = 0;
        for (std::size_t k = j * sub / 16; k < (j + 1) * sub / 16; ++k) bsum += bs[k];
        msum += quant::integer_scale_min(t, blk, j).min * bsum;
      }
      sm = std::fma(quant::load_f16(blk + f.at[1]) * dx, static_cast<float>(msum), sm);
    }
  }
  return finish_dot(t, acc, sm);
}

}  // namespace piecrust::detail
