// Every quantized block layout against an independent decoder: vectors recorded from the PyPI gguf package's
// numpy dequantizer (tests/quant/gen_quant_vectors.py; blocks of random bytes with moderate, extreme and zero
// f16 scales, and blocks quantized from random floats) must come out of quant::dequantize_block,
// dequantize_row, dequantize_element and the model layer's dequantize_row bit for bit (exact: every decoder
// rounds d * q and + m separately in f32). Also the type ids and block geometry of every WeightType, and the
// refusal of types with no decoder (Q8_K, I8, I32, F64) by name.

#include <piecrust/kernels/quant_blocks.hpp>
#include <piecrust/kernels/weight_type.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/ggml_type.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifndef PIECRUST_QUANT_VECTORS_DIR
#error "PIECRUST_QUANT_VECTORS_DIR (tests/data/quant_vectors) must be defined by the build"
#endif

using namespace piecrust;

namespace {

struct VectorBlock {
  std::string kind;                  // random, extreme, zero, quantized
  std::vector<std::uint8_t> bytes;   // [weight_block_bytes(type)]
  std::vector<std::uint32_t> bits;   // [weight_block_size(type)] expected f32 bits
};

std::uint8_t hex_digit(char c) {
  if (c >= '0' && c <= '9') return static_cast<std::uint8_t>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<std::uint8_t>(c - 'a' + 10);
  FAIL("not a hex digit: '" << c << "'");
  return 0;
}

std::vector<VectorBlock> read_vectors(WeightType type) {
  std::string const path = std::string(PIECRUST_QUANT_VECTORS_DIR) + "/" + std::string(weight_type_name(type)) + ".txt";
  std::ifstream in(path);
  if (!in) FAIL("cannot open " << path << " (regenerate with tests/quant/gen_quant_vectors.py)");
  std::vector<VectorBlock> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    VectorBlock b;
    std::string bytes_hex, bits_hex;
    fields >> b.kind >> bytes_hex >> bits_hex;
    INFO(path << ": " << line.substr(0, 60));
    REQUIRE(bytes_hex.size() == 2 * weight_block_bytes(type));
    REQUIRE(bits_hex.size() == 8 * weight_block_size(type));
    for (std::size_t i = 0; i < bytes_hex.size(); i += 2) {
      b.bytes.push_back(static_cast<std::uint8_t>(hex_digit(bytes_hex[i]) << 4 | hex_digit(bytes_hex[i + 1])));
    }
    for (std::size_t i = 0; i < bits_hex.size(); i += 8) {
      std::uint32_t v = 0;
      for (std::size_t j = 0; j < 8; ++j) v = v << 4 | hex_digit(bits_hex[i + j]);
      b.bits.push_back(v);
    }
    out.push_back(std::move(b));
  }
  return out;
}

// Index of the first value whose bits differ from `want`, or -1.
long first_mismatch(std::vector<float> const& got, std::vector<std::uint32_t> const& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(got[i]) != want[i]) return static_cast<long>(i);
  }
  return -1;
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

}  // namespace

TEST_CASE("every quantized type decodes the gguf package's vectors bit for bit", "[quant]") {
  std::size_t types = 0;
  for (WeightType const type : all_weight_types) {
    if (!is_quantized(type)) continue;
    ++types;
    INFO("type " << weight_type_name(type));
    auto const blocks = read_vectors(type);
    std::size_t const n = weight_block_size(type), bytes = weight_block_bytes(type);
    std::map<std::string, std::size_t> kinds;
    for (auto const& b : blocks) ++kinds[b.kind];
    // The generator's groups: a file missing one would test less than it claims.
    CHECK(kinds["random"] >= 6);
    CHECK(kinds["extreme"] >= 2);
    CHECK(kinds["zero"] >= 2);
    bool const quantizable = type == WeightType::q4_0 || type == WeightType::q4_1 || type == WeightType::q5_0 ||
                             type == WeightType::q5_1 || type == WeightType::q8_0;
    if (quantizable) CHECK(kinds["quantized"] >= 8);

    std::vector<std::uint8_t> row;     // [blocks][bytes]: every block of the file as one row
    std::vector<std::uint32_t> want;   // [blocks * n]
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      auto const& b = blocks[k];
      INFO("block " << k << " (" << b.kind << ")");
      std::vector<float> got(n);
      quant::dequantize_block(type, b.bytes.data(), got.data());
      long const bad = first_mismatch(got, b.bits);
      CHECK(bad == -1);
      if (bad >= 0) {
        FAIL_CHECK("dequantize_block: value " << bad << " = " << got[static_cast<std::size_t>(bad)] << " (bits 0x" << std::hex
                                              << std::bit_cast<std::uint32_t>(got[static_cast<std::size_t>(bad)])
                                              << "), expected bits 0x" << b.bits[static_cast<std::size_t>(bad)] << std::dec);
      }
      std::vector<float> each(n);
      for (std::size_t i = 0; i < n; ++i) each[i] = quant::dequantize_element(type, b.bytes.data(), i);
      CHECK(first_mismatch(each, b.bits) == -1);
      row.insert(row.end(), b.bytes.begin(), b.bytes.end());
      want.insert(want.end(), b.bits.begin(), b.bits.end());
    }
    std::size_t const cols = want.size();
    REQUIRE(row.size() == cols / n * bytes);
    std::vector<float> got(cols);
    quant::dequantize_row(type, row.data(), got.data(), cols);
    CHECK(first_mismatch(got, want) == -1);
    // Element access across block boundaries of a row.
    for (std::size_t c = 0; c < cols; c += 97) {
      REQUIRE(std::bit_cast<std::uint32_t>(quant::dequantize_element(type, row.data(), c)) == want[c]);
    }
    std::vector<float> model(cols);
    dequantize_row(static_cast<GgmlType>(type), std::as_bytes(std::span(row)), std::span<float>(model));
    CHECK(first_mismatch(model, want) == -1);
    // A row one block short is refused, naming both sizes.
    std::vector<float> longer(cols + n);
    CHECK_THROWS_AS(dequantize_row(static_cast<GgmlType>(type), std::as_bytes(std::span(row)), std::span<float>(longer)),
                    InvalidArgument);
  }
  CHECK(types == 12);
}

TEST_CASE("weight_type_from_id and the block geometry of every type", "[quant]") {
  struct Geometry {
    std::uint32_t id;
    std::size_t elems, bytes, sub;
  };
  // The GGUF specification's sizes, written out here rather than read from piecrust.
  std::vector<Geometry> const table{{0, 1, 4, 1},       {1, 1, 2, 1},       {2, 32, 18, 32},   {3, 32, 20, 32},
                                    {6, 32, 22, 32},    {7, 32, 24, 32},    {8, 32, 34, 32},   {10, 256, 84, 16},
                                    {11, 256, 110, 16}, {12, 256, 144, 32}, {13, 256, 176, 32}, {14, 256, 210, 16},
                                    {20, 32, 18, 32},   {23, 256, 136, 32}, {30, 1, 2, 1}};
  REQUIRE(table.size() == all_weight_types.size());
  std::set<std::uint32_t> ids;
  for (auto const& g : table) {
    ids.insert(g.id);
    auto const t = weight_type_from_id(g.id);
    INFO("id " << g.id);
    REQUIRE(t.has_value());
    CHECK(static_cast<std::uint32_t>(*t) == g.id);
    CHECK(weight_block_size(*t) == g.elems);
    CHECK(weight_block_bytes(*t) == g.bytes);
    CHECK(quant::sub_block_size(*t) == g.sub);
    CHECK(is_quantized(*t) == (g.elems > 1));
    // The file reader's traits agree, and so does the name (reader: upper case).
    auto const traits = ggml_type_traits(g.id);
    REQUIRE(traits.has_value());
    CHECK(traits->block_elems == g.elems);
    CHECK(traits->block_bytes == g.bytes);
    CHECK(traits->name == upper(weight_type_name(*t)));
    CHECK(std::string(supported_weight_types).find(std::string(weight_type_name(*t))) != std::string::npos);
    // The f16 scale fields lie inside the block, after one another.
    auto const f = quant::f16_fields(*t);
    CHECK(f.count == (g.elems == 1 ? 0u : g.id == 3 || g.id == 7 || g.id == 10 || g.id == 12 || g.id == 13 ? 2u : 1u));
    for (std::size_t j = 0; j < f.count; ++j) CHECK(f.at[j] + 2 <= g.bytes);
  }
  for (std::uint32_t id = 0; id < 64; ++id) {
    INFO("id " << id);
    CHECK(weight_type_from_id(id).has_value() == (ids.count(id) == 1));
  }
  CHECK_FALSE(weight_type_from_id(0xffffffffu).has_value());
}

TEST_CASE("types with no decoder are refused with Unsupported naming the type", "[quant]") {
  for (GgmlType const type : {GgmlType::q8_k, GgmlType::q8_1, GgmlType::i8, GgmlType::i32, GgmlType::f64}) {
    auto const traits = ggml_type_traits(type);
    INFO(traits.name);
    std::size_t const n = traits.block_elems == 1 ? 8 : traits.block_elems;
    std::vector<std::byte> src(ggml_row_bytes(type, n), std::byte{0x3c});
    std::vector<float> dst(n, 1.5f);
    CHECK_THROWS_AS(dequantize_row(type, src, dst), Unsupported);
    auto const id = std::to_string(static_cast<std::uint32_t>(type));
    CHECK_THROWS_WITH(dequantize_row(type, src, dst), Catch::Contains("tensor type " + std::string(traits.name) + " (id " + id + ")") &&
                                                          Catch::Contains("supported: f32, f16, bf16, q4_0"));
    CHECK(dst == std::vector<float>(n, 1.5f));  // nothing written
  }
  // A K-quant row whose length is not a multiple of 256 has no byte size.
  std::vector<std::byte> src(144);
  std::vector<float> dst(128);
  CHECK_THROWS_AS(dequantize_row(GgmlType::q4_k, src, dst), InvalidArgument);
  CHECK_THROWS_WITH(dequantize_row(GgmlType::q4_k, src, dst), Catch::Contains("n = 128") && Catch::Contains("Q4_K block size 256"));
}
