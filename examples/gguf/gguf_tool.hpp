#pragma once
// piecrust-gguf: what a GGUF file holds, as piecrust reads it. `info` prints the header, the metadata, the
// tensor table and the totals per type, marking the types no kernel computes with (it is what to run on a file
// piecrust refuses); `dump` prints a tensor's rows dequantized by the model layer's dequantize_row; `tokenize`
// prints the ids the file's tokenizer gives a text.
//
// The file is untrusted: GgufFile checks every count, size and offset before anything here reads it, and every
// string the file holds is printed escaped (printable.hpp). run_gguf_tool returns the exit status: 0 success,
// 1 the file cannot be read or used (the typed piecrust::Error's message), 2 a bad command line.

#include "gguf/gguf_args.hpp"
#include "gguf/printable.hpp"

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/weight_type.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/ggml_type.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

namespace piecrust::examples::gguf {

/// Elements of an array `info` shows (numbers; strings show fewer, each cut to `string_chars` characters).
inline constexpr std::size_t array_preview = 8;
inline constexpr std::size_t string_preview = 5;
inline constexpr std::size_t string_chars = 40;
/// Characters of a metadata string `info` shows (a chat template runs to kilobytes).
inline constexpr std::size_t value_chars = 120;

/// "Q4_K (12)", "IQ2_XXS (16)": a tensor type as info names it.
inline std::string type_label(GgmlType t) {
  return std::string(ggml_type_name(t)) + " (" + std::to_string(static_cast<std::uint32_t>(t)) + ")";
}

/// Whether kernels compute with this type (Q4_0 included: the loader converts it to Q4_1).
inline bool is_supported(GgmlType t) { return weight_type_from_id(static_cast<std::uint32_t>(t)).has_value(); }

/// "[576, 49152]": dims in GGUF order, row length first.
inline std::string shape_text(GgufTensorInfo const& t) {
  std::string s = "[";
  for (std::uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.dims[d]);
  return s + "]";
}

namespace detail {

inline std::string format(char const* fmt, double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, fmt, x);
  return buf;
}

/// "array[string]", "array[array[u8]]" (nested arrays named by their first element, without a copy).
inline std::string array_type_text(GgufArray const& a) {
  bool const nested = a.element_type == GgufValueType::array && !a.values.empty();
  return "array[" + (nested ? array_type_text(a.values.array_at(0)) : std::string(gguf_value_type_name(a.element_type))) + "]";
}

/// "u32", "string", "array[string]".
inline std::string value_type_text(GgufValue const& v) {
  if (auto const* a = std::get_if<GgufArray>(&v.value)) return array_type_text(*a);
  return std::string(gguf_value_type_name(v.type()));
}

/// A metadata value as info shows it: scalars whole, strings quoted and cut, arrays as their length and first elements.
inline std::string value_text(GgufValue const& v, std::size_t chars = value_chars) {
  return std::visit(
      [&](auto const& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, std::string>) {
          return quoted(x, chars);
        } else if constexpr (std::is_same_v<X, GgufArray>) {
          auto const& vals = x.values;
          bool const strings = x.element_type == GgufValueType::string;
          std::size_t const shown = std::min(vals.size(), strings ? string_preview : array_preview);
          std::string s = std::to_string(vals.size()) + (vals.size() == 1 ? " element" : " elements");
          if (vals.empty()) return s;
          s += ": [";
          for (std::size_t i = 0; i < shown; ++i) {
            if (i) s += ", ";
            if (strings) {
              s += quoted(vals.string_at(i), string_chars);
            } else if (x.element_type == GgufValueType::array) {
              auto const& inner = vals.array_at(i);
              s += "array[" + std::string(gguf_value_type_name(inner.element_type)) + "] of " +
                   std::to_string(inner.values.size());
            } else {
              s += value_text(vals[i]);
            }
          }
          return s + (shown < vals.size() ? ", ...]" : "]");
        } else if constexpr (std::is_same_v<X, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<X, float>) {
          return format("%.9g", x);
        } else if constexpr (std::is_same_v<X, double>) {
          return format("%.17g", x);
        } else {
          return std::to_string(+x);
        }
      },
      v.value);
}

inline std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}
inline std::string rpad(std::string s, std::size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

}  // namespace detail

/// `info`: header, metadata, tensor table, totals per type.
inline void print_info(GgufFile const& f, std::ostream& out) {
  using detail::pad;
  using detail::rpad;
  std::error_code ec;
  auto const size = std::filesystem::file_size(f.source(), ec);
  out << "file          " << printable(f.source());
  if (!ec) out << " (" << size << " bytes)";
  out << "\nversion       " << f.version() << "\ntensors       " << f.tensors().size() << "\nmetadata      "
      << f.metadata().size() << " keys\nalignment     " << f.alignment() << "\ndata offset   " << f.data_offset() << "\n";

  out << "\nmetadata (" << f.metadata().size() << " keys):\n";
  std::size_t key_width = 0, type_width = 0;
  for (auto const& [k, v] : f.metadata()) {
    key_width = std::max(key_width, std::min<std::size_t>(printable(k).size(), 48));
    type_width = std::max(type_width, detail::value_type_text(v).size());
  }
  for (auto const& [k, v] : f.metadata()) {
    out << "  " << pad(printable(k), key_width) << "  " << pad(detail::value_type_text(v), type_width) << "  "
        << detail::value_text(v) << "\n";
  }

  struct Total {
    std::uint64_t tensors = 0, elements = 0, bytes = 0;
  };
  std::map<std::uint32_t, Total> totals;  // by type id
  Total all;
  std::vector<std::string> names;  // [num_tensors]: printable names
  std::size_t name_width = 4, type_width2 = 4, shape_width = 5, elem_width = 8, bytes_width = 5;
  for (auto const& t : f.tensors()) {
    names.push_back(printable(t.name));
    name_width = std::max(name_width, std::min<std::size_t>(names.back().size(), 48));
    type_width2 = std::max(type_width2, type_label(t.type).size());
    shape_width = std::max(shape_width, shape_text(t).size());
    elem_width = std::max(elem_width, std::to_string(t.num_elements()).size());
    bytes_width = std::max(bytes_width, std::to_string(t.size_bytes).size());
    auto& tot = totals[static_cast<std::uint32_t>(t.type)];
    ++tot.tensors, tot.elements += t.num_elements(), tot.bytes += t.size_bytes;  // sums lie within the file
    ++all.tensors, all.elements += t.num_elements(), all.bytes += t.size_bytes;
  }
  std::size_t const index_width = std::max<std::size_t>(1, std::to_string(f.tensors().size()).size());
  out << "\ntensors (" << f.tensors().size() << "; shape in GGUF order, row length first; offset from the data section):\n";
  out << "  " << rpad("#", index_width) << "  " << pad("name", name_width) << "  " << pad("type", type_width2) << "  "
      << pad("shape", shape_width) << "  " << rpad("elements", elem_width) << "  " << rpad("bytes", bytes_width)
      << "  offset\n";
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    auto const& t = f.tensors()[i];
    out << "  " << rpad(std::to_string(i), index_width) << "  " << pad(names[i], name_width) << "  "
        << pad(type_label(t.type), type_width2) << "  " << pad(shape_text(t), shape_width) << "  "
        << rpad(std::to_string(t.num_elements()), elem_width) << "  " << rpad(std::to_string(t.size_bytes), bytes_width)
        << "  " << t.offset << (is_supported(t.type) ? "" : "  unsupported") << "\n";
  }

  out << "\ntotals per type:\n";
  std::size_t const total_elem = std::max<std::size_t>(8, std::to_string(all.elements).size());
  std::size_t const total_bytes = std::max<std::size_t>(5, std::to_string(all.bytes).size());
  std::size_t const label_width = std::max<std::size_t>(type_width2, 4);
  out << "  " << pad("type", label_width) << "  tensors  " << rpad("elements", total_elem) << "  "
      << rpad("bytes", total_bytes) << "\n";
  std::string unsupported;
  auto line = [&](std::string const& label, Total const& t) {
    out << "  " << pad(label, label_width) << "  " << rpad(std::to_string(t.tensors), 7) << "  "
        << rpad(std::to_string(t.elements), total_elem) << "  " << rpad(std::to_string(t.bytes), total_bytes);
  };
  for (auto const& [id, t] : totals) {
    auto const type = static_cast<GgmlType>(id);
    line(type_label(type), t);
    out << (is_supported(type) ? "" : "  unsupported") << "\n";
    if (!is_supported(type)) unsupported += (unsupported.empty() ? "" : ", ") + type_label(type);
  }
  line("all", all);
  out << "\n";
  if (!unsupported.empty()) {
    out << "\nunsupported: " << unsupported << ": piecrust computes with " << supported_weight_types
        << " only and refuses to load a tensor of these types\n";
  }
}

/// The tensor and rows `dump` prints, checked against the file. Throws InvalidArgument (no such tensor) or
/// OutOfRange (rows outside it), naming the argument.
struct DumpPlan {
  GgufTensorInfo const* tensor = nullptr;
  std::uint64_t first = 0, last = 0;  // rows [first, last)
};
inline DumpPlan plan_dump(GgufFile const& f, GgufArgs const& a) {
  DumpPlan p;
  p.tensor = f.find_tensor(a.tensor);
  if (p.tensor == nullptr) {
    piecrust::detail::fail<InvalidArgument>("no tensor ", quoted(a.tensor), " in ", printable(f.source()), " (",
                                            f.tensors().size(), " tensors: piecrust-gguf info lists them)");
  }
  std::uint64_t const rows = p.tensor->num_rows();
  RowRange const r = a.rows.value_or(RowRange{});
  p.first = r.first;
  p.last = r.last.value_or(rows);
  if (p.first >= rows || p.last > rows) {
    piecrust::detail::fail<OutOfRange>("--rows = ", r.first, ":", r.last ? std::to_string(*r.last) : std::string(),
                                       " is outside tensor ", quoted(a.tensor), ", which has ", rows,
                                       rows == 1 ? " row" : " rows", " (0:", rows, ")");
  }
  return p;
}

/// `dump`: rows [first, last) as f32, one row a line, values "%.9g" (which f32 round-trips) separated by spaces.
/// Throws Unsupported for a type with no decoder. A row is decoded a chunk at a time, so memory stays bounded
/// whatever row length the file claims.
inline void print_dump(GgufFile const& f, DumpPlan const& p, std::ostream& out) {
  auto const& t = *p.tensor;
  if (!is_supported(t.type)) {
    piecrust::detail::fail<Unsupported>(printable(f.source()), ": tensor ", quoted(t.name), " has type ",
                                        ggml_type_name(t.type), " (id ", static_cast<std::uint32_t>(t.type),
                                        "), which piecrust cannot decode (supported: ", supported_weight_types, ")");
  }
  constexpr std::size_t chunk = 4096;  // a multiple of every supported block size (1, 32, 256)
  auto const data = f.tensor_data(t);
  auto const row_bytes = static_cast<std::size_t>(t.row_bytes());
  auto const row_len = static_cast<std::size_t>(t.dims[0]);
  std::vector<float> values(std::min(chunk, row_len));  // [chunk]: one piece of a row
  std::string line;
  char buf[32];
  for (std::uint64_t r = p.first; r < p.last; ++r) {
    auto const row = data.subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes);
    std::size_t byte_at = 0;
    line.clear();
    for (std::size_t at = 0; at < row_len; at += chunk) {
      std::size_t const n = std::min(chunk, row_len - at);
      std::size_t const nbytes = ggml_row_bytes(t.type, n);
      dequantize_row(t.type, row.subspan(byte_at, nbytes), std::span<float>(values.data(), n));
      byte_at += nbytes;
      for (std::size_t i = 0; i < n; ++i) {
        int const len = std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(values[i]));
        if (at + i > 0) line += ' ';
        line.append(buf, static_cast<std::size_t>(len));
      }
    }
    line += '\n';
    out.write(line.data(), static_cast<std::streamsize>(line.size()));
  }
}

/// `tokenize`: the ids of `text`, one per line; control tokens written in it only with `special`.
inline void print_tokens(GgufFile const& f, std::string_view text, bool special, std::ostream& out) {
  auto const tok = Tokenizer::from_gguf(f);
  auto const ids = special ? tok.encode_with_special_tokens(text) : tok.encode(text);
  for (auto id : ids) out << id << "\n";
}

/// The whole program: parses `args` (argv without the program name), runs the command, writes its output
/// to `out` and errors (and the usage after a bad command line) to `err`; returns the exit status.
inline int run_gguf_tool(std::span<char const* const> args, std::ostream& out, std::ostream& err) {
  constexpr char const* program = "piecrust-gguf";
  GgufArgs a;
  try {
    a = parse_gguf_args(args);
  } catch (Error const& e) {
    err << program << ": " << e.what() << "\n" << usage_text;
    return 2;
  }
  if (a.help) {
    out << usage_text;
    return 0;
  }
  int status = 1;  // what an error in the current phase means: the file's (1) or the command line's (2)
  try {
    auto const f = GgufFile::open(a.file);
    switch (a.command) {
      case Command::info: print_info(f, out); break;
      case Command::dump: {
        status = 2;
        auto const plan = plan_dump(f, a);
        status = 1;
        print_dump(f, plan, out);
        break;
      }
      case Command::tokenize: print_tokens(f, a.text, a.special, out); break;
    }
    out.flush();
    if (!out) {
      err << program << ": cannot write the output\n";
      return 1;
    }
    return 0;
  } catch (Error const& e) {  // the message may quote the file's strings: escaped like them
    err << program << ": " << printable(e.what(), std::string::npos, false) << "\n";
  } catch (std::exception const& e) {  // e.g. std::bad_alloc: still an error message, never a crash
    err << program << ": " << printable(a.file) << ": " << e.what() << "\n";
  }
  return status;
}

}  // namespace piecrust::examples::gguf
