#pragma once
// GPT-2's byte-level alphabet: every byte maps to a printable code point, so that BPE runs on text with
// no raw control bytes or spaces. Source: openai/gpt-2 src/encoder.py `bytes_to_unicode`.

#include <piecrust/model/detail/utf8.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace piecrust::detail {

struct ByteLevel {
  std::array<std::string, 256> byte_to_text;         // byte -> UTF-8 of its code point
  std::unordered_map<std::uint32_t, std::uint8_t> cp_to_byte;

  ByteLevel() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      std::uint32_t const cp = printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(256 + n++);
      append_utf8(byte_to_text[b], cp);
      cp_to_byte[cp] = static_cast<std::uint8_t>(b);
    }
  }

  [[nodiscard]] static ByteLevel const& get() {
    static ByteLevel const table;
    return table;
  }

  [[nodiscard]] std::string encode(std::string_view bytes) const {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) out += byte_to_text[static_cast<unsigned char>(c)];
    return out;
  }

  /// Inverse of encode; a code point outside the alphabet is copied through as UTF-8.
  [[nodiscard]] std::string decode(std::string_view text) const {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
      std::size_t const at = i;
      std::uint32_t const cp = next_code_point(text, i);
      auto const it = cp_to_byte.find(cp);
      if (it != cp_to_byte.end()) {
        out += static_cast<char>(it->second);
      } else {
        out.append(text.substr(at, i - at));
      }
    }
    return out;
  }
};

}  // namespace piecrust::detail
