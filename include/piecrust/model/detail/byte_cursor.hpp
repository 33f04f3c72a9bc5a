#pragma once
// ByteCursor: bounds-checked little-endian reads over a byte span. Every read that would run past the
// end throws FormatError naming what was being read, the offset and the sizes involved.

#include <piecrust/core/error.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace piecrust::detail {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

class ByteCursor {
 public:
  ByteCursor(std::span<std::byte const> bytes, std::string_view source) : bytes_(bytes), source_(source) {}

  [[nodiscard]] std::size_t offset() const noexcept { return pos_; }
  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - pos_; }
  [[nodiscard]] std::size_t size() const noexcept { return bytes_.size(); }

  /// Throws FormatError unless n more bytes are available.
  void require(std::size_t n, std::string_view what) const {
    if (n > remaining()) {
      fail<FormatError>(source_, ": truncated while reading ", what, " at offset ", pos_, " (need ", n,
                        " bytes, ", remaining(), " left of ", bytes_.size(), ")");
    }
  }

  template <class T>
    requires std::is_trivially_copyable_v<T>
  [[nodiscard]] T read(std::string_view what) {
    require(sizeof(T), what);
    T out;
    std::memcpy(&out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return out;
  }

  /// The next n bytes, without a copy.
  [[nodiscard]] std::span<std::byte const> read_bytes(std::size_t n, std::string_view what) {
    require(n, what);
    auto const out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  /// A GGUF string (u64 length, then that many bytes, not NUL-terminated) as a view into the bytes: the caller
  /// decides what a copy may cost before making one.
  [[nodiscard]] std::string_view read_string_view(std::string_view what) {
    auto const len = read<std::uint64_t>(what);
    if (len > remaining()) {
      fail<FormatError>(source_, ": string length ", len, " of ", what, " at offset ", pos_ - 8,
                        " exceeds the ", remaining(), " bytes left");
    }
    std::string_view const out(reinterpret_cast<char const*>(bytes_.data() + pos_), static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return out;
  }

  /// A GGUF string, copied.
  [[nodiscard]] std::string read_string(std::string_view what) { return std::string(read_string_view(what)); }

  void seek(std::size_t pos, std::string_view what) {
    if (pos > bytes_.size()) {
      fail<FormatError>(source_, ": ", what, " offset ", pos, " lies past the end of the ", bytes_.size(),
                        "-byte file");
    }
    pos_ = pos;
  }

 private:
  std::span<std::byte const> bytes_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

}  // namespace piecrust::detail
