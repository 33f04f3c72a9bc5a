#pragma once
// GgufFile: a parsed GGUF (v2 or v3) file — metadata, tensor infos, and the tensor data, memory-mapped.
//
// Format: ggml/docs/gguf.md. Every count, length, offset and size is checked against the bytes that are
// actually there before it is used, so a truncated or corrupted file throws FormatError naming what was
// being read and where; it never reads out of bounds or allocates from an unchecked count.

#include <piecrust/core/error.hpp>
#include <piecrust/model/detail/byte_cursor.hpp>
#include <piecrust/model/detail/mapped_file.hpp>
#include <piecrust/model/ggml_type.hpp>
#include <piecrust/model/gguf_tensor_info.hpp>
#include <piecrust/model/gguf_value.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace piecrust {

class GgufFile {
 public:
  static constexpr std::uint32_t magic = 0x46554747;  // "GGUF" read as a little-endian u32
  static constexpr std::uint64_t default_alignment = 32;  // gguf.md: GGUF_DEFAULT_ALIGNMENT
  static constexpr int max_array_depth = 8;  // nesting limit for arrays of arrays (a defence, not a spec value)

  /// Maps and parses the file at `path`. Throws InvalidArgument when it cannot be opened, FormatError when
  /// it is not a well-formed GGUF file, Unsupported for version 1 or an unknown tensor type.
  [[nodiscard]] static GgufFile open(std::string const& path) {
    auto mapping = std::make_shared<detail::MappedFile>(path);
    auto const bytes = mapping->bytes();
    return GgufFile(std::move(mapping), bytes, path);
  }

  /// Parses an in-memory copy of a GGUF file (tests, fuzzing, blobs).
  [[nodiscard]] static GgufFile parse(std::vector<std::byte> bytes, std::string source = "<memory>") {
    auto owned = std::make_shared<std::vector<std::byte>>(std::move(bytes));
    std::span<std::byte const> const view(owned->data(), owned->size());
    return GgufFile(std::move(owned), view, std::move(source));
  }

  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::string const& source() const noexcept { return source_; }
  /// Offset of the data section from the start of the file.
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }

  /// Metadata in file order.
  [[nodiscard]] std::vector<std::pair<std::string, GgufValue>> const& metadata() const noexcept { return metadata_; }
  [[nodiscard]] GgufValue const* find(std::string_view key) const {
    auto const it = metadata_index_.find(std::string(key));
    return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
  }
  [[nodiscard]] bool contains(std::string_view key) const { return find(key) != nullptr; }
  /// The value of `key` as T; FormatError when missing or of a type that does not convert.
  template <class T>
  [[nodiscard]] T get(std::string_view key) const {
    auto const* v = find(key);
    if (v == nullptr) detail::fail<FormatError>(source_, ": missing metadata key '", key, "'");
    return v->as<T>(key);
  }
  template <class T>
  [[nodiscard]] T get_or(std::string_view key, T fallback) const {
    auto const* v = find(key);
    return v == nullptr ? fallback : v->as<T>(key);
  }
  /// A string array (tokens, merges) without copying the GgufArray; FormatError when missing or not strings.
  [[nodiscard]] GgufArray const& array(std::string_view key) const {
    auto const* v = find(key);
    if (v == nullptr) detail::fail<FormatError>(source_, ": missing metadata key '", key, "'");
    auto const* a = std::get_if<GgufArray>(&v->value);
    if (a == nullptr) {
      detail::fail<FormatError>(source_, ": metadata '", key, "' has type ", gguf_value_type_name(v->type()),
                                ", expected an array");
    }
    return *a;
  }

  [[nodiscard]] std::vector<GgufTensorInfo> const& tensors() const noexcept { return tensors_; }
  [[nodiscard]] GgufTensorInfo const* find_tensor(std::string_view name) const {
    auto const it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  /// FormatError when the tensor is missing.
  [[nodiscard]] GgufTensorInfo const& tensor(std::string_view name) const {
    auto const* t = find_tensor(name);
    if (t == nullptr) detail::fail<FormatError>(source_, ": missing tensor '", name, "'");
    return *t;
  }
  /// The bytes of a tensor (already bounds-checked at parse time).
  [[nodiscard]] std::span<std::byte const> tensor_data(GgufTensorInfo const& info) const {
    return bytes_.subspan(static_cast<std::size_t>(data_offset_ + info.offset),
                          static_cast<std::size_t>(info.size_bytes));
  }

 private:
  GgufFile(std::shared_ptr<void const> owner, std::span<std::byte const> bytes, std::string source)
      : owner_(std::move(owner)), bytes_(bytes), source_(std::move(source)) {
    parse_all();
  }

  void parse_all() {
    detail::ByteCursor cur(bytes_, source_);
    auto const m = cur.read<std::uint32_t>("the magic number");
    if (m != magic) detail::fail<FormatError>(source_, ": bad magic 0x", std::hex, m, " at offset 0 (expected 'GGUF')");
    version_ = cur.read<std::uint32_t>("the version");
    if (version_ == 1) {
      detail::fail<Unsupported>(source_, ": GGUF version 1 (32-bit counts) is not supported; re-convert the model");
    }
    if (version_ != 2 && version_ != 3) {
      detail::fail<FormatError>(source_, ": unknown GGUF version ", version_, " (supported: 2, 3)");
    }
    auto const tensor_count = cur.read<std::uint64_t>("the tensor count");
    auto const kv_count = cur.read<std::uint64_t>("the metadata count");
    // Each metadata entry needs >= 8 (key length) + 4 (type) + 1 bytes; each tensor info >= 8 + 4 + 8 + 4 + 8.
    if (kv_count > cur.remaining() / 13) {
      detail::fail<FormatError>(source_, ": metadata count ", kv_count, " at offset 16 cannot fit in the ",
                                cur.remaining(), " bytes left");
    }
    if (tensor_count > cur.remaining() / 32) {
      detail::fail<FormatError>(source_, ": tensor count ", tensor_count, " at offset 8 cannot fit in the ",
                                cur.remaining(), " bytes left");
    }
    metadata_.reserve(static_cast<std::size_t>(kv_count));
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      auto const key_at = cur.offset();
      auto key = cur.read_string(detail::message("the key of metadata entry ", i));
      auto const type = read_type(cur, detail::message("the type of metadata '", key, "'"));
      auto value = read_value(cur, type, key, 0);
      if (!metadata_index_.emplace(key, metadata_.size()).second) {
        detail::fail<FormatError>(source_, ": duplicate metadata key '", key, "' at offset ", key_at);
      }
      metadata_.emplace_back(std::move(key), std::move(value));
    }

    alignment_ = default_alignment;
    if (auto const* a = find("general.alignment")) {
      alignment_ = a->as<std::uint64_t>("general.alignment");
      if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
        detail::fail<FormatError>(source_, ": general.alignment = ", alignment_, " is not a power of two");
      }
    }

    tensors_.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensorInfo t;
      auto const at = cur.offset();
      t.name = cur.read_string(detail::message("the name of tensor ", i));
      t.n_dims = cur.read<std::uint32_t>(detail::message("n_dims of tensor '", t.name, "'"));
      if (t.n_dims == 0 || t.n_dims > 4) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' at offset ", at, " has n_dims = ", t.n_dims,
                                  " (must be 1..4)");
      }
      for (std::uint32_t d = 0; d < t.n_dims; ++d) {
        t.dims[d] = cur.read<std::uint64_t>(detail::message("dimension ", d, " of tensor '", t.name, "'"));
      }
      auto const raw_type = cur.read<std::uint32_t>(detail::message("the type of tensor '", t.name, "'"));
      auto const traits = ggml_type_traits(raw_type);
      if (!traits) detail::fail<Unsupported>(source_, ": tensor '", t.name, "' has unknown ggml type ", raw_type);
      t.type = static_cast<GgmlType>(raw_type);
      t.offset = cur.read<std::uint64_t>(detail::message("the data offset of tensor '", t.name, "'"));
      // Element count, with overflow checks: any product beyond 2^62 is certainly larger than the file.
      std::uint64_t elems = 1;
      for (auto const d : t.dims) {
        if (d == 0) detail::fail<FormatError>(source_, ": tensor '", t.name, "' has a zero dimension");
        if (d > (std::uint64_t{1} << 62) / elems) {
          detail::fail<FormatError>(source_, ": tensor '", t.name, "' element count overflows");
        }
        elems *= d;
      }
      if (t.dims[0] % traits->block_elems != 0) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' row length ", t.dims[0],
                                  " is not a multiple of the ", traits->name, " block size ", traits->block_elems);
      }
      t.size_bytes = elems / traits->block_elems * traits->block_bytes;
      if (t.offset % alignment_ != 0) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' data offset ", t.offset,
                                  " is not a multiple of the alignment ", alignment_);
      }
      if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
        detail::fail<FormatError>(source_, ": duplicate tensor name '", t.name, "' at offset ", at);
      }
      tensors_.push_back(std::move(t));
    }

    auto const end_of_infos = static_cast<std::uint64_t>(cur.offset());
    data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
    std::uint64_t const file_size = bytes_.size();
    if (!tensors_.empty() && data_offset_ > file_size) {
      detail::fail<FormatError>(source_, ": data section at offset ", data_offset_, " lies past the end of the ",
                                file_size, "-byte file");
    }
    std::uint64_t const data_size = data_offset_ > file_size ? 0 : file_size - data_offset_;
    for (auto const& t : tensors_) {
      if (t.offset > data_size || t.size_bytes > data_size - t.offset) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' data [", t.offset, ", +", t.size_bytes,
                                  ") runs past the ", data_size, "-byte data section (file truncated?)");
      }
    }
  }

  GgufValueType read_type(detail::ByteCursor& cur, std::string const& what) const {
    auto const at = cur.offset();
    auto const raw = cur.read<std::uint32_t>(what);
    if (raw > static_cast<std::uint32_t>(GgufValueType::f64)) {
      detail::fail<FormatError>(source_, ": unknown value type ", raw, " for ", what, " at offset ", at);
    }
    return static_cast<GgufValueType>(raw);
  }

  static std::uint64_t min_bytes(GgufValueType t) noexcept {
    switch (t) {
      case GgufValueType::u8:
      case GgufValueType::i8:
      case GgufValueType::boolean: return 1;
      case GgufValueType::u16:
      case GgufValueType::i16: return 2;
      case GgufValueType::u32:
      case GgufValueType::i32:
      case GgufValueType::f32: return 4;
      case GgufValueType::array: return 12;
      default: return 8;
    }
  }

  GgufValue read_value(detail::ByteCursor& cur, GgufValueType type, std::string const& key, int depth) const {
    switch (type) {
      case GgufValueType::u8: return {cur.read<std::uint8_t>(key)};
      case GgufValueType::i8: return {cur.read<std::int8_t>(key)};
      case GgufValueType::u16: return {cur.read<std::uint16_t>(key)};
      case GgufValueType::i16: return {cur.read<std::int16_t>(key)};
      case GgufValueType::u32: return {cur.read<std::uint32_t>(key)};
      case GgufValueType::i32: return {cur.read<std::int32_t>(key)};
      case GgufValueType::f32: return {cur.read<float>(key)};
      case GgufValueType::boolean: {
        auto const at = cur.offset();
        auto const b = cur.read<std::uint8_t>(key);
        if (b > 1) detail::fail<FormatError>(source_, ": bool ", key, " at offset ", at, " has byte value ", int(b));
        return {b == 1};
      }
      case GgufValueType::string: return {cur.read_string(key)};
      case GgufValueType::u64: return {cur.read<std::uint64_t>(key)};
      case GgufValueType::i64: return {cur.read<std::int64_t>(key)};
      case GgufValueType::f64: return {cur.read<double>(key)};
      case GgufValueType::array: {
        if (depth >= max_array_depth) {
          detail::fail<FormatError>(source_, ": metadata '", key, "' nests arrays deeper than ", max_array_depth);
        }
        GgufArray arr;
        arr.element_type = read_type(cur, detail::message("the element type of array '", key, "'"));
        auto const at = cur.offset();
        auto const n = cur.read<std::uint64_t>(detail::message("the length of array '", key, "'"));
        if (n > cur.remaining() / min_bytes(arr.element_type)) {
          detail::fail<FormatError>(source_, ": array '", key, "' length ", n, " at offset ", at,
                                    " cannot fit in the ", cur.remaining(), " bytes left");
        }
        arr.values.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) arr.values.push_back(read_value(cur, arr.element_type, key, depth + 1));
        return {std::move(arr)};
      }
    }
    detail::fail<FormatError>(source_, ": bad value type for '", key, "'");
  }

  std::shared_ptr<void const> owner_;
  std::span<std::byte const> bytes_;
  std::string source_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, std::size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace piecrust
