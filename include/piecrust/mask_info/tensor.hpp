#pragma once
// Small owning n-d arrays for MaskInfo's upstream-shaped results.
//   Tensor<T>: a row-major buffer with a shape (T = std::uint8_t for bool, std::int32_t, float).
//   Array:     a Tensor of one of those element types plus its numpy dtype tag (float16 and bfloat16 are
//              held as float values already rounded to the format; see dtype.hpp).

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace piecrust::maskinfo {

using Shape = std::vector<std::int64_t>;

/// Python's tuple repr of a shape: "(1, 1, 4, 4)", "(5,)", "()".
[[nodiscard]] inline std::string shape_repr(Shape const& s) {
  std::ostringstream out;
  out << '(';
  for (std::size_t i = 0; i < s.size(); ++i) out << (i ? ", " : "") << s[i];
  if (s.size() == 1) out << ',';
  out << ')';
  return out.str();
}

[[nodiscard]] inline std::size_t shape_size(Shape const& s) {
  std::size_t n = 1;
  for (auto const d : s) {
    if (d < 0) piecrust::detail::fail<InvalidArgument>("shape ", shape_repr(s), " has a negative extent ", d);
    n *= static_cast<std::size_t>(d);
  }
  return n;
}

template <class T>
concept TensorElement = std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int32_t> ||
                        std::is_same_v<T, float> || std::is_same_v<T, std::int64_t>;

/// A row-major n-d array that owns its elements.
template <TensorElement T>
class Tensor {
 public:
  using value_type = T;

  Tensor() = default;
  explicit Tensor(Shape shape, T fill = T{}) : shape_(std::move(shape)), data_(shape_size(shape_), fill) {}
  Tensor(Shape shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
    if (data_.size() != shape_size(shape_)) {
      piecrust::detail::fail<InvalidArgument>("Tensor: data has ", data_.size(), " elements but shape ",
                                              shape_repr(shape_), " needs ", shape_size(shape_));
    }
  }

  [[nodiscard]] Shape const& shape() const { return shape_; }
  [[nodiscard]] std::size_t rank() const { return shape_.size(); }
  [[nodiscard]] std::int64_t dim(std::size_t axis) const { return shape_.at(axis); }
  [[nodiscard]] std::size_t size() const { return data_.size(); }
  [[nodiscard]] bool empty() const { return data_.empty(); }
  [[nodiscard]] std::span<T const> data() const { return data_; }
  [[nodiscard]] std::span<T> data() { return data_; }
  [[nodiscard]] std::vector<T> const& vector() const { return data_; }
  [[nodiscard]] T const& operator[](std::size_t flat) const { return data_[flat]; }
  [[nodiscard]] T& operator[](std::size_t flat) { return data_[flat]; }

  /// Element at a full multi-index (no bounds check beyond debug asserts of std::vector).
  template <class... I>
  [[nodiscard]] T const& at(I... idx) const {
    return data_[offset({static_cast<std::int64_t>(idx)...})];
  }
  template <class... I>
  [[nodiscard]] T& at(I... idx) {
    return data_[offset({static_cast<std::int64_t>(idx)...})];
  }

  /// Same elements, new shape of equal size.
  [[nodiscard]] Tensor reshaped(Shape shape) const { return Tensor(std::move(shape), data_); }

  friend bool operator==(Tensor const& a, Tensor const& b) { return a.shape_ == b.shape_ && a.data_ == b.data_; }

 private:
  [[nodiscard]] std::size_t offset(std::initializer_list<std::int64_t> idx) const {
    std::size_t off = 0;
    std::size_t axis = 0;
    for (auto const i : idx) off = off * static_cast<std::size_t>(shape_[axis++]) + static_cast<std::size_t>(i);
    return off;
  }

  Shape shape_;
  std::vector<T> data_;  // row-major, shape_size(shape_) elements
};

using BoolTensor = Tensor<std::uint8_t>;  // 0 = False, 1 = True
using IntTensor = Tensor<std::int32_t>;
using FloatTensor = Tensor<float>;

/// A dtype-tagged array: the value type of upstream results whose dtype is a runtime argument.
class Array {
 public:
  using Storage = std::variant<BoolTensor, IntTensor, FloatTensor>;

  Array() : dtype_(DType::bool_), data_(BoolTensor(Shape{0})) {}
  Array(BoolTensor t) : dtype_(DType::bool_), data_(std::move(t)) {}   // NOLINT: implicit on purpose
  Array(IntTensor t) : dtype_(DType::int32), data_(std::move(t)) {}    // NOLINT
  Array(FloatTensor t, DType d = DType::float32) : dtype_(d), data_(std::move(t)) {  // NOLINT
    if (!is_floating(d)) piecrust::detail::fail<InvalidArgument>("Array: dtype = ", dtype_name(d), " for float data");
    if (d != DType::float32) {
      auto& f = std::get<FloatTensor>(data_);
      for (auto& v : f.data()) v = static_cast<float>(cast_value(v, d));
    }
  }

  /// An array of dtype d from double values (cast with numpy's rules).
  static Array from_values(DType d, Shape shape, std::span<double const> values) {
    std::size_t const n = shape_size(shape);
    if (values.size() != n) {
      piecrust::detail::fail<InvalidArgument>("Array: ", values.size(), " values for shape ", shape_repr(shape));
    }
    switch (d) {
      case DType::bool_: {
        BoolTensor t(std::move(shape));
        for (std::size_t i = 0; i < n; ++i) t[i] = cast_value(values[i], d) != 0.0 ? 1 : 0;
        return t;
      }
      case DType::int32: {
        IntTensor t(std::move(shape));
        for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<std::int32_t>(cast_value(values[i], d));
        return t;
      }
      default: {
        FloatTensor t(std::move(shape));
        for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<float>(values[i]);
        return Array(std::move(t), d);
      }
    }
  }

  [[nodiscard]] DType dtype() const { return dtype_; }
  [[nodiscard]] Shape const& shape() const {
    return std::visit([](auto const& t) -> Shape const& { return t.shape(); }, data_);
  }
  [[nodiscard]] std::size_t rank() const { return shape().size(); }
  [[nodiscard]] std::int64_t dim(std::size_t axis) const { return shape().at(axis); }
  [[nodiscard]] std::size_t size() const {
    return std::visit([](auto const& t) { return t.size(); }, data_);
  }
  [[nodiscard]] Storage const& storage() const { return data_; }

  /// Element `flat` as a double (bool -> 0/1).
  [[nodiscard]] double value(std::size_t flat) const {
    return std::visit([flat](auto const& t) { return static_cast<double>(t[flat]); }, data_);
  }

  /// numpy astype(bool): non-zero (and NaN) is True.
  [[nodiscard]] BoolTensor to_bool() const {
    if (auto const* b = std::get_if<BoolTensor>(&data_)) return *b;
    BoolTensor out(shape());
    std::visit(
        [&out](auto const& t) {
          for (std::size_t i = 0; i < t.size(); ++i) out[i] = (t[i] != 0 || t[i] != t[i]) ? 1 : 0;
        },
        data_);
    return out;
  }

  /// numpy astype(int32): truncation toward zero.
  [[nodiscard]] IntTensor to_int32() const {
    if (auto const* i = std::get_if<IntTensor>(&data_)) return *i;
    IntTensor out(shape());
    for (std::size_t k = 0; k < size(); ++k) out[k] = static_cast<std::int32_t>(cast_value(value(k), DType::int32));
    return out;
  }

  /// numpy astype(d).
  [[nodiscard]] Array astype(DType d) const {
    if (d == dtype_) return *this;
    if (d == DType::bool_) return to_bool();
    if (d == DType::int32) return to_int32();
    FloatTensor out(shape());
    for (std::size_t k = 0; k < size(); ++k) out[k] = static_cast<float>(value(k));
    return Array(std::move(out), d);
  }

  [[nodiscard]] bool is_bool() const { return dtype_ == DType::bool_; }
  [[nodiscard]] BoolTensor const& bools() const { return std::get<BoolTensor>(data_); }

  friend bool operator==(Array const& a, Array const& b) { return a.dtype_ == b.dtype_ && a.data_ == b.data_; }

 private:
  DType dtype_;
  Storage data_;
};

/// A bool mask cast to dtype d (True -> 1, False -> 0).
[[nodiscard]] inline Array cast_bool(BoolTensor const& m, DType d) {
  if (d == DType::bool_) return m;
  if (d == DType::int32) {
    IntTensor out(m.shape());
    for (std::size_t i = 0; i < m.size(); ++i) out[i] = m[i];
    return out;
  }
  FloatTensor out(m.shape());
  for (std::size_t i = 0; i < m.size(); ++i) out[i] = m[i] ? 1.0f : 0.0f;
  return Array(std::move(out), d);
}

}  // namespace piecrust::maskinfo
