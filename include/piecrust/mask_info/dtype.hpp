#pragma once
// Element types of MaskInfo arrays (ejKernel's jnp dtypes: bool, int32, float32, float16, bfloat16).
// float16 and bfloat16 values are stored as float, rounded to the target format on every cast
// (round to nearest, ties to even), so a stored value is always exactly representable in its dtype.

#include "piecrust/core/error.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace piecrust::maskinfo {

enum class DType : std::uint8_t { bool_, int32, float32, float16, bfloat16 };

/// The numpy name of a dtype ("bool", "int32", "float32", "float16", "bfloat16").
[[nodiscard]] inline std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::bool_: return "bool";
    case DType::int32: return "int32";
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
  }
  return "?";
}

/// Parses a numpy dtype name; throws InvalidArgument naming the value otherwise.
[[nodiscard]] inline DType parse_dtype(std::string_view name) {
  if (name == "bool" || name == "bool_") return DType::bool_;
  if (name == "int32") return DType::int32;
  if (name == "float32") return DType::float32;
  if (name == "float16") return DType::float16;
  if (name == "bfloat16") return DType::bfloat16;
  piecrust::detail::fail<InvalidArgument>("dtype = '", name, "' is not one of bool, int32, float32, float16, bfloat16");
}

[[nodiscard]] constexpr bool is_floating(DType d) {
  return d == DType::float32 || d == DType::float16 || d == DType::bfloat16;
}

namespace detail {

/// Rounds a float to the nearest bfloat16 (ties to even); NaN stays NaN.
[[nodiscard]] inline float round_to_bfloat16(float v) {
  if (std::isnan(v)) return v;
  std::uint32_t bits = std::bit_cast<std::uint32_t>(v);
  std::uint32_t const lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;
  bits &= 0xffff0000u;
  return std::bit_cast<float>(bits);
}

/// Rounds a float to the nearest IEEE binary16 value (ties to even), overflowing to +-inf.
[[nodiscard]] inline float round_to_float16(float v) {
  if (std::isnan(v) || std::isinf(v) || v == 0.0f) return v;
  float const a = std::fabs(v);
  if (a >= 65520.0f) return std::copysign(std::numeric_limits<float>::infinity(), v);  // rounds past max
  int exp = 0;
  std::frexp(a, &exp);  // a = m * 2^exp, m in [0.5, 1)
  // binary16: 10 fraction bits; normal exponent range 2^-14..2^15, subnormal step 2^-24.
  int const e = exp - 1;  // a in [2^e, 2^(e+1))
  int const step_exp = (e < -14 ? -14 : e) - 10;
  float const step = std::ldexp(1.0f, step_exp);
  float const q = std::nearbyint(a / step) * step;  // FE_TONEAREST: ties to even
  return std::copysign(q, v);
}

}  // namespace detail

/// The value v as stored in dtype d (cast semantics of numpy astype for a finite source value:
/// bool -> v != 0, int32 -> truncation toward zero, floats -> rounded to the format).
[[nodiscard]] inline double cast_value(double v, DType d) {
  switch (d) {
    case DType::bool_: return (v != 0.0 || std::isnan(v)) ? 1.0 : 0.0;
    case DType::int32: {
      if (std::isnan(v)) return 0.0;
      double const t = std::trunc(v);
      if (t >= 2147483647.0) return 2147483647.0;
      if (t <= -2147483648.0) return -2147483648.0;
      return t;
    }
    case DType::float32: return static_cast<double>(static_cast<float>(v));
    case DType::float16: return static_cast<double>(detail::round_to_float16(static_cast<float>(v)));
    case DType::bfloat16: return static_cast<double>(detail::round_to_bfloat16(static_cast<float>(v)));
  }
  return v;
}

/// jnp.finfo(d).min: the lowest finite value (ejKernel's bias value; not -inf).
[[nodiscard]] inline float lowest_finite(DType d) {
  switch (d) {
    case DType::float32: return std::numeric_limits<float>::lowest();  // -3.4028234663852886e38
    case DType::float16: return -65504.0f;
    case DType::bfloat16: return std::bit_cast<float>(std::uint32_t{0xff7f0000u});  // -3.3895313892515355e38
    default: break;
  }
  piecrust::detail::fail<InvalidArgument>("dtype = ", dtype_name(d),
                                          " has no finite minimum: create_bias needs a floating dtype");
}

}  // namespace piecrust::maskinfo
