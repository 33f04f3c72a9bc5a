#pragma once
// IEEE binary16 and bfloat16 <-> f32 conversions on the host (bit-exact, no hardware dependency).

#include <bit>
#include <cstdint>

namespace piecrust::detail {

/// binary16 -> f32, exact for every input including subnormals, infinities and NaN.
[[nodiscard]] inline float f16_to_f32(std::uint16_t h) noexcept {
  std::uint32_t const sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

/// f32 -> binary16 with round-to-nearest-even (as ggml's GGML_FP32_TO_FP16 on hosts without F16C).
[[nodiscard]] inline std::uint16_t f32_to_f16(float f) noexcept {
  std::uint32_t const x = std::bit_cast<std::uint32_t>(f);
  std::uint32_t const sign = (x >> 16) & 0x8000u;
  std::uint32_t const absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (absx < 0x38800000u) {  // subnormal or zero in f16
    if (absx < 0x33000000u) return static_cast<std::uint16_t>(sign);
    std::uint32_t const e = absx >> 23;
    std::uint32_t const m = (absx & 0x7fffffu) | 0x800000u;
    std::uint32_t const shift = 126 - e;  // value / 2^-24 = m * 2^(e - 126)
    std::uint32_t v = m >> shift;
    std::uint32_t const rem = m & ((1u << shift) - 1);
    std::uint32_t const half = 1u << (shift - 1);
    if (rem > half || (rem == half && (v & 1u))) ++v;
    return static_cast<std::uint16_t>(sign | v);
  }
  std::uint32_t v = ((absx >> 13) - (112u << 10));
  std::uint32_t const rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) ++v;
  return static_cast<std::uint16_t>(sign | v);
}

[[nodiscard]] inline float bf16_to_f32(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// f32 -> bfloat16, round-to-nearest-even (NaN stays NaN).
[[nodiscard]] inline std::uint16_t f32_to_bf16(float f) noexcept {
  std::uint32_t const x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace piecrust::detail
