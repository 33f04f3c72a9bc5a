#pragma once
// GgufValue: one metadata value of a GGUF file (a scalar, a string or an array of values).
//
// Value type numbers follow the GGUF specification (ggml/docs/gguf.md, `enum gguf_metadata_value_type`).

#include <piecrust/core/error.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace piecrust {

enum class GgufValueType : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

[[nodiscard]] constexpr std::string_view gguf_value_type_name(GgufValueType t) noexcept {
  switch (t) {
    case GgufValueType::u8: return "u8";
    case GgufValueType::i8: return "i8";
    case GgufValueType::u16: return "u16";
    case GgufValueType::i16: return "i16";
    case GgufValueType::u32: return "u32";
    case GgufValueType::i32: return "i32";
    case GgufValueType::f32: return "f32";
    case GgufValueType::boolean: return "bool";
    case GgufValueType::string: return "string";
    case GgufValueType::array: return "array";
    case GgufValueType::u64: return "u64";
    case GgufValueType::i64: return "i64";
    case GgufValueType::f64: return "f64";
  }
  return "unknown";
}

struct GgufValue;

/// A homogeneous array: every element has type `element_type` (arrays may nest).
struct GgufArray {
  GgufValueType element_type = GgufValueType::u8;
  std::vector<GgufValue> values;
};

struct GgufValue {
  // Alternative index i holds GgufValueType(i): the order matches the GGUF numbering.
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                               float, bool, std::string, GgufArray, std::uint64_t, std::int64_t, double>;
  Storage value;

  [[nodiscard]] GgufValueType type() const noexcept { return static_cast<GgufValueType>(value.index()); }
  [[nodiscard]] bool is_integer() const noexcept {
    auto const t = type();
    return t != GgufValueType::f32 && t != GgufValueType::f64 && t != GgufValueType::boolean &&
           t != GgufValueType::string && t != GgufValueType::array;
  }

  /// The value as T. Integers convert between integer types when the value fits; f32 and f64 convert to
  /// each other; anything else throws FormatError naming `what` (usually the metadata key).
  template <class T>
  [[nodiscard]] T as(std::string_view what) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (auto const* b = std::get_if<bool>(&value)) return *b;
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (auto const* s = std::get_if<std::string>(&value)) return *s;
    } else if constexpr (std::is_same_v<T, GgufArray>) {
      if (auto const* a = std::get_if<GgufArray>(&value)) return *a;
    } else if constexpr (std::is_floating_point_v<T>) {
      if (auto const* f = std::get_if<float>(&value)) return static_cast<T>(*f);
      if (auto const* d = std::get_if<double>(&value)) return static_cast<T>(*d);
    } else if constexpr (std::is_integral_v<T>) {
      if (is_integer()) {
        bool fits = false;
        T out{};
        std::visit(
            [&](auto const& v) {
              using V = std::decay_t<decltype(v)>;
              if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
                if (std::in_range<T>(v)) {
                  fits = true;
                  out = static_cast<T>(v);
                }
              }
            },
            value);
        if (fits) return out;
        detail::fail<FormatError>("GGUF metadata ", what, ": integer value does not fit the requested type");
      }
    }
    detail::fail<FormatError>("GGUF metadata ", what, ": has type ", gguf_value_type_name(type()),
                              ", which does not convert to the requested type");
  }
};

}  // namespace piecrust
