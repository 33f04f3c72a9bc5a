#pragma once
// Untrusted text (metadata strings, tensor names, token texts of a GGUF file) made safe for a terminal:
// well-formed UTF-8 of printable characters stays as it is, quotes and backslashes are escaped, control
// characters (C0, DEL, C1: a file could otherwise send terminal escape sequences) and bidirectional overrides
// become \n, \t, \r or \uXXXX, and every byte of a malformed sequence becomes \xHH. Long texts are cut at a
// character boundary.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace piecrust::examples::gguf {

namespace detail {

/// Length of the well-formed UTF-8 sequence at s[i] and its code point, or 0 when it is malformed
/// (truncated, a stray continuation byte, overlong, a surrogate, above U+10FFFF).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t& cp) {
  auto const b = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  std::uint8_t const lead = b(0);
  std::size_t n = 0;
  std::uint32_t min = 0;
  if (lead < 0x80) {
    cp = lead;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2, cp = lead & 0x1Fu, min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3, cp = lead & 0x0Fu, min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4, cp = lead & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace detail

/// `s` escaped (see the top of this header), at most about `max_chars` characters of it; a cut text ends in
/// "..." followed by its length in bytes. Without `escape_quotes`, quotes and backslashes stay as they are
/// (for messages, whose quotes are their own).
inline std::string printable(std::string_view s, std::size_t max_chars = std::string::npos, bool escape_quotes = true) {
  std::string out;
  std::size_t chars = 0, i = 0;
  char buf[16];
  while (i < s.size()) {
    if (chars >= max_chars) {
      out += "...(" + std::to_string(s.size()) + " bytes)";
      break;
    }
    std::uint32_t cp = 0;
    std::size_t const n = detail::utf8_sequence(s, i, cp);
    if (n == 0) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<std::uint8_t>(s[i])));
      out += buf;
      i += 1;
    } else {
      if (cp == '\n') {
        out += "\\n";
      } else if (cp == '\t') {
        out += "\\t";
      } else if (cp == '\r') {
        out += "\\r";
      } else if (escape_quotes && (cp == '"' || cp == '\\')) {
        out += '\\';
        out += static_cast<char>(cp);
      } else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || (cp >= 0x202A && cp <= 0x202E) ||
                 (cp >= 0x2066 && cp <= 0x2069)) {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
        out += buf;
      } else {
        out.append(s.substr(i, n));
      }
      i += n;
    }
    ++chars;
  }
  return out;
}

/// `s` escaped and in double quotes.
inline std::string quoted(std::string_view s, std::size_t max_chars = std::string::npos) {
  return '"' + printable(s, max_chars) + '"';
}

}  // namespace piecrust::examples::gguf
