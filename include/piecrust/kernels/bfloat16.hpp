#pragma once
// BFloat16 and Half: 16-bit storage types with float conversion (no arithmetic of their own).

#include <bit>
#include <cstdint>
#include <type_traits>

#include "piecrust/config.hpp"

namespace piecrust {

/// bfloat16: the high 16 bits of an IEEE binary32. Conversion from float rounds to nearest even and
/// keeps NaN a (quiet) NaN. Source: the bfloat16 format as used by PyTorch's c10::BFloat16
/// (round_to_nearest_even).
struct BFloat16 {
  std::uint16_t bits = 0;

  constexpr BFloat16() noexcept = default;
  PIECRUST_HOST_DEVICE constexpr explicit BFloat16(float f) noexcept : bits(from_float(f)) {}
  PIECRUST_HOST_DEVICE constexpr explicit operator float() const noexcept { return to_float(bits); }

  PIECRUST_HOST_DEVICE static constexpr float to_float(std::uint16_t b) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
  }
  PIECRUST_HOST_DEVICE static constexpr std::uint16_t from_float(float f) noexcept {
    std::uint32_t const u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
    std::uint32_t const rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>((u + rounding) >> 16);
  }
  friend constexpr bool operator==(BFloat16, BFloat16) noexcept = default;
};

/// IEEE binary16 (GGUF's F16 tensors and the scales of its quantized blocks). Conversion is exact from
/// half to float; float to half rounds to nearest even (used only by tests and quantizers).
struct Half {
  std::uint16_t bits = 0;

  constexpr Half() noexcept = default;
  PIECRUST_HOST_DEVICE constexpr explicit Half(float f) noexcept : bits(from_float(f)) {}
  PIECRUST_HOST_DEVICE constexpr explicit operator float() const noexcept { return to_float(bits); }

  PIECRUST_HOST_DEVICE static constexpr float to_float(std::uint16_t h) noexcept {
    std::uint32_t const sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
    if (exp == 0) {
      if (mant == 0) return std::bit_cast<float>(sign);
      // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      return std::bit_cast<float>(sign | (exp << 23) | (mant << 13));
    }
    return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (mant << 13));
  }
  PIECRUST_HOST_DEVICE static constexpr std::uint16_t from_float(float f) noexcept {
    std::uint32_t const u = std::bit_cast<std::uint32_t>(f);
    std::uint32_t const sign = (u >> 16) & 0x8000u;
    std::uint32_t const absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);
    if (absu >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
    int const exp = static_cast<int>(absu >> 23) - 127 + 15;
    if (exp <= 0) {  // subnormal half
      if (exp < -10) return static_cast<std::uint16_t>(sign);
      std::uint32_t const mant = (absu & 0x7fffffu) | 0x800000u;
      int const shift = 14 - exp;
      std::uint32_t half_mant = mant >> shift;
      std::uint32_t const rem = mant & ((1u << shift) - 1u);
      std::uint32_t const halfway = 1u << (shift - 1);
      if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
      return static_cast<std::uint16_t>(sign | half_mant);
    }
    std::uint32_t half = (static_cast<std::uint32_t>(exp) << 10) | ((absu >> 13) & 0x3ffu);
    std::uint32_t const rem = absu & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  friend constexpr bool operator==(Half, Half) noexcept = default;
};

/// Element conversion used by every kernel that reads KV or activations of type T.
PIECRUST_HOST_DEVICE constexpr float to_float(float x) noexcept { return x; }
PIECRUST_HOST_DEVICE constexpr float to_float(BFloat16 x) noexcept { return BFloat16::to_float(x.bits); }
PIECRUST_HOST_DEVICE constexpr float to_float(Half x) noexcept { return Half::to_float(x.bits); }

/// Element conversion used by every kernel that writes T.
template <class T>
PIECRUST_HOST_DEVICE constexpr T from_float(float x) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    return T(x);
  }
}

/// The KV / activation element types the kernels accept.
template <class T>
concept KvElement = std::is_same_v<T, float> || std::is_same_v<T, BFloat16>;

}  // namespace piecrust
