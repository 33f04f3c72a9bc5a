#pragma once
// GgufFile: a parsed GGUF (v2 or v3) file — metadata, tensor infos, and the tensor data, memory-mapped.
//
// Format: ggml/docs/gguf.md. The file is untrusted: every count, length, offset and size is checked against
// the bytes that are actually there, and every size product for overflow, before it is used, so a truncated
// or corrupted file throws FormatError naming what was being read, where and the value; it never reads out
// of bounds. Tensor data ranges lie inside the data section and do not overlap. What the parsed metadata and
// tensor table may cost in memory is bounded by GgufLimits (LimitExceeded), checked before each allocation.

#include <piecrust/core/error.hpp>
#include <piecrust/model/detail/byte_cursor.hpp>
#include <piecrust/model/detail/mapped_file.hpp>
#include <piecrust/model/ggml_type.hpp>
#include <piecrust/model/gguf_tensor_info.hpp>
#include <piecrust/model/gguf_value.hpp>

#include <algorithm>
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

/// What parsing a GGUF file may cost in memory, beyond the file's own bytes. The parsed metadata and tensor
/// table may take at most min(max_metadata_bytes, metadata_bytes_per_file_byte * file size +
/// metadata_slack_bytes). A packed array costs about what it takes in the file, so only files made mostly of
/// tiny entries or nested arrays (a fixed-size object each) come near the relative bound; the ceiling holds
/// whatever the file's size and is far above what real tokenizers need.
struct GgufLimits {
  std::uint64_t max_metadata_bytes = std::uint64_t{256} << 20;
  std::uint64_t metadata_bytes_per_file_byte = 4;
  std::uint64_t metadata_slack_bytes = std::uint64_t{1} << 20;
};

class GgufFile {
 public:
  static constexpr std::uint32_t magic = 0x46554747;  // "GGUF" read as a little-endian u32
  static constexpr std::uint64_t default_alignment = 32;  // gguf.md: GGUF_DEFAULT_ALIGNMENT
  static constexpr int max_array_depth = 8;  // nesting limit for arrays of arrays (a defence, not a spec value)

  /// Maps and parses the file at `path`. Throws InvalidArgument when it cannot be opened, FormatError when
  /// it is not a well-formed GGUF file, Unsupported for version 1 or an unknown tensor type, LimitExceeded
  /// when its metadata would cost more memory than `limits` allow.
  [[nodiscard]] static GgufFile open(std::string const& path, GgufLimits const& limits = {}) {
    auto mapping = std::make_shared<detail::MappedFile>(path);
    auto const bytes = mapping->bytes();
    return GgufFile(std::move(mapping), bytes, path, limits);
  }

  /// Parses an in-memory copy of a GGUF file (tests, fuzzing, blobs).
  [[nodiscard]] static GgufFile parse(std::vector<std::byte> bytes, std::string source = "<memory>",
                                      GgufLimits const& limits = {}) {
    auto owned = std::make_shared<std::vector<std::byte>>(std::move(bytes));
    std::span<std::byte const> const view(owned->data(), owned->size());
    return GgufFile(std::move(owned), view, std::move(source), limits);
  }

  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::string const& source() const noexcept { return source_; }
  /// Offset of the data section from the start of the file.
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }
  /// Bytes of memory the parsed metadata and tensor table take, as GgufLimits counts them (an upper bound of
  /// their allocations, the file's own bytes not included).
  [[nodiscard]] std::uint64_t memory_bytes() const noexcept { return used_; }

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
  /// An array (tokens, merges) without copying the GgufArray; FormatError when missing or not an array.
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
  /// The bytes of a tensor: [size_bytes], inside the data section. Throws OutOfRange for an info whose range
  /// does not lie there (one that is not from this file).
  [[nodiscard]] std::span<std::byte const> tensor_data(GgufTensorInfo const& info) const {
    std::uint64_t const data_size = bytes_.size() - std::min<std::uint64_t>(data_offset_, bytes_.size());
    if (info.offset > data_size || info.size_bytes > data_size - info.offset) {
      detail::fail<OutOfRange>(source_, ": tensor_data: tensor '", info.name, "' data [", info.offset, ", +",
                               info.size_bytes, ") is not inside the ", data_size, "-byte data section");
    }
    return bytes_.subspan(static_cast<std::size_t>(data_offset_ + info.offset), static_cast<std::size_t>(info.size_bytes));
  }

 private:
  GgufFile(std::shared_ptr<void const> owner, std::span<std::byte const> bytes, std::string source,
           GgufLimits const& limits)
      : owner_(std::move(owner)), bytes_(bytes), source_(std::move(source)), limits_(limits) {
    auto const relative = detail::checked_mul(limits.metadata_bytes_per_file_byte, bytes_.size());
    auto const with_slack = relative ? detail::checked_add(*relative, limits.metadata_slack_bytes) : std::nullopt;
    budget_ = std::min(limits.max_metadata_bytes, with_slack.value_or(limits.max_metadata_bytes));
    parse_all();
  }

  // Memory a metadata entry or tensor info costs besides its strings: the object in its vector, and the
  // index's node (key copy, position, hash, link) and bucket.
  static constexpr std::uint64_t index_node_bytes = sizeof(std::string) + sizeof(std::size_t) + 3 * sizeof(void*);
  static constexpr std::uint64_t entry_bytes = sizeof(std::pair<std::string, GgufValue>) + index_node_bytes;
  static constexpr std::uint64_t tensor_info_bytes = sizeof(GgufTensorInfo) + index_node_bytes;

  /// Counts `bytes` more of memory for `what`, before they are allocated; LimitExceeded past the budget.
  void charge(std::optional<std::uint64_t> bytes, std::string_view what) {
    if (!bytes || *bytes > budget_ - used_) {
      auto const total = bytes ? detail::checked_add(used_, *bytes) : std::nullopt;
      detail::fail<LimitExceeded>(source_, ": ", what, " would bring the parsed metadata to ",
                                  total ? detail::message(*total) : std::string("more than 2^64"),
                                  " bytes of memory, over the limit of ", budget_, " bytes (GgufLimits: max_metadata_bytes = ",
                                  limits_.max_metadata_bytes, ", metadata_bytes_per_file_byte = ",
                                  limits_.metadata_bytes_per_file_byte, " x the ", bytes_.size(),
                                  "-byte file + metadata_slack_bytes = ", limits_.metadata_slack_bytes, ")");
    }
    used_ += *bytes;
  }

  // "{2147483648, 2147483648}": a tensor's dims for messages.
  static std::string dims_text(GgufTensorInfo const& t) {
    std::string out = "{";
    for (std::uint32_t d = 0; d < t.n_dims; ++d) out += (d == 0 ? "" : ", ") + std::to_string(t.dims[d]);
    return out + "}";
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
    charge(detail::checked_mul(kv_count, entry_bytes), detail::message("the metadata count ", kv_count));
    metadata_.reserve(static_cast<std::size_t>(kv_count));
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      auto const key_at = cur.offset();
      auto const key_view = cur.read_string_view(detail::message("the key of metadata entry ", i));
      charge(2 * std::uint64_t{key_view.size()}, detail::message("the key of metadata entry ", i));  // the entry's and the index's copy
      std::string key(key_view);
      auto const type = read_type(cur, detail::message("the type of metadata '", key, "'"));
      auto value = read_value(cur, type, key);
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

    charge(detail::checked_mul(tensor_count, tensor_info_bytes), detail::message("the tensor count ", tensor_count));
    tensors_.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
      GgufTensorInfo t;
      auto const at = cur.offset();
      auto const name = cur.read_string_view(detail::message("the name of tensor ", i));
      charge(2 * std::uint64_t{name.size()}, detail::message("the name of tensor ", i));
      t.name = std::string(name);
      read_tensor_info(cur, t, at);
      if (!tensor_index_.emplace(t.name, tensors_.size()).second) {
        detail::fail<FormatError>(source_, ": duplicate tensor name '", t.name, "' at offset ", at);
      }
      tensors_.push_back(std::move(t));
    }

    auto const end_of_infos = static_cast<std::uint64_t>(cur.offset());
    auto const padded = detail::checked_add(end_of_infos, alignment_ - 1);
    if (!padded) {
      detail::fail<FormatError>(source_, ": general.alignment = ", alignment_, " puts the data section past 2^64");
    }
    data_offset_ = *padded / alignment_ * alignment_;
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
    check_no_overlap();
  }

  // n_dims, dims, type and offset of a tensor info whose name was read; every product checked for overflow.
  void read_tensor_info(detail::ByteCursor& cur, GgufTensorInfo& t, std::size_t at) {
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
    if (!traits) {
      detail::fail<Unsupported>(source_, ": tensor '", t.name, "' has unknown ggml type id ", raw_type,
                                " (supported: ", supported_weight_types, ")");
    }
    t.type = static_cast<GgmlType>(raw_type);
    t.offset = cur.read<std::uint64_t>(detail::message("the data offset of tensor '", t.name, "'"));
    std::uint64_t elems = 1;
    for (std::uint32_t d = 0; d < 4; ++d) {
      if (t.dims[d] == 0) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' has dims[", d, "] = 0 (dims ", dims_text(t), ")");
      }
      auto const next = detail::checked_mul(elems, t.dims[d]);
      if (!next) {
        detail::fail<FormatError>(source_, ": tensor '", t.name, "' dims[", d, "] = ", t.dims[d],
                                  " makes its element count overflow 64 bits (dims ", dims_text(t), ")");
      }
      elems = *next;
    }
    if (t.dims[0] % traits->block_elems != 0) {
      detail::fail<FormatError>(source_, ": tensor '", t.name, "' row length dims[0] = ", t.dims[0],
                                " is not a multiple of the ", traits->name, " block size ", traits->block_elems);
    }
    auto const size = detail::ggml_bytes(*traits, elems);
    if (!size) {
      detail::fail<FormatError>(source_, ": tensor '", t.name, "' dims ", dims_text(t), " of type ", traits->name, " (",
                                traits->block_bytes, " bytes per ", traits->block_elems,
                                " elements) make its byte size overflow 64 bits");
    }
    t.size_bytes = *size;
    if (t.offset % alignment_ != 0) {
      detail::fail<FormatError>(source_, ": tensor '", t.name, "' data offset ", t.offset,
                                " is not a multiple of the alignment ", alignment_);
    }
  }

  // Tensors that share bytes would let a write through one (or a shape check of one) say nothing of the other.
  void check_no_overlap() const {
    std::vector<std::size_t> order(tensors_.size());  // [num_tensors]: indices by data offset
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    for (std::size_t k = 1; k < order.size(); ++k) {
      auto const& a = tensors_[order[k - 1]];
      auto const& b = tensors_[order[k]];
      if (a.offset + a.size_bytes > b.offset) {  // both ranges lie in the data section: no overflow
        detail::fail<FormatError>(source_, ": tensors '", a.name, "' (data [", a.offset, ", +", a.size_bytes, ")) and '",
                                  b.name, "' (data [", b.offset, ", +", b.size_bytes, ")) overlap");
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

  GgufValue read_value(detail::ByteCursor& cur, GgufValueType type, std::string const& key) {
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
      case GgufValueType::string: {
        auto const s = cur.read_string_view(key);
        charge(s.size(), detail::message("metadata '", key, "'"));
        return {std::string(s)};
      }
      case GgufValueType::u64: return {cur.read<std::uint64_t>(key)};
      case GgufValueType::i64: return {cur.read<std::int64_t>(key)};
      case GgufValueType::f64: return {cur.read<double>(key)};
      case GgufValueType::array: return {read_array(cur, key, 0)};
    }
    detail::fail<FormatError>(source_, ": bad value type for '", key, "'");
  }

  // An array (element type, u64 length, elements) into the packed GgufValues, each buffer charged and sized
  // exactly before it is filled.
  GgufArray read_array(detail::ByteCursor& cur, std::string const& key, int depth) {
    if (depth >= max_array_depth) {
      detail::fail<FormatError>(source_, ": metadata '", key, "' nests arrays deeper than ", max_array_depth);
    }
    GgufArray arr;
    arr.element_type = read_type(cur, detail::message("the element type of array '", key, "'"));
    auto const at = cur.offset();
    auto const n = cur.read<std::uint64_t>(detail::message("the length of array '", key, "'"));
    auto const width = gguf_scalar_width(arr.element_type);
    std::uint64_t const min_bytes = width != 0 ? width : arr.element_type == GgufValueType::string ? 8 : 12;
    if (n > cur.remaining() / min_bytes) {
      detail::fail<FormatError>(source_, ": array '", key, "' length ", n, " at offset ", at, " cannot fit in the ",
                                cur.remaining(), " bytes left");
    }
    std::string const what = detail::message("array '", key, "' of ", n, " ", gguf_value_type_name(arr.element_type));
    auto const count = static_cast<std::size_t>(n);
    GgufValues& v = arr.values;
    if (width != 0) {
      charge(n * width, what);
      auto const raw = cur.read_bytes(count * width, what);
      if (arr.element_type == GgufValueType::boolean) {
        for (std::size_t i = 0; i < count; ++i) {
          if (raw[i] > std::byte{1}) {
            detail::fail<FormatError>(source_, ": bool array '", key, "' element ", i, " at offset ",
                                      cur.offset() - count + i, " has byte value ", int(raw[i]));
          }
        }
      }
      v.scalars_.assign(raw.begin(), raw.end());
    } else if (arr.element_type == GgufValueType::string) {
      // A first pass sums the lengths (checking each against the bytes there), so the characters are one exact allocation.
      detail::ByteCursor scan = cur;
      std::uint64_t chars = 0;
      for (std::size_t i = 0; i < count; ++i) chars += scan.read_string_view(key).size();
      charge(detail::checked_add(chars, n * sizeof(std::uint64_t)), what);
      v.chars_.reserve(static_cast<std::size_t>(chars));
      v.ends_.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        v.chars_ += cur.read_string_view(key);
        v.ends_.push_back(v.chars_.size());
      }
    } else {
      charge(detail::checked_mul(n, sizeof(GgufArray)), what);
      v.arrays_.reserve(count);
      for (std::size_t i = 0; i < count; ++i) v.arrays_.push_back(read_array(cur, key, depth + 1));
    }
    v.type_ = arr.element_type;
    v.size_ = count;
    return arr;
  }

  std::shared_ptr<void const> owner_;
  std::span<std::byte const> bytes_;
  std::string source_;
  GgufLimits limits_;
  std::uint64_t budget_ = 0;  // bytes of memory the metadata and tensor table may take
  std::uint64_t used_ = 0;    // bytes they take so far
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, std::size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace piecrust
