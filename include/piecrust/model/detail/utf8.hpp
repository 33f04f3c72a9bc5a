#pragma once
// Small UTF-8 helpers for the tokenizer (RFC 3629; well-formed sequences as in Unicode's Table 3-7).

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

/// Length a well-formed sequence starting with lead byte `c` has: 1..4, or 0 when `c` never starts one
/// (a continuation byte, C0, C1, F5..FF).
[[nodiscard]] constexpr std::size_t utf8_lead_len(unsigned char c) noexcept {
  if (c < 0x80) return 1;
  if (c < 0xc2) return 0;
  if (c < 0xe0) return 2;
  if (c < 0xf0) return 3;
  if (c < 0xf5) return 4;
  return 0;
}

/// Whether `c` may follow lead byte `lead` as the second byte. The narrower ranges after E0, ED, F0 and F4
/// are what rule out overlong forms, surrogates (U+D800..DFFF) and code points above U+10FFFF.
[[nodiscard]] constexpr bool utf8_second_ok(unsigned char lead, unsigned char c) noexcept {
  switch (lead) {
    case 0xe0: return c >= 0xa0 && c <= 0xbf;
    case 0xed: return c >= 0x80 && c <= 0x9f;
    case 0xf0: return c >= 0x90 && c <= 0xbf;
    case 0xf4: return c >= 0x80 && c <= 0x8f;
    default: return (c & 0xc0) == 0x80;
  }
}

/// Length of the well-formed sequence at s[i] (1..4), or 0 when the byte there does not start one: a stray
/// continuation, an invalid lead, a truncated sequence, an overlong form, a surrogate, above U+10FFFF.
[[nodiscard]] constexpr std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  auto const lead = static_cast<unsigned char>(s[i]);
  std::size_t const n = utf8_lead_len(lead);
  if (n <= 1) return n;
  if (n > s.size() - i) return 0;
  if (!utf8_second_ok(lead, static_cast<unsigned char>(s[i + 1]))) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

/// Whether all of `s` is well-formed UTF-8.
[[nodiscard]] constexpr bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t const n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

inline constexpr std::string_view utf8_replacement = "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER

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

/// Number of bytes at the end of `s` that form the start of a well-formed sequence still missing bytes:
/// 0..3. Bytes that can never become well-formed are not held (they are passed on as they are).
[[nodiscard]] constexpr std::size_t utf8_incomplete_tail(std::string_view s) noexcept {
  std::size_t const n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    auto const c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead
    std::size_t const need = utf8_lead_len(c);
    if (need <= back) return 0;
    if (back >= 2 && !utf8_second_ok(c, static_cast<unsigned char>(s[n - back + 1]))) return 0;
    return back;
  }
  return 0;
}

}  // namespace piecrust::detail
