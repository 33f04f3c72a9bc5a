#pragma once
// The one definition of every quantized block layout: where each weight's integer code lives, how each
// sub-block's scale (and minimum) is packed, and the value d * q + m they make. Host, CUDA, HIP and Kokkos
// kernels decode through these functions, and the host's integer dot products read codes and scales through
// them, so a layout is written once.
//
// Layouts (facts from the GGUF specification and ggml-common.h; value order as ggml's dequantize_row_*):
//   Q4_0   f16 d | 16 B nibbles                 x = d * (q - 8)        q: byte i%16, nibble i/16
//   Q4_1   f16 d | f16 m | 16 B nibbles         x = d * q + m
//   Q5_0   f16 d | u32 qh | 16 B nibbles        x = d * (q - 16)       q = nibble | bit i of qh << 4
//   Q5_1   f16 d | f16 m | u32 qh | 16 B        x = d * q + m
//   Q8_0   f16 d | 32 x i8                      x = d * q
//   Q2_K   16 B scales | 64 B qs | f16 d | f16 dmin     x = d*(s&15) * q - dmin*(s>>4), 16 sub-blocks of 16
//   Q3_K   32 B hmask | 64 B qs | 12 B scales | f16 d   x = d*(s-32) * (q - 4*!hbit), 16 sub-blocks of 16
//   Q4_K   f16 d | f16 dmin | 12 B scales | 128 B qs    x = d*sc * q - dmin*mn, 8 sub-blocks of 32
//   Q5_K   f16 d | f16 dmin | 12 B scales | 32 B qh | 128 B qs
//   Q6_K   128 B ql | 64 B qh | 16 x i8 scales | f16 d  x = d*s * (q - 32), 16 sub-blocks of 16
//   IQ4_NL f16 d | 16 B nibbles                 x = d * table[q]
//   IQ4_XS f16 d | u16 scales_h | 4 B scales_l | 128 B  x = d*(s-32) * table[q], 8 sub-blocks of 32
// A value is one multiply and one add, each rounded (no fused multiply-add), as ggml's scalar decoders and
// the `gguf` package's numpy decoders compute it, so all of them agree bit for bit.

#include <bit>
#include <cstddef>
#include <cstdint>

#include "piecrust/config.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_type.hpp"

namespace piecrust::quant {

// ---- byte readers (little-endian; block fields are at most 2-byte aligned) ----

PIECRUST_HOST_DEVICE constexpr std::uint16_t load_u16(std::uint8_t const* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (static_cast<unsigned>(p[1]) << 8));
}
PIECRUST_HOST_DEVICE constexpr std::uint32_t load_u32(std::uint8_t const* p) noexcept {
  return static_cast<std::uint32_t>(load_u16(p)) | (static_cast<std::uint32_t>(load_u16(p + 2)) << 16);
}
PIECRUST_HOST_DEVICE constexpr float load_f16(std::uint8_t const* p) noexcept { return Half::to_float(load_u16(p)); }

/// a * b and a + b, each rounded on its own: a device compiler would otherwise fuse them.
PIECRUST_HOST_DEVICE inline float mul_rn(float a, float b) noexcept {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PIECRUST_HOST_DEVICE inline float add_rn(float a, float b) noexcept {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// IQ4_NL / IQ4_XS code book: a nibble indexes this non-linear table (ggml-common.h kvalues_iq4nl).
PIECRUST_HOST_DEVICE constexpr std::int8_t iq4_value(unsigned nibble) noexcept {
  constexpr std::int8_t table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  return table[nibble & 15u];
}

// ---- field offsets inside a block ----

namespace offset {
inline constexpr std::size_t q2_k_qs = 16, q2_k_d = 80, q2_k_dmin = 82;
inline constexpr std::size_t q3_k_qs = 32, q3_k_scales = 96, q3_k_d = 108;
inline constexpr std::size_t k4_scales = 4, q4_k_qs = 16;   // Q4_K and Q5_K share d, dmin, scales
inline constexpr std::size_t q5_k_qh = 16, q5_k_qs = 48;
inline constexpr std::size_t q6_k_qh = 128, q6_k_scales = 192, q6_k_d = 208;
inline constexpr std::size_t iq4_xs_scales_h = 2, iq4_xs_scales_l = 4, iq4_xs_qs = 8;
}  // namespace offset

/// Weights per sub-block sharing one scale: the block itself for the 32-weight types.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr std::size_t sub_block_size(WeightType t) noexcept {
  switch (t) {
    case WeightType::q2_k:
    case WeightType::q3_k:
    case WeightType::q6_k: return 16;
    case WeightType::q4_k:
    case WeightType::q5_k:
    case WeightType::iq4_xs: return 32;
    default: return weight_block_size(t);
  }
}

// ---- packed sub-block scales (integers, as the integer dot products use them) ----

/// Q4_K / Q5_K: the 6-bit scale and minimum of sub-block j < 8 from the 12 scale bytes (ggml's
/// get_scale_min_k4): bytes 0-3 and 4-7 hold the low 6 bits of scales and minimums 0-3, bytes 8-11
/// the low 4 bits of 4-7, whose high 2 bits are the top bits of bytes 0-3 (scales) and 4-7 (minimums).
struct ScaleMin {
  int scale = 0, min = 0;
};
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr ScaleMin k4_scale_min(std::uint8_t const* s, std::size_t j) noexcept {
  if (j < 4) return {s[j] & 63, s[j + 4] & 63};
  return {(s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)};
}

/// Q3_K: the signed 6-bit scale of sub-block j < 16: low 4 bits in byte j % 8 (low nibble for j < 8),
/// high 2 bits in byte 8 + j % 4 at bit 2 * (j / 4); stored with a bias of 32.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr int q3_k_scale(std::uint8_t const* s, std::size_t j) noexcept {
  int const low = (s[j % 8] >> (4 * (j / 8))) & 15;
  int const high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

/// IQ4_XS: the signed 6-bit scale of sub-block j < 8 (bias 32): low nibble j of scales_l, high 2 bits at
/// bit 2 * j of scales_h.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr int iq4_xs_scale(std::uint8_t const* blk, std::size_t j) noexcept {
  int const low = (blk[offset::iq4_xs_scales_l + j / 2] >> (4 * (j % 2))) & 15;
  int const high = (load_u16(blk + offset::iq4_xs_scales_h) >> (2 * j)) & 3;
  return (low | (high << 4)) - 32;
}

/// The integer scale and minimum of sub-block j of a K-quant or IQ4_XS block, so that
/// x = d * scale * code - dmin * min (min 0 for the symmetric types); {1, 0} for the 32-weight types.
/// The host's integer dot products fold these into their integer sums.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr ScaleMin integer_scale_min(WeightType t, std::uint8_t const* blk,
                                                                        std::size_t j) noexcept {
  switch (t) {
    case WeightType::q2_k: return {blk[j] & 15, blk[j] >> 4};
    case WeightType::q3_k: return {q3_k_scale(blk + offset::q3_k_scales, j), 0};
    case WeightType::q4_k:
    case WeightType::q5_k: return k4_scale_min(blk + offset::k4_scales, j);
    case WeightType::q6_k: return {static_cast<std::int8_t>(blk[offset::q6_k_scales + j]), 0};
    case WeightType::iq4_xs: return {iq4_xs_scale(blk, j), 0};
    default: return {1, 0};
  }
}

/// Byte offsets of a block's f16 fields: d, then m or dmin where the type has one (count 0 for plain types).
/// Lets generators of random blocks keep every scale finite.
struct HalfFields {
  std::size_t count = 0;
  std::size_t at[2] = {0, 0};
};
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr HalfFields f16_fields(WeightType t) noexcept {
  switch (t) {
    case WeightType::q4_0:
    case WeightType::q5_0:
    case WeightType::q8_0:
    case WeightType::iq4_nl:
    case WeightType::iq4_xs: return {1, {0, 0}};
    case WeightType::q4_1:
    case WeightType::q5_1:
    case WeightType::q4_k:
    case WeightType::q5_k: return {2, {0, 2}};
    case WeightType::q2_k: return {2, {offset::q2_k_d, offset::q2_k_dmin}};
    case WeightType::q3_k: return {1, {offset::q3_k_d, 0}};
    case WeightType::q6_k: return {1, {offset::q6_k_d, 0}};
    default: return {};
  }
}

// ---- integer codes ----

/// The integer code of weight i of a block, with the type's offset applied (Q4_0: q - 8; Q3_K: q - 4 when
/// its high bit is clear; Q6_K: q - 32; IQ4: the table value), so that x = d_sub * code + m_sub.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr int code(WeightType t, std::uint8_t const* blk, std::size_t i) noexcept {
  auto nibble = [](std::uint8_t const* qs, std::size_t k) { return (qs[k % 16] >> (4 * (k / 16))) & 15; };
  switch (t) {
    case WeightType::q4_0: return nibble(blk + 2, i) - 8;
    case WeightType::q4_1: return nibble(blk + 4, i);
    case WeightType::q5_0: return (nibble(blk + 6, i) | static_cast<int>(((load_u32(blk + 2) >> i) & 1u) << 4)) - 16;
    case WeightType::q5_1: return nibble(blk + 8, i) | static_cast<int>(((load_u32(blk + 4) >> i) & 1u) << 4);
    case WeightType::q8_0: return static_cast<std::int8_t>(blk[2 + i]);
    case WeightType::iq4_nl: return iq4_value(static_cast<unsigned>(nibble(blk + 2, i)));
    case WeightType::q2_k:  // 2-bit codes: byte (i / 128) * 32 + i % 32, bits 2 * ((i / 32) % 4)
      return (blk[offset::q2_k_qs + (i / 128) * 32 + i % 32] >> (2 * ((i / 32) % 4))) & 3;
    case WeightType::q3_k: {
      int const low = (blk[offset::q3_k_qs + (i / 128) * 32 + i % 32] >> (2 * ((i / 32) % 4))) & 3;
      int const high = (blk[i % 32] >> (i / 32)) & 1;  // hmask: byte i % 32, bit i / 32
      return low - (high ? 0 : 4);
    }
    case WeightType::q4_k:  // nibbles: byte (i / 64) * 32 + i % 32, high nibble for odd sub-blocks
      return (blk[offset::q4_k_qs + (i / 64) * 32 + i % 32] >> (4 * ((i / 32) % 2))) & 15;
    case WeightType::q5_k: {
      int const low = (blk[offset::q5_k_qs + (i / 64) * 32 + i % 32] >> (4 * ((i / 32) % 2))) & 15;
      return low | (((blk[offset::q5_k_qh + i % 32] >> (i / 32)) & 1) << 4);
    }
    case WeightType::q6_k: {  // per half of 128: nibbles at byte 64 * half + i % 64, 2 bits at 32 * half + i % 32
      std::size_t const h = i / 128, r = i % 128;
      int const low = (blk[h * 64 + r % 64] >> (4 * (r / 64))) & 15;
      int const high = (blk[offset::q6_k_qh + h * 32 + r % 32] >> (2 * (r / 32))) & 3;
      return (low | (high << 4)) - 32;
    }
    case WeightType::iq4_xs: {
      std::size_t const j = i % 32;
      return iq4_value(static_cast<unsigned>(blk[offset::iq4_xs_qs + (i / 32) * 16 + j % 16] >> (4 * (j / 16))));
    }
    default: return 0;  // plain types have no codes
  }
}

// ---- sub-block scales as floats ----

/// x = d * code + m for every weight of a sub-block. Symmetric types have m = -0.0f, which leaves
/// every product (signed zeros included) unchanged.
struct Affine {
  float d = 0.0f;
  float m = -0.0f;
};

/// The affine map of sub-block j of a block (j < weight_block_size(t) / sub_block_size(t)).
[[nodiscard]] PIECRUST_HOST_DEVICE inline Affine sub_block_affine(WeightType t, std::uint8_t const* blk,
                                                                   std::size_t j) noexcept {
  switch (t) {
    case WeightType::q4_0:
    case WeightType::q5_0:
    case WeightType::q8_0:
    case WeightType::iq4_nl: return {load_f16(blk), -0.0f};
    case WeightType::q4_1:
    case WeightType::q5_1: return {load_f16(blk), load_f16(blk + 2)};
    case WeightType::q2_k: {
      std::uint8_t const s = blk[j];
      return {mul_rn(load_f16(blk + offset::q2_k_d), static_cast<float>(s & 15)),
              -mul_rn(load_f16(blk + offset::q2_k_dmin), static_cast<float>(s >> 4))};
    }
    case WeightType::q3_k:
      return {mul_rn(load_f16(blk + offset::q3_k_d), static_cast<float>(q3_k_scale(blk + offset::q3_k_scales, j))),
              -0.0f};
    case WeightType::q4_k:
    case WeightType::q5_k: {
      ScaleMin const sm = k4_scale_min(blk + offset::k4_scales, j);
      return {mul_rn(load_f16(blk), static_cast<float>(sm.scale)),
              -mul_rn(load_f16(blk + 2), static_cast<float>(sm.min))};
    }
    case WeightType::q6_k:
      return {mul_rn(load_f16(blk + offset::q6_k_d),
                     static_cast<float>(static_cast<std::int8_t>(blk[offset::q6_k_scales + j]))),
              -0.0f};
    case WeightType::iq4_xs: return {mul_rn(load_f16(blk), static_cast<float>(iq4_xs_scale(blk, j))), -0.0f};
    default: return {};
  }
}

// ---- values ----

[[nodiscard]] PIECRUST_HOST_DEVICE inline float value(Affine a, int q) noexcept {
  return add_rn(mul_rn(a.d, static_cast<float>(q)), a.m);
}

/// Weight c of a row stored at `row` (any WeightType): one element, for kernels that decode as they read.
[[nodiscard]] PIECRUST_HOST_DEVICE inline float dequantize_element(WeightType t, std::uint8_t const* row,
                                                                   std::size_t c) noexcept {
  switch (t) {
    case WeightType::f32: {
      std::uint32_t const bits = load_u32(row + 4 * c);
      return std::bit_cast<float>(bits);
    }
    case WeightType::f16: return Half::to_float(load_u16(row + 2 * c));
    case WeightType::bf16: return BFloat16::to_float(load_u16(row + 2 * c));
    default: break;
  }
  std::size_t const n = weight_block_size(t);
  std::uint8_t const* blk = row + (c / n) * weight_block_bytes(t);
  std::size_t const i = c % n;
  return value(sub_block_affine(t, blk, i / sub_block_size(t)), code(t, blk, i));
}

/// out[0 .. weight_block_size(t)) = the weights of one block (quantized types only).
PIECRUST_HOST_DEVICE inline void dequantize_block(WeightType t, std::uint8_t const* blk, float* out) noexcept {
  std::size_t const n = weight_block_size(t), sub = sub_block_size(t);
  for (std::size_t j = 0; j < n / sub; ++j) {
    Affine const a = sub_block_affine(t, blk, j);
    for (std::size_t i = j * sub; i < (j + 1) * sub; ++i) out[i] = value(a, code(t, blk, i));
  }
}

/// out[0 .. cols) = one row of any type (cols a multiple of the block size).
PIECRUST_HOST_DEVICE inline void dequantize_row(WeightType t, std::uint8_t const* row, float* out,
                                                std::size_t cols) noexcept {
  if (!is_quantized(t)) {
    for (std::size_t c = 0; c < cols; ++c) out[c] = dequantize_element(t, row, c);
    return;
  }
  std::size_t const n = weight_block_size(t), bytes = weight_block_bytes(t);
  for (std::size_t b = 0; b < cols / n; ++b) dequantize_block(t, row + b * bytes, out + b * n);
}

}  // namespace piecrust::quant
