#pragma once
// piecrust-gguf's command line, apart from main() so that tests can drive it.
//
//   piecrust-gguf info FILE
//   piecrust-gguf dump FILE TENSOR [--rows A:B]
//   piecrust-gguf tokenize FILE TEXT [--special]
//
// Parsed strictly: an unknown command or option, a missing or extra argument, an option of another command or
// a malformed --rows is refused (InvalidArgument / OutOfRange naming the argument and the value) before any
// file is opened. "--" ends the options, so that a TEXT or TENSOR may begin with '-'.

#include "common/cli.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piecrust::examples::gguf {

enum class Command { info, dump, tokenize };

/// Rows [first, last) of a tensor; a bound left out of "A:B" is the tensor's first row or its end.
struct RowRange {
  std::uint64_t first = 0;
  std::optional<std::uint64_t> last;
};

struct GgufArgs {
  Command command = Command::info;
  std::string file;
  std::string tensor;  // dump
  std::string text;    // tokenize
  std::optional<RowRange> rows;  // dump --rows
  bool special = false;          // tokenize --special
  bool help = false;
};

inline constexpr char const* usage_text =
    "usage: piecrust-gguf info FILE\n"
    "       piecrust-gguf dump FILE TENSOR [--rows A:B]\n"
    "       piecrust-gguf tokenize FILE TEXT [--special]\n"
    "  info      the header, every metadata key with its type and value (arrays: type, length, first\n"
    "            elements), the tensor table (name, type, shape in GGUF order, bytes, offset) and the\n"
    "            totals per type; types piecrust cannot compute with are marked unsupported\n"
    "  dump      the tensor's rows as f32 (dequantized), one row a line, values printed with %.9g\n"
    "  --rows    rows A (included) to B (excluded), counted from 0; A: or :B leave a bound open\n"
    "  tokenize  the token ids of TEXT with the file's tokenizer, one per line (no BOS/EOS added);\n"
    "            control tokens written in TEXT stay plain text unless --special is given\n"
    "  --        ends the options (for a TEXT or TENSOR that begins with '-')\n"
    "exit status: 0 success, 1 the file cannot be read or used, 2 a bad command line\n";

/// "A:B", "A:", ":B" as a row range (A < B when both are given). Throws InvalidArgument or OutOfRange
/// naming --rows and the text.
inline RowRange parse_rows(std::string_view text) {
  auto const colon = text.find(':');
  if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos || text.size() == 1) {
    piecrust::detail::fail<InvalidArgument>("--rows = \"", text, "\" is not A:B, A: or :B (rows A to B, B excluded)");
  }
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  RowRange r;
  auto const a = text.substr(0, colon), b = text.substr(colon + 1);
  if (!a.empty()) r.first = parse_integer<std::uint64_t>("--rows", a, 0, max);
  if (!b.empty()) r.last = parse_integer<std::uint64_t>("--rows", b, 0, max);
  if (r.last && *r.last <= r.first) {
    piecrust::detail::fail<InvalidArgument>("--rows = ", text, " is empty: A must be less than B (B is excluded)");
  }
  return r;
}

/// Parses `args` (argv without the program name). Throws InvalidArgument (unknown command or option, a
/// missing or extra argument, an option the command does not take) or OutOfRange (a row number past 2^64),
/// naming the argument; nothing half-parsed is returned.
inline GgufArgs parse_gguf_args(std::span<char const* const> args) {
  GgufArgs o;
  std::vector<std::string> positional;
  std::optional<std::string> rows_text;
  bool options_end = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string const a = args[i];
    if (options_end || a.size() < 2 || a[0] != '-') {
      positional.push_back(a);
    } else if (a == "--") {
      options_end = true;
    } else if (a == "--help" || a == "-h") {
      o.help = true;
    } else if (a == "--special") {
      o.special = true;
    } else if (a == "--rows") {
      if (i + 1 >= args.size()) piecrust::detail::fail<InvalidArgument>("--rows needs a value (A:B)");
      rows_text = args[++i];
    } else {
      piecrust::detail::fail<InvalidArgument>("unknown option ", a);
    }
  }
  if (o.help && positional.empty()) return o;
  if (positional.empty()) piecrust::detail::fail<InvalidArgument>("no command given (info, dump or tokenize)");
  std::string const& cmd = positional[0];
  std::size_t wanted = 0;
  char const* operands = "";
  if (cmd == "info") {
    o.command = Command::info, wanted = 1, operands = "FILE";
  } else if (cmd == "dump") {
    o.command = Command::dump, wanted = 2, operands = "FILE and TENSOR";
  } else if (cmd == "tokenize") {
    o.command = Command::tokenize, wanted = 2, operands = "FILE and TEXT";
  } else {
    piecrust::detail::fail<InvalidArgument>("unknown command '", cmd, "' (info, dump or tokenize)");
  }
  if (o.help) return o;
  if (positional.size() < 1 + wanted) piecrust::detail::fail<InvalidArgument>(cmd, " needs ", operands);
  if (positional.size() > 1 + wanted) {
    piecrust::detail::fail<InvalidArgument>(cmd, " takes ", operands, " only; unexpected argument '", positional[1 + wanted], "'");
  }
  if (rows_text && o.command != Command::dump) piecrust::detail::fail<InvalidArgument>("--rows is an option of dump, not of ", cmd);
  if (o.special && o.command != Command::tokenize) {
    piecrust::detail::fail<InvalidArgument>("--special is an option of tokenize, not of ", cmd);
  }
  o.file = positional[1];
  if (o.command == Command::dump) o.tensor = positional[2];
  if (o.command == Command::tokenize) o.text = positional[2];
  if (rows_text) o.rows = parse_rows(*rows_text);
  return o;
}

}  // namespace piecrust::examples::gguf
