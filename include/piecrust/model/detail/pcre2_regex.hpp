#pragma once
// Pcre2Regex: a compiled PCRE2 pattern (UTF + UCP, so \p{L}, \p{N} and \s follow Unicode properties) and
// a splitter that partitions text into matches and the gaps between them, as llama.cpp's
// unicode_regex_split does (src/unicode.cpp).

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <piecrust/core/error.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust::detail {

class Pcre2Regex {
 public:
  explicit Pcre2Regex(std::string pattern) : pattern_(std::move(pattern)) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr));
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      fail<InvalidArgument>("tokenizer regex '", pattern_, "' does not compile at offset ", err_off, ": ",
                            reinterpret_cast<char const*>(buf));
    }
    pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // optional speed-up; falls back to the interpreter
  }

  [[nodiscard]] std::string const& pattern() const noexcept { return pattern_; }

  /// Splits s[begin, end) into pieces: every non-empty match, and every gap between matches.
  /// Appends the piece boundaries (end offsets) to `out`.
  void split(std::string_view s, std::size_t begin, std::size_t end, std::vector<std::size_t>& out) const {
    std::unique_ptr<pcre2_match_data, MatchDataFree> md(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    auto const* subject = reinterpret_cast<PCRE2_SPTR>(s.data() + begin);
    std::size_t const len = end - begin;
    std::size_t pos = 0, last = 0;
    while (pos < len) {
      int const rc = pcre2_match(code_.get(), subject, len, pos, 0, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail<InvalidArgument>("tokenizer regex '", pattern_, "' failed with PCRE2 error ", rc);
      PCRE2_SIZE const* ov = pcre2_get_ovector_pointer(md.get());
      std::size_t const ms = ov[0], me = ov[1];
      if (me == ms) {  // empty match: step over one character
        pos = ms + 1;
        while (pos < len && (static_cast<unsigned char>(s[begin + pos]) & 0xc0) == 0x80) ++pos;
        continue;
      }
      if (ms > last) out.push_back(begin + ms);
      out.push_back(begin + me);
      last = pos = me;
    }
    if (last < len) out.push_back(end);
  }

 private:
  struct CodeFree {
    void operator()(pcre2_code* c) const noexcept { pcre2_code_free(c); }
  };
  struct MatchDataFree {
    void operator()(pcre2_match_data* m) const noexcept { pcre2_match_data_free(m); }
  };
  std::string pattern_;
  std::unique_ptr<pcre2_code, CodeFree> code_;
};

}  // namespace piecrust::detail
