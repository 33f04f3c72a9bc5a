#pragma once
// Small UTF-8 helpers for the tokenizer (RFC 3629).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace piecrust::detail {

/// Length of the UTF-8 sequence that lead byte `c` starts (1 for ASCII, continuation and invalid bytes).
[[nodiscard]] constexpr std::size_t utf8_len(unsigned char c) noexcept {
  if (c < 0xc0) return 1;
  if (c < 0xe0) return 2;
  if (c < 0xf0) return 3;
  if (c < 0xf8) return 4;
  return 1;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

/// Decodes the code point at s[i] and advances i; an invalid or truncated sequence yields its first byte
/// as a code point of its own value and advances by one (callers treat it as an opaque byte).
[[nodiscard]] inline std::uint32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  auto const c = static_cast<unsigned char>(s[i]);
  std::size_t const n = utf8_len(c);
  if (n == 1 || i + n > s.size()) {
    ++i;
    return c;
  }
  std::uint32_t cp = c & (0x7fu >> n);
  for (std::size_t k = 1; k < n; ++k) {
    auto const cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) {
      ++i;
      return c;
    }
    cp = (cp << 6) | (cc & 0x3fu);
  }
  i += n;
  return cp;
}

/// Number of bytes at the end of `s` that form an incomplete (but so far valid) UTF-8 sequence: 0..3.
[[nodiscard]] inline std::size_t utf8_incomplete_tail(std::string_view s) noexcept {
  std::size_t const n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    auto const c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead
    std::size_t const need = utf8_len(c);
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace piecrust::detail
