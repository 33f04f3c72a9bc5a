#pragma once
// GgufWriter: builds a GGUF v3 file in memory (metadata + tensors). Used by tests, by the fuzz corpus
// seeds and to save models built in code. Layout: ggml/docs/gguf.md.

#include <piecrust/core/error.hpp>
#include <piecrust/model/ggml_type.hpp>
#include <piecrust/model/gguf_value.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace piecrust {

class GgufWriter {
 public:
  explicit GgufWriter(std::uint64_t alignment = 32, std::uint32_t version = 3)
      : alignment_(alignment), version_(version) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      detail::fail<InvalidArgument>("GgufWriter: alignment = ", alignment, " is not a power of two");
    }
    if (alignment != 32) set("general.alignment", {static_cast<std::uint32_t>(alignment)});
  }

  GgufWriter& set(std::string key, GgufValue value) {
    metadata_.emplace_back(std::move(key), std::move(value));
    return *this;
  }
  GgufWriter& set_string_array(std::string key, std::vector<std::string> const& values) {
    GgufArray arr{GgufValueType::string, {}};
    for (auto const& v : values) arr.values.push_back({v});
    return set(std::move(key), {std::move(arr)});
  }

  /// dims in ggml order (row length first); `data` must hold exactly the tensor's bytes.
  GgufWriter& add_tensor(std::string name, std::vector<std::uint64_t> dims, GgmlType type,
                         std::span<std::byte const> data) {
    if (dims.empty() || dims.size() > 4) detail::fail<InvalidArgument>("GgufWriter: tensor '", name, "' n_dims = ", dims.size());
    std::uint64_t elems = 1;
    for (auto d : dims) elems *= d;
    if (data.size() != ggml_row_bytes(type, elems)) {
      detail::fail<InvalidArgument>("GgufWriter: tensor '", name, "' has ", data.size(), " bytes, expected ",
                                    ggml_row_bytes(type, elems));
    }
    tensors_.push_back({std::move(name), std::move(dims), type, std::vector<std::byte>(data.begin(), data.end())});
    return *this;
  }
  GgufWriter& add_f32(std::string name, std::vector<std::uint64_t> dims, std::span<float const> values) {
    return add_tensor(std::move(name), std::move(dims), GgmlType::f32, std::as_bytes(values));
  }

  [[nodiscard]] std::vector<std::byte> bytes() const {
    std::vector<std::byte> out;
    put<std::uint32_t>(out, 0x46554747);
    put<std::uint32_t>(out, version_);
    put<std::uint64_t>(out, tensors_.size());
    put<std::uint64_t>(out, metadata_.size());
    for (auto const& [k, v] : metadata_) {
      put_string(out, k);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(v.type()));
      put_value(out, v);
    }
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (auto const& t : tensors_) {
      put_string(out, t.name);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) put<std::uint64_t>(out, d);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
      put<std::uint64_t>(out, offset);
      offsets.push_back(offset);
      offset = align(offset + t.data.size());
    }
    out.resize(align(out.size()));
    std::size_t const base = out.size();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(base + offsets[i]);
      out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
    }
    return out;
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> dims;
    GgmlType type;
    std::vector<std::byte> data;
  };

  [[nodiscard]] std::uint64_t align(std::uint64_t x) const { return (x + alignment_ - 1) / alignment_ * alignment_; }

  template <class T>
  static void put(std::vector<std::byte>& out, T v) {
    std::array<std::byte, sizeof(T)> b;
    std::memcpy(b.data(), &v, sizeof(T));
    out.insert(out.end(), b.begin(), b.end());
  }
  static void put_string(std::vector<std::byte>& out, std::string_view s) {
    put<std::uint64_t>(out, s.size());
    auto const* p = reinterpret_cast<std::byte const*>(s.data());
    out.insert(out.end(), p, p + s.size());
  }
  static void put_value(std::vector<std::byte>& out, GgufValue const& v) {
    std::visit(
        [&](auto const& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::string>) {
            put_string(out, x);
          } else if constexpr (std::is_same_v<X, GgufArray>) {
            put<std::uint32_t>(out, static_cast<std::uint32_t>(x.element_type));
            put<std::uint64_t>(out, x.values.size());
            for (auto const& e : x.values) put_value(out, e);
          } else if constexpr (std::is_same_v<X, bool>) {
            put<std::uint8_t>(out, x ? 1 : 0);
          } else {
            put<X>(out, x);
          }
        },
        v.value);
  }

  std::uint64_t alignment_;
  std::uint32_t version_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace piecrust
