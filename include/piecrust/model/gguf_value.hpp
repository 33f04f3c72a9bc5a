#pragma once
// GgufValue: one metadata value of a GGUF file (a scalar, a string or an array of values).
//
// Value type numbers follow the GGUF specification (ggml/docs/gguf.md, `enum gguf_metadata_value_type`).
//
// Arrays are packed (GgufValues): a u8 element takes one byte and a string its characters plus one offset, as
// in the file, instead of one variant object each (~40 bytes per u8 element).

#include <piecrust/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
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

/// Bytes of one element of a fixed-width type in a GGUF file (and in a packed array); 0 for string and array.
[[nodiscard]] constexpr std::size_t gguf_scalar_width(GgufValueType t) noexcept {
  switch (t) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean: return 1;
    case GgufValueType::u16:
    case GgufValueType::i16: return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32: return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64: return 8;
    case GgufValueType::string:
    case GgufValueType::array: return 0;
  }
  return 0;
}

struct GgufValue;
struct GgufArray;
class GgufFile;

/// The elements of a GgufArray, all of one type, packed by kind: fixed-width scalars as their little-endian
/// bytes, strings as one character buffer with end offsets, nested arrays as GgufArray objects. Elements are
/// read as GgufValue copies (operator[], iteration) or without copying (string_at, array_at).
class GgufValues {
 public:
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using value_type = GgufValue;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(GgufValues const* values, std::size_t i) noexcept : values_(values), i_(i) {}
    [[nodiscard]] GgufValue operator*() const;
    iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    iterator operator++(int) noexcept {
      auto const old = *this;
      ++i_;
      return old;
    }
    friend bool operator==(iterator const& a, iterator const& b) noexcept { return a.i_ == b.i_; }

   private:
    GgufValues const* values_ = nullptr;
    std::size_t i_ = 0;
  };

  GgufValues() = default;
  GgufValues(std::initializer_list<GgufValue> values);

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// The elements' type; nullopt while no element has been added.
  [[nodiscard]] std::optional<GgufValueType> type() const noexcept { return type_; }

  /// Element i as a value (a copy). Throws OutOfRange for i >= size().
  [[nodiscard]] GgufValue operator[](std::size_t i) const;
  /// Element i of an array of strings, without a copy. Throws OutOfRange or InvalidArgument (not strings).
  [[nodiscard]] std::string_view string_at(std::size_t i) const {
    check(i, GgufValueType::string, "string_at");
    std::uint64_t const begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(chars_).substr(static_cast<std::size_t>(begin), static_cast<std::size_t>(ends_[i] - begin));
  }
  /// Element i of an array of arrays, without a copy. Throws OutOfRange or InvalidArgument (not arrays).
  [[nodiscard]] GgufArray const& array_at(std::size_t i) const;

  [[nodiscard]] iterator begin() const noexcept { return {this, 0}; }
  [[nodiscard]] iterator end() const noexcept { return {this, size_}; }

  /// Appends v. Throws InvalidArgument (nothing appended) when v's type differs from the elements'.
  void push_back(GgufValue const& v);

  /// Heap bytes these elements hold (their buffers' capacities and, for nested arrays, theirs).
  [[nodiscard]] std::size_t heap_bytes() const noexcept;

 private:
  friend class GgufFile;  // the reader fills the buffers directly from the file's bytes

  void check(std::size_t i, GgufValueType want, char const* op) const {
    if (i >= size_) detail::fail<OutOfRange>("GgufValues::", op, ": index ", i, " >= size ", size_);
    if (type_ != want) {
      detail::fail<InvalidArgument>("GgufValues::", op, ": the elements have type ", gguf_value_type_name(*type_),
                                    ", not ", gguf_value_type_name(want));
    }
  }

  std::optional<GgufValueType> type_;
  std::size_t size_ = 0;
  std::vector<std::byte> scalars_;   // [size][width]: fixed-width elements, little-endian as in the file
  std::string chars_;                // strings, concatenated
  std::vector<std::uint64_t> ends_;  // [size]: end of string i in chars_
  std::vector<GgufArray> arrays_;    // [size]: nested arrays
};

/// A homogeneous array: every element has type `element_type` (arrays may nest).
struct GgufArray {
  GgufValueType element_type = GgufValueType::u8;
  GgufValues values;
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

inline GgufValue GgufValues::iterator::operator*() const { return (*values_)[i_]; }

inline GgufValues::GgufValues(std::initializer_list<GgufValue> values) {
  for (auto const& v : values) push_back(v);
}

inline GgufValue GgufValues::operator[](std::size_t i) const {
  if (i >= size_) detail::fail<OutOfRange>("GgufValues: index ", i, " >= size ", size_);
  auto const scalar = [&]<class T>(T) {
    T out;
    std::memcpy(&out, scalars_.data() + i * sizeof(T), sizeof(T));
    return GgufValue{out};
  };
  switch (*type_) {
    case GgufValueType::u8: return scalar(std::uint8_t{});
    case GgufValueType::i8: return scalar(std::int8_t{});
    case GgufValueType::u16: return scalar(std::uint16_t{});
    case GgufValueType::i16: return scalar(std::int16_t{});
    case GgufValueType::u32: return scalar(std::uint32_t{});
    case GgufValueType::i32: return scalar(std::int32_t{});
    case GgufValueType::f32: return scalar(float{});
    case GgufValueType::boolean: return GgufValue{scalars_[i] != std::byte{0}};
    case GgufValueType::string: return GgufValue{std::string(string_at(i))};
    case GgufValueType::array: return GgufValue{arrays_[i]};
    case GgufValueType::u64: return scalar(std::uint64_t{});
    case GgufValueType::i64: return scalar(std::int64_t{});
    case GgufValueType::f64: return scalar(double{});
  }
  detail::fail<InvalidState>("GgufValues: bad element type");
}

inline GgufArray const& GgufValues::array_at(std::size_t i) const {
  check(i, GgufValueType::array, "array_at");
  return arrays_[i];
}

inline void GgufValues::push_back(GgufValue const& v) {
  auto const t = v.type();
  if (type_ && *type_ != t) {
    detail::fail<InvalidArgument>("GgufValues::push_back: a value of type ", gguf_value_type_name(t),
                                  " in an array of ", gguf_value_type_name(*type_));
  }
  if (auto const* s = std::get_if<std::string>(&v.value)) {
    ends_.push_back(chars_.size() + s->size());
    try {
      chars_ += *s;
    } catch (...) {
      ends_.pop_back();
      throw;
    }
  } else if (auto const* a = std::get_if<GgufArray>(&v.value)) {
    arrays_.push_back(*a);
  } else if (auto const* b = std::get_if<bool>(&v.value)) {
    scalars_.push_back(*b ? std::byte{1} : std::byte{0});
  } else {
    std::visit(
        [&](auto const& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_arithmetic_v<X>) {
            std::byte b[sizeof(X)];
            std::memcpy(b, &x, sizeof(X));
            scalars_.insert(scalars_.end(), b, b + sizeof(X));
          }
        },
        v.value);
  }
  type_ = t;
  ++size_;
}

inline std::size_t GgufValues::heap_bytes() const noexcept {
  std::size_t n = scalars_.capacity() + ends_.capacity() * sizeof(std::uint64_t) +
                  arrays_.capacity() * sizeof(GgufArray);
  if (chars_.capacity() > std::string().capacity()) n += chars_.capacity() + 1;  // beyond the in-object buffer
  for (auto const& a : arrays_) n += a.values.heap_bytes();
  return n;
}

}  // namespace piecrust
