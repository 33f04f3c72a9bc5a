// piecrust-gguf (examples/gguf): info, dump and tokenize on small GGUF files written here by GgufWriter, with
// random tensor values, checked against what was written (values, shapes, byte sizes from the block geometry)
// and against the model layer (dequantize_row, Tokenizer); the command line's errors (status 2), the file's
// errors (status 1, the typed error's message), types piecrust cannot compute with, corrupted files, and the
// real SmolLM2 file. When the examples are built, the same checks run the program itself.

#include "gguf/gguf_tool.hpp"

#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/model/detail/byte_level.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/model_paths.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace piecrust;
namespace tool = piecrust::examples::gguf;
namespace fs = std::filesystem;

namespace {

struct Result {
  int status = -1;
  std::string out, err;
};

Result run(std::vector<std::string> const& args) {
  std::vector<char const*> argv;
  for (auto const& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  Result r;
  r.status = tool::run_gguf_tool(argv, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

std::vector<std::string> split(std::string const& s, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) parts.push_back(cur);
  return parts;
}

std::vector<float> parse_floats(std::string const& line) {
  std::vector<float> v;
  for (auto const& field : split(line, ' ')) {
    char* end = nullptr;
    v.push_back(std::strtof(field.c_str(), &end));
    REQUIRE(end == field.c_str() + field.size());  // each field a whole number
  }
  return v;
}

// A fresh temporary folder for one test case's files, removed after it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("piecrust-gguf-tool-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::string write(std::string const& name, std::vector<std::byte> const& bytes) const {
    auto const p = (path / name).string();
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<char const*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(f.good());
    return p;
  }
};

// Bytes per block of each type, from the GGUF specification (the PyPI gguf package's GGML_QUANT_SIZES).
std::map<GgmlType, std::pair<std::uint64_t, std::uint64_t>> const block_geometry = {
    {GgmlType::f32, {1, 4}},       {GgmlType::q8_0, {32, 34}},   {GgmlType::q4_k, {256, 144}},
    {GgmlType::q8_k, {256, 292}}, {static_cast<GgmlType>(16), {256, 66}}};

std::uint64_t expected_bytes(GgmlType t, std::uint64_t elems) {
  auto const [block, bytes] = block_geometry.at(t);
  return elems / block * bytes;
}

void put_f16(std::vector<std::byte>& b, std::size_t at, float x) {
  std::uint16_t const h = detail::f32_to_f16(x);
  std::memcpy(b.data() + at, &h, 2);
}

// A tensor of the tiny file: its random bytes, and its values where the test knows them independently.
struct Written {
  std::vector<std::uint64_t> dims;
  GgmlType type;
  std::vector<std::byte> bytes;
  std::vector<float> values;  // [elements]: the f32 values, or Q8_0's d * q; empty for the others
};

struct TinyFile {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;
  std::map<std::string, Written> tensors;
  std::vector<std::byte> bytes;
};

// Random values, a gpt2 byte-level tokenizer with a control token, and one tensor of each kind the test reads:
// F32 (2-D, 1-D, and a row longer than the tool's decoding chunk), Q8_0, Q4_K, and two types piecrust cannot
// compute with (Q8_K, id 15; IQ2_XXS, id 16).
TinyFile tiny_file(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> byte(0, 255);
  TinyFile t;
  t.tokens = {"<|endoftext|>", "<|im_start|>"};
  std::vector<std::int32_t> types = {3, 3};  // control
  auto const& bl = detail::ByteLevel::get();
  for (int b = 0; b < 256; ++b) {
    t.tokens.push_back(bl.byte_to_text[b]);
    types.push_back(1);
  }
  for (std::string m : {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"}) {
    t.merges.push_back(m);
    auto const sp = m.find(' ');
    t.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
    types.push_back(1);
  }

  auto f32 = [&](std::vector<std::uint64_t> dims) {
    Written w{dims, GgmlType::f32, {}, {}};
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    for (std::uint64_t i = 0; i < n; ++i) w.values.push_back(normal(rng) * std::pow(10.0f, static_cast<float>(i % 7) - 3));
    auto const raw = std::as_bytes(std::span<float const>(w.values));
    w.bytes.assign(raw.begin(), raw.end());
    return w;
  };
  auto random_blocks = [&](GgmlType type, std::vector<std::uint64_t> dims) {
    Written w{dims, type, {}, {}};
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    w.bytes.resize(ggml_row_bytes(type, n));
    for (auto& b : w.bytes) b = static_cast<std::byte>(byte(rng));
    return w;
  };
  t.tensors["f32.weight"] = f32({8, 5});
  t.tensors["vec"] = f32({7});
  t.tensors["long_rows.weight"] = f32({5000, 2});
  {
    Written w = random_blocks(GgmlType::q8_0, {64, 3});
    for (std::size_t blk = 0; blk < w.bytes.size() / 34; ++blk) {
      float const d = std::ldexp(normal(rng), -6);
      put_f16(w.bytes, blk * 34, d);
      float const dh = detail::f16_to_f32(detail::f32_to_f16(d));
      for (std::size_t i = 0; i < 32; ++i) {
        w.values.push_back(dh * static_cast<float>(static_cast<std::int8_t>(w.bytes[blk * 34 + 2 + i])));
      }
    }
    t.tensors["q8.weight"] = w;
  }
  {
    Written w = random_blocks(GgmlType::q4_k, {512, 2});
    for (std::size_t blk = 0; blk < w.bytes.size() / 144; ++blk) {  // finite scales: d and dmin are f16
      put_f16(w.bytes, blk * 144, std::ldexp(normal(rng), -8));
      put_f16(w.bytes, blk * 144 + 2, std::ldexp(normal(rng), -8));
    }
    t.tensors["q4k.weight"] = w;
  }
  t.tensors["q8k.weight"] = random_blocks(GgmlType::q8_k, {256, 2});
  t.tensors["iq2.weight"] = random_blocks(static_cast<GgmlType>(16), {256});

  GgufWriter w;
  w.set("general.architecture", {std::string("llama")});
  w.set("general.name", {std::string("tiny \"model\"\x1b[31m\xff")});  // quotes, an escape sequence, a bad byte
  w.set("tiny.count", {std::uint32_t{4000000000u}});
  w.set("tiny.eps", {1e-5f});
  w.set("tiny.flag", {true});
  GgufArray nested{GgufValueType::array, {}};
  nested.values.push_back({GgufArray{GgufValueType::u32, {{std::uint32_t{1}}, {std::uint32_t{2}}}}});
  nested.values.push_back({GgufArray{GgufValueType::u32, {{std::uint32_t{3}}, {std::uint32_t{4}}, {std::uint32_t{5}}}}});
  w.set("tiny.nested", {nested});
  w.set("tokenizer.ggml.model", {std::string("gpt2")});
  w.set("tokenizer.ggml.pre", {std::string("smollm")});
  w.set_string_array("tokenizer.ggml.tokens", t.tokens);
  GgufArray type_array{GgufValueType::i32, {}};
  for (auto x : types) type_array.values.push_back({x});
  w.set("tokenizer.ggml.token_type", {type_array});
  w.set_string_array("tokenizer.ggml.merges", t.merges);
  w.set("tokenizer.ggml.eos_token_id", {std::uint32_t{0}});
  for (auto const& [name, tensor] : t.tensors) w.add_tensor(name, tensor.dims, tensor.type, tensor.bytes);
  t.bytes = w.bytes();
  return t;
}

std::uint32_t fresh_seed() { return std::random_device{}(); }

// The line of `info`'s tensor table that names `name`.
std::string table_line(std::string const& info, std::string const& name) {
  for (auto const& line : split(info, '\n')) {
    auto const fields = split(line, ' ');
    std::vector<std::string> words;
    for (auto const& f : fields) {
      if (!f.empty()) words.push_back(f);
    }
    if (words.size() >= 2 && words[1] == name) return line;
  }
  FAIL("no line for tensor " << name << " in:\n" << info);
  return {};
}

std::string dims_text(std::vector<std::uint64_t> const& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

TEST_CASE("piecrust-gguf info: header, metadata, every tensor's type, shape, bytes and offset, totals per type",
          "[gguf_tool]") {
  auto const seed = fresh_seed();
  CAPTURE(seed);
  TempDir dir;
  auto const t = tiny_file(seed);
  auto const path = dir.write("tiny.gguf", t.bytes);
  auto const f = GgufFile::open(path);
  auto const r = run({"info", path});
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  auto const& info = r.out;
  CAPTURE(info);
  CHECK(info.find("version       3\n") != std::string::npos);
  CHECK(info.find("tensors       " + std::to_string(t.tensors.size()) + "\n") != std::string::npos);
  CHECK(info.find("metadata      12 keys\n") != std::string::npos);
  CHECK(info.find("alignment     32\n") != std::string::npos);
  CHECK(info.find("data offset   " + std::to_string(f.data_offset()) + "\n") != std::string::npos);
  CHECK(info.find("(" + std::to_string(t.bytes.size()) + " bytes)") != std::string::npos);

  // Metadata: typed values; the file's strings escaped; an array as its length and first elements only.
  CHECK(std::regex_search(info, std::regex(R"(\n  general\.name +string +"tiny \\"model\\"\\u001b\[31m\\xff"\n)")));
  CHECK(std::regex_search(info, std::regex(R"(\n  tiny\.count +u32 +4000000000\n)")));
  CHECK(std::regex_search(info, std::regex(R"(\n  tiny\.eps +f32 +9\.99999975e-06\n)")));
  CHECK(std::regex_search(info, std::regex(R"(\n  tiny\.flag +bool +true\n)")));
  CHECK(std::regex_search(info, std::regex(R"(\n  tiny\.nested +array\[array\[u32\]\] +2 elements: \[array\[u32\] of 2, array\[u32\] of 3\]\n)")));
  CHECK(std::regex_search(info, std::regex(R"(\n  tokenizer\.ggml\.tokens +array\[string\] +)")));
  CHECK(info.find(" " + std::to_string(t.tokens.size()) + " elements: [\"<|endoftext|>\", \"<|im_start|>\", \"" + t.tokens[2] +
                  "\", \"" + t.tokens[3] + "\", \"" + t.tokens[4] + "\", ...]\n") != std::string::npos);
  CHECK(info.find(t.tokens[5]) == std::string::npos);  // the first elements only
  CHECK(std::regex_search(info, std::regex(R"(\n  tokenizer\.ggml\.token_type +array\[i32\] +264 elements: \[3, 3, 1, 1, 1, 1, 1, 1, \.\.\.\]\n)")));
  CHECK(info.find("\x1b") == std::string::npos);  // no raw escape byte reaches the terminal

  // Every tensor: type name and id, shape in GGUF order, elements, bytes (from the block geometry), offset.
  std::map<GgmlType, std::array<std::uint64_t, 3>> totals;  // tensors, elements, bytes
  for (auto const& [name, w] : t.tensors) {
    INFO(name);
    std::uint64_t elems = 1;
    for (auto d : w.dims) elems *= d;
    auto const bytes = expected_bytes(w.type, elems);
    REQUIRE(bytes == w.bytes.size());
    auto const line = table_line(info, name);
    auto const id = static_cast<std::uint32_t>(w.type);
    bool const unsupported = w.type == GgmlType::q8_k || id == 16;
    std::string const type_name(ggml_type_name(w.type));
    std::regex const want("^ +[0-9]+  " + name + " +" + type_name + " \\(" + std::to_string(id) + "\\) +" +
                          std::regex_replace(dims_text(w.dims), std::regex(R"([\[\]])"), R"(\$&)") + " +" +
                          std::to_string(elems) + " +" + std::to_string(bytes) + "  " +
                          std::to_string(f.tensor(name).offset) + (unsupported ? "  unsupported" : "") + "$");
    CHECK(std::regex_match(line, want));
    auto& tot = totals[w.type];
    tot[0] += 1, tot[1] += elems, tot[2] += bytes;
  }
  std::uint64_t all_tensors = 0, all_elems = 0, all_bytes = 0;
  for (auto const& [type, tot] : totals) {
    auto const id = static_cast<std::uint32_t>(type);
    std::string const label = std::string(ggml_type_name(type)) + " \\(" + std::to_string(id) + "\\)";
    bool const unsupported = type == GgmlType::q8_k || id == 16;
    CHECK(std::regex_search(info, std::regex("\n  " + label + " +" + std::to_string(tot[0]) + " +" + std::to_string(tot[1]) +
                                             " +" + std::to_string(tot[2]) + (unsupported ? "  unsupported" : "") + "\n")));
    all_tensors += tot[0], all_elems += tot[1], all_bytes += tot[2];
  }
  CHECK(std::regex_search(info, std::regex("\n  all +" + std::to_string(all_tensors) + " +" + std::to_string(all_elems) +
                                           " +" + std::to_string(all_bytes) + "\n")));
  CHECK(info.find("\nunsupported: Q8_K (15), IQ2_XXS (16): piecrust computes with " +
                  std::string(supported_weight_types)) != std::string::npos);
}

TEST_CASE("piecrust-gguf dump: the rows asked for, every value exactly (%.9g round-trips f32)", "[gguf_tool]") {
  auto const seed = fresh_seed();
  CAPTURE(seed);
  TempDir dir;
  auto const t = tiny_file(seed);
  auto const path = dir.write("tiny.gguf", t.bytes);
  auto const f = GgufFile::open(path);

  auto rows_of = [&](std::string const& out) {
    std::vector<std::vector<float>> rows;
    REQUIRE((!out.empty() && out.back() == '\n'));
    for (auto const& line : split(out, '\n')) rows.push_back(parse_floats(line));
    return rows;
  };
  // The written values of rows [a, b) of a tensor with rows of length n.
  auto expect = [&](std::vector<float> const& v, std::size_t n, std::size_t a, std::size_t b) {
    std::vector<std::vector<float>> rows;
    for (std::size_t r = a; r < b; ++r) rows.emplace_back(v.begin() + static_cast<std::ptrdiff_t>(r * n), v.begin() + static_cast<std::ptrdiff_t>((r + 1) * n));
    return rows;
  };

  SECTION("F32: --rows A:B, A:, :B and all rows give the values written, bit for bit") {
    auto const& w = t.tensors.at("f32.weight");
    auto r = run({"dump", path, "f32.weight", "--rows", "1:3"});
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());
    CHECK(rows_of(r.out) == expect(w.values, 8, 1, 3));
    r = run({"dump", path, "f32.weight", "--rows", "3:"});
    CHECK(rows_of(r.out) == expect(w.values, 8, 3, 5));
    r = run({"dump", path, "f32.weight", "--rows", ":2"});
    CHECK(rows_of(r.out) == expect(w.values, 8, 0, 2));
    r = run({"dump", path, "f32.weight"});
    CHECK(rows_of(r.out) == expect(w.values, 8, 0, 5));
    r = run({"dump", path, "vec"});
    CHECK(rows_of(r.out) == expect(t.tensors.at("vec").values, 7, 0, 1));
    // A row longer than the tool's decoding chunk.
    r = run({"dump", path, "long_rows.weight", "--rows", "1:2"});
    CHECK(rows_of(r.out) == expect(t.tensors.at("long_rows.weight").values, 5000, 1, 2));
  }
  SECTION("Q8_0: d * q of each block; Q4_K: the model layer's dequantize_row of each row") {
    auto r = run({"dump", path, "q8.weight", "--rows", "1:3"});
    REQUIRE(r.status == 0);
    CHECK(rows_of(r.out) == expect(t.tensors.at("q8.weight").values, 64, 1, 3));
    r = run({"dump", path, "q4k.weight"});
    REQUIRE(r.status == 0);
    auto const& info = f.tensor("q4k.weight");
    auto const data = f.tensor_data(info);
    std::vector<std::vector<float>> want(2, std::vector<float>(512));
    for (std::size_t row = 0; row < 2; ++row) dequantize_row(GgmlType::q4_k, data.subspan(row * 288, 288), want[row]);
    CHECK(rows_of(r.out) == want);
    CHECK(want[0] != want[1]);
  }
  SECTION("a range outside the tensor, an unknown tensor: status 2 and a message naming them") {
    for (std::string const rows : {"0:6", "5:", "7:9", "5:6"}) {
      auto const r = run({"dump", path, "f32.weight", "--rows", rows});
      INFO(rows << ": " << r.err);
      CHECK(r.status == 2);
      CHECK(r.out.empty());
      CHECK(r.err.find("is outside tensor \"f32.weight\", which has 5 rows (0:5)") != std::string::npos);
    }
    auto const r = run({"dump", path, "nope.weight"});
    CHECK(r.status == 2);
    CHECK(r.err.find("no tensor \"nope.weight\" in " + path + " (" + std::to_string(t.tensors.size()) + " tensors") != std::string::npos);
  }
  SECTION("a type piecrust cannot decode: status 1, the type named by name and id") {
    auto r = run({"dump", path, "q8k.weight"});
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK(r.err.find("tensor \"q8k.weight\" has type Q8_K (id 15), which piecrust cannot decode (supported: ") !=
          std::string::npos);
    r = run({"dump", path, "iq2.weight"});
    CHECK(r.status == 1);
    CHECK(r.err.find("has type IQ2_XXS (id 16)") != std::string::npos);
  }
}

TEST_CASE("piecrust-gguf tokenize: the file's tokenizer, control tokens only with --special", "[gguf_tool]") {
  TempDir dir;
  auto const t = tiny_file(fresh_seed());
  auto const path = dir.write("tiny.gguf", t.bytes);
  auto const tok = Tokenizer::from_gguf(GgufFile::open(path));
  auto ids_of = [](std::string const& out) {
    std::vector<TokenId> ids;
    for (auto const& line : split(out, '\n')) ids.push_back(static_cast<TokenId>(std::stol(line)));
    return ids;
  };
  std::string const text = "hello <|im_start|>wo 123 \xc3\xbcn";
  auto r = run({"tokenize", path, text});
  REQUIRE(r.status == 0);
  auto const plain = ids_of(r.out);
  CHECK(plain == tok.encode(text));
  CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());  // "<|im_start|>" stays text
  CHECK(std::find(plain.begin(), plain.end(), *tok.find("hello")) != plain.end());
  r = run({"tokenize", path, text, "--special"});
  REQUIRE(r.status == 0);
  auto const special = ids_of(r.out);
  CHECK(special == tok.encode_with_special_tokens(text));
  CHECK(std::count(special.begin(), special.end(), 1) == 1);
  // "--" ends the options: the text "--special" is tokenized.
  r = run({"tokenize", path, "--", "--special"});
  REQUIRE(r.status == 0);
  CHECK(ids_of(r.out) == tok.encode("--special"));
  // A file without a tokenizer: status 1 and the reader's message.
  GgufWriter w;
  w.add_f32("x", {4}, std::vector<float>{1, 2, 3, 4});
  auto const bare = dir.write("bare.gguf", w.bytes());
  r = run({"tokenize", bare, "hi"});
  CHECK(r.status == 1);
  CHECK(r.err == "piecrust-gguf: " + bare + ": missing metadata key 'tokenizer.ggml.model'\n");
}

TEST_CASE("piecrust-gguf: a bad command line is status 2 with a message naming the argument and the usage", "[gguf_tool]") {
  TempDir dir;
  auto const path = dir.write("tiny.gguf", tiny_file(fresh_seed()).bytes);
  std::vector<std::pair<std::vector<std::string>, std::string>> const cases = {
      {{}, "no command given"},
      {{"frob", path}, "unknown command 'frob'"},
      {{"info"}, "info needs FILE"},
      {{"dump", path}, "dump needs FILE and TENSOR"},
      {{"tokenize", path}, "tokenize needs FILE and TEXT"},
      {{"info", path, "extra"}, "unexpected argument 'extra'"},
      {{"info", path, "--bogus"}, "unknown option --bogus"},
      {{"dump", path, "vec", "--rows"}, "--rows needs a value"},
      {{"dump", path, "vec", "--rows", "1-3"}, "--rows = \"1-3\" is not A:B"},
      {{"dump", path, "vec", "--rows", "1:2:3"}, "is not A:B"},
      {{"dump", path, "vec", "--rows", ":"}, "is not A:B"},
      {{"dump", path, "vec", "--rows", "a:3"}, "--rows = \"a\" is not a whole number"},
      {{"dump", path, "vec", "--rows", "-1:3"}, "--rows = -1 is out of range"},
      {{"dump", path, "vec", "--rows", "1:99999999999999999999"}, "out of range"},
      {{"dump", path, "vec", "--rows", "3:1"}, "--rows = 3:1 is empty"},
      {{"dump", path, "vec", "--rows", "2:2"}, "is empty"},
      {{"info", path, "--rows", "0:1"}, "--rows is an option of dump, not of info"},
      {{"dump", path, "vec", "--special"}, "--special is an option of tokenize, not of dump"},
  };
  for (auto const& [args, message] : cases) {
    std::string shown;
    for (auto const& a : args) shown += a + " ";
    INFO(shown);
    auto const r = run(args);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("piecrust-gguf: ", 0) == 0);
    CHECK(r.err.find(message) != std::string::npos);
    CHECK(r.err.find(tool::usage_text) != std::string::npos);
  }
  for (std::vector<std::string> const& help : {std::vector<std::string>{"--help"}, {"dump", "-h"}}) {
    auto const r = run(help);
    CHECK(r.status == 0);
    CHECK(r.out == tool::usage_text);
  }
}

TEST_CASE("piecrust-gguf: file errors are status 1 with the typed error's message; corrupted files never crash it",
          "[gguf_tool][hardening]") {
  auto const seed = fresh_seed();
  CAPTURE(seed);
  TempDir dir;
  auto const bytes = tiny_file(seed).bytes;
  auto const whole = GgufFile::parse(bytes);
  // Cut inside the data section, inside the tensor table, inside the metadata.
  for (std::size_t keep : {bytes.size() - 100, static_cast<std::size_t>(whole.data_offset()) - 40, std::size_t{200}}) {
    INFO("first " << keep << " bytes");
    auto const path = dir.write("cut.gguf", std::vector<std::byte>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    std::string message;
    try {
      (void)GgufFile::open(path);
    } catch (FormatError const& e) {
      message = e.what();
    }
    REQUIRE(!message.empty());
    for (std::vector<std::string> const& args : {std::vector<std::string>{"info", path}, {"dump", path, "f32.weight"},
                                                {"tokenize", path, "hi"}}) {
      auto const r = run(args);
      CHECK(r.status == 1);
      CHECK(r.out.empty());
      CHECK(r.err == "piecrust-gguf: " + message + "\n");
    }
  }
  auto const missing = (dir.path / "missing.gguf").string();
  auto r = run({"info", missing});
  CHECK(r.status == 1);
  CHECK(r.err.find("cannot open '" + missing + "'") != std::string::npos);
  r = run({"info", dir.path.string()});
  CHECK(r.status == 1);
  CHECK(r.err.find("not a regular file") != std::string::npos);

  // Random corruptions of the header, metadata and tensor table: every command ends with 0 or 1, and an
  // error is always a message.
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> at(0, static_cast<std::size_t>(whole.data_offset()) - 1);
  std::uniform_int_distribution<int> value(0, 255);
  std::size_t failures = 0;
  for (int trial = 0; trial < 150; ++trial) {
    auto b = bytes;
    for (int k = 0; k < 1 + trial % 4; ++k) b[at(rng)] = static_cast<std::byte>(value(rng));
    auto const path = dir.write("bad.gguf", b);
    for (std::vector<std::string> const& args : {std::vector<std::string>{"info", path}, {"dump", path, "q4k.weight", "--rows", "1:"},
                                                {"tokenize", path, "hello wo"}}) {
      auto const res = run(args);
      INFO("trial " << trial << ": " << args[0] << " " << res.err);
      CHECK((res.status == 0 || res.status == 1 || (res.status == 2 && args[0] == "dump")));
      if (res.status != 0) CHECK(!res.err.empty());
      failures += res.status != 0;
    }
  }
  CHECK(failures > 0);  // the corruptions did reach the checks
}

TEST_CASE("piecrust-gguf info shows an unsupported type by name; loading the model refuses it naming the tensor",
          "[gguf_tool]") {
  // A llama-shaped file whose blk.0.attn_q.weight is Q8_K: GgufFile reads it, LlamaWeights refuses it.
  std::mt19937 rng(fresh_seed());
  std::uniform_int_distribution<int> byte(0, 255);
  GgufWriter w;
  w.set("general.architecture", {std::string("llama")});
  w.set("llama.embedding_length", {std::uint32_t{256}});
  w.set("llama.block_count", {std::uint32_t{1}});
  w.set("llama.attention.head_count", {std::uint32_t{4}});
  w.set("llama.attention.head_count_kv", {std::uint32_t{1}});
  w.set("llama.feed_forward_length", {std::uint32_t{256}});
  w.set("llama.context_length", {std::uint32_t{128}});
  std::vector<std::string> tokens;
  for (int i = 0; i < 32; ++i) tokens.push_back("t" + std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  auto add = [&](std::string const& name, std::vector<std::uint64_t> dims, GgmlType type) {
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    std::vector<std::byte> data(ggml_row_bytes(type, n));
    if (type == GgmlType::f32) {
      std::vector<float> v(n);
      for (auto& x : v) x = static_cast<float>(byte(rng)) / 256.0f;
      std::memcpy(data.data(), v.data(), data.size());
    } else {
      for (auto& x : data) x = static_cast<std::byte>(byte(rng));
    }
    w.add_tensor(name, dims, type, data);
  };
  add("token_embd.weight", {256, 32}, GgmlType::f32);
  add("output_norm.weight", {256}, GgmlType::f32);
  add("blk.0.attn_norm.weight", {256}, GgmlType::f32);
  add("blk.0.attn_q.weight", {256, 256}, GgmlType::q8_k);
  add("blk.0.attn_k.weight", {256, 64}, GgmlType::f32);
  add("blk.0.attn_v.weight", {256, 64}, GgmlType::f32);
  add("blk.0.attn_output.weight", {256, 256}, GgmlType::f32);
  add("blk.0.ffn_norm.weight", {256}, GgmlType::f32);
  add("blk.0.ffn_gate.weight", {256, 256}, GgmlType::f32);
  add("blk.0.ffn_up.weight", {256, 256}, GgmlType::f32);
  add("blk.0.ffn_down.weight", {256, 256}, GgmlType::f32);
  TempDir dir;
  auto const path = dir.write("q8k-model.gguf", w.bytes());
  auto const file = std::make_shared<GgufFile const>(GgufFile::open(path));
  CHECK_THROWS_AS(LlamaWeights::from_gguf(file), Unsupported);
  CHECK_THROWS_WITH(LlamaWeights::from_gguf(file),
                    path + ": tensor 'blk.0.attn_q.weight' has type Q8_K (id 15), which piecrust does not support (supported: " +
                        std::string(supported_weight_types) + ")");
  auto const r = run({"info", path});
  REQUIRE(r.status == 0);
  CHECK(std::regex_search(r.out, std::regex(R"(\n +3  blk\.0\.attn_q\.weight +Q8_K \(15\) +\[256, 256\] +65536 +74752  [0-9]+  unsupported\n)")));
  CHECK(std::regex_search(r.out, std::regex(R"(\n  F32 \(0\) +10 +)")));
}

TEST_CASE("piecrust-gguf info on the real SmolLM2-135M-Instruct Q4_1 file", "[gguf_tool][model-file]") {
  auto const path = default_model_path();
  if (!fs::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const r = run({"info", path});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("\ntensors       272\n") != std::string::npos);
  CHECK(std::regex_search(r.out, std::regex(R"(\n  tokenizer\.ggml\.tokens +array\[string\] +49152 elements: \["<\|endoftext\|>", "<\|im_start\|>", "<\|im_end\|>",)")));
  CHECK(std::regex_search(r.out, std::regex(R"(\n +0  token_embd\.weight +Q8_0 \(8\) +\[576, 49152\] +28311552 +30081024  0\n)")));
  CHECK(std::regex_search(r.out, std::regex(R"(\n +[0-9]+  blk\.0\.attn_q\.weight +Q4_1 \(3\) +\[576, 576\] +331776 +207360  [0-9]+\n)")));
  CHECK(std::regex_search(r.out, std::regex(R"(\n  Q4_1 \(3\) +210 +106168320 +66355200\n)")));
  CHECK(r.out.find("unsupported") == std::string::npos);
  // The first row of a Q4_1 tensor, as the model layer decodes it.
  auto const f = GgufFile::open(path);
  auto const& q = f.tensor("blk.0.attn_q.weight");
  std::vector<float> want(576);
  dequantize_row(q.type, f.tensor_data(q).subspan(0, q.row_bytes()), want);
  auto const d = run({"dump", path, "blk.0.attn_q.weight", "--rows", "0:1"});
  REQUIRE(d.status == 0);
  CHECK(parse_floats(d.out.substr(0, d.out.size() - 1)) == want);
}

#ifdef PIECRUST_GGUF_TOOL
// The program itself: the same output and exit status as run_gguf_tool, through a real process.
TEST_CASE("piecrust-gguf: the built program gives run_gguf_tool's output and status", "[gguf_tool]") {
  TempDir dir;
  auto const t = tiny_file(fresh_seed());
  auto const path = dir.write("tiny.gguf", t.bytes);
  auto const cut = dir.write("cut.gguf", std::vector<std::byte>(t.bytes.begin(), t.bytes.end() - 64));
  auto slurp = [](fs::path const& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  for (std::vector<std::string> const& args :
       {std::vector<std::string>{"info", path}, {"dump", path, "q4k.weight", "--rows", "1:2"}, {"tokenize", path, "hello wo"},
        {"dump", path, "f32.weight", "--rows", "9:"}, {"dump", path, "q8k.weight"}, {"info", cut}, {"bogus"}}) {
    std::string cmd = "'" PIECRUST_GGUF_TOOL "'";
    for (auto const& a : args) cmd += " '" + a + "'";  // no quotes in these arguments
    cmd += " > '" + (dir.path / "out").string() + "' 2> '" + (dir.path / "err").string() + "'";
    INFO(cmd);
    int const raw = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(raw));
    auto const want = run(args);
    CHECK(WEXITSTATUS(raw) == want.status);
    CHECK(slurp(dir.path / "out") == want.out);
    CHECK(slurp(dir.path / "err") == want.err);
  }
}
#endif
