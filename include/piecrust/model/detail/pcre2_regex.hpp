#pragma once
// Pcre2Regex: a compiled PCRE2 pattern (UTF + UCP, so \p{L}, \p{N} and \s follow Unicode properties) and
// a splitter that partitions text into matches and the gaps between them, as llama.cpp's
// unicode_regex_split does (src/unicode.cpp).
//
// Matching is bounded: one match may take max(match_limit, match_limit_per_byte x the bytes left to search)
// backtracking steps, so a regex that backtracks exponentially stops early while linear work on a long input
// (\s*[\r\n]+ over a megabyte of spaces backtracks once per space) is never refused. The JIT runs on its small
// default stack; should a pattern need more, the match is redone by the interpreter, whose memory is capped
// by heap_limit_kib. A match that exceeds a limit throws LimitExceeded instead of running for ever or
// exhausting memory.

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <piecrust/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust::detail {

class Pcre2Regex {
 public:
  /// Backtracking steps one pcre2_match may take at least (PCRE2's own default is 10,000,000) ...
  static constexpr std::uint32_t match_limit = 10'000'000;
  /// ... and per byte of the text it searches, when that is more.
  static constexpr std::uint32_t match_limit_per_byte = 16;
  /// Heap the interpreter may use for one match, in KiB (PCRE2's default is 20 MiB).
  static constexpr std::uint32_t heap_limit_kib = 64 * 1024;

  /// Match state for one thread of use: a compiled pattern is shared read-only, its match data is not.
  class Scratch {
   public:
    explicit Scratch(Pcre2Regex const& re)
        : md_(pcre2_match_data_create_from_pattern(re.code_.get(), nullptr)), context_(pcre2_match_context_create(nullptr)) {
      if (!md_ || !context_) fail<LimitExceeded>("tokenizer regex '", re.pattern_, "': PCRE2 could not allocate match data");
      pcre2_set_heap_limit(context_.get(), heap_limit_kib);
    }

   private:
    friend class Pcre2Regex;
    struct Free {
      void operator()(pcre2_match_data* m) const noexcept { pcre2_match_data_free(m); }
    };
    struct ContextFree {
      void operator()(pcre2_match_context* c) const noexcept { pcre2_match_context_free(c); }
    };
    std::unique_ptr<pcre2_match_data, Free> md_;
    std::unique_ptr<pcre2_match_context, ContextFree> context_;  // the limits of the match under way
  };

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
  /// Appends the piece boundaries (end offsets) to `out`. Throws LimitExceeded (nothing appended) when a
  /// match exceeds its step limit (see the top of this header) or heap_limit_kib.
  void split(std::string_view s, std::size_t begin, std::size_t end, std::vector<std::size_t>& out,
             Scratch& scratch) const {
    auto const* subject = reinterpret_cast<PCRE2_SPTR>(s.data() + begin);
    std::size_t const len = end - begin;
    std::size_t const first = out.size();
    std::size_t pos = 0, last = 0;
    auto* const context = scratch.context_.get();
    while (pos < len) {
      std::uint32_t const limit = steps_allowed(len - pos);
      pcre2_set_match_limit(context, limit);
      int rc = pcre2_match(code_.get(), subject, len, pos, 0, scratch.md_.get(), context);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // the interpreter keeps its backtracking on the (limited) heap
        rc = pcre2_match(code_.get(), subject, len, pos, PCRE2_NO_JIT, scratch.md_.get(), context);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        out.resize(first);
        fail_match(rc, begin + pos, len, limit);
      }
      PCRE2_SIZE const* ov = pcre2_get_ovector_pointer(scratch.md_.get());
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

  void split(std::string_view s, std::size_t begin, std::size_t end, std::vector<std::size_t>& out) const {
    Scratch scratch(*this);
    split(s, begin, end, out, scratch);
  }

 private:
  /// The backtracking steps a match that searches `bytes` bytes may take.
  [[nodiscard]] static std::uint32_t steps_allowed(std::size_t bytes) noexcept {
    std::uint64_t const scaled = static_cast<std::uint64_t>(bytes) * match_limit_per_byte;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(std::max<std::uint64_t>(match_limit, scaled), std::numeric_limits<std::uint32_t>::max()));
  }

  [[noreturn]] void fail_match(int rc, std::size_t at, std::size_t len, std::uint32_t limit) const {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(rc, buf, sizeof buf);
    char const* what = reinterpret_cast<char const*>(buf);
    if (rc == PCRE2_ERROR_MATCHLIMIT) {
      fail<LimitExceeded>("tokenizer regex '", pattern_, "' exceeded its match limit of ", limit,
                          " steps (match_limit = ", match_limit, ", match_limit_per_byte = ", match_limit_per_byte,
                          ") at byte ", at, " of a ", len, "-byte piece (", what, ")");
    }
    if (rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_NOMEMORY) {
      fail<LimitExceeded>("tokenizer regex '", pattern_, "' exceeded heap_limit_kib = ", heap_limit_kib, " at byte ",
                          at, " of a ", len, "-byte piece (", what, ")");
    }
    fail<InvalidArgument>("tokenizer regex '", pattern_, "' failed with PCRE2 error ", rc, " at byte ", at, ": ", what);
  }

  struct CodeFree {
    void operator()(pcre2_code* c) const noexcept { pcre2_code_free(c); }
  };
  std::string pattern_;
  std::unique_ptr<pcre2_code, CodeFree> code_;
};

}  // namespace piecrust::detail
