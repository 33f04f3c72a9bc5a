// GGUF reader: the real SmolLM2 file, synthetic files written here, and every kind of corruption.

#include <piecrust/model/dequantize.hpp>
#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/model_paths.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

using namespace piecrust;

namespace {

std::vector<std::byte> sample_file(std::uint32_t version = 3) {
  GgufWriter w(32, version);
  w.set("general.architecture", {std::string("llama")});
  w.set("u8", {std::uint8_t{7}}).set("i8", {std::int8_t{-7}}).set("u16", {std::uint16_t{65000}});
  w.set("i16", {std::int16_t{-3}}).set("u32", {std::uint32_t{4000000000u}}).set("i32", {std::int32_t{-5}});
  w.set("f32", {1.5f}).set("bool", {true}).set("u64", {std::uint64_t{1} << 40}).set("i64", {std::int64_t{-9}});
  w.set("f64", {2.25});
  w.set_string_array("strings", {"a", "", "héllo"});
  GgufArray nested{GgufValueType::array, {}};
  nested.values.push_back({GgufArray{GgufValueType::i32, {{std::int32_t{1}}, {std::int32_t{2}}}}});
  w.set("nested", {nested});
  std::vector<float> v(64);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.5f;
  w.add_f32("a", {32, 2}, v);
  std::vector<std::byte> q(34 * 2);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::byte>(i * 7);
  std::uint16_t const d = detail::f32_to_f16(0.25f);
  std::memcpy(q.data(), &d, 2);
  std::memcpy(q.data() + 34, &d, 2);
  w.add_tensor("b", {64}, GgmlType::q8_0, q);
  return w.bytes();
}

template <class F>
void put_at(std::vector<std::byte>& b, std::size_t at, F v) {
  std::memcpy(b.data() + at, &v, sizeof(F));
}

}  // namespace

TEST_CASE("gguf: synthetic file with every metadata type round-trips", "[gguf]") {
  for (std::uint32_t version : {2u, 3u}) {
    auto f = GgufFile::parse(sample_file(version));
    CHECK(f.version() == version);
    CHECK(f.get<std::string>("general.architecture") == "llama");
    CHECK(f.get<int>("u8") == 7);
    CHECK(f.get<int>("i8") == -7);
    CHECK(f.get<int>("u16") == 65000);
    CHECK(f.get<int>("i16") == -3);
    CHECK(f.get<std::uint32_t>("u32") == 4000000000u);
    CHECK_THROWS_AS(f.get<std::int32_t>("u32"), FormatError);  // does not fit
    CHECK(f.get<int>("i32") == -5);
    CHECK(f.get<float>("f32") == 1.5f);
    CHECK(f.get<bool>("bool"));
    CHECK(f.get<std::uint64_t>("u64") == (std::uint64_t{1} << 40));
    CHECK(f.get<long>("i64") == -9);
    CHECK(f.get<double>("f64") == 2.25);
    CHECK_THROWS_AS(f.get<std::string>("f64"), FormatError);
    CHECK_THROWS_AS(f.get<int>("missing"), FormatError);
    CHECK(f.get_or<int>("missing", 3) == 3);
    auto const& s = f.array("strings");
    REQUIRE(s.values.size() == 3);
    CHECK(s.values[2].as<std::string>("x") == "héllo");
    auto const& n = f.array("nested");
    REQUIRE(n.values.size() == 1);
    CHECK(n.values[0].as<GgufArray>("x").values[1].as<int>("x") == 2);
    REQUIRE(f.tensors().size() == 2);
    auto const& a = f.tensor("a");
    CHECK(a.dims[0] == 32);
    CHECK(a.dims[1] == 2);
    CHECK(a.num_rows() == 2);
    CHECK(a.offset % 32 == 0);
    std::vector<float> row(32);
    dequantize_row(a.type, f.tensor_data(a).subspan(a.row_bytes(), a.row_bytes()), row);
    CHECK(row[0] == 16.0f);
    auto const& b = f.tensor("b");
    CHECK(b.type == GgmlType::q8_0);
    CHECK(b.size_bytes == 68);
    std::vector<float> brow(64);
    dequantize_row(b.type, f.tensor_data(b), brow);
    CHECK(brow[0] == 0.25f * static_cast<float>(static_cast<std::int8_t>(std::byte{14})));
    CHECK_THROWS_AS(f.tensor("nope"), FormatError);
  }
}

TEST_CASE("gguf: every truncation is a FormatError", "[gguf]") {
  auto const full = sample_file();
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("truncated to " << n << " of " << full.size() << " bytes");
    CHECK_THROWS_AS(GgufFile::parse(cut), FormatError);
  }
}

TEST_CASE("gguf: corrupt headers, counts and offsets are clear errors", "[gguf]") {
  auto const base = sample_file();
  SECTION("bad magic") {
    auto b = base;
    b[0] = std::byte{'X'};
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("bad magic"));
  }
  SECTION("version 1 and unknown versions") {
    auto b = base;
    put_at<std::uint32_t>(b, 4, 1);
    CHECK_THROWS_AS(GgufFile::parse(b), Unsupported);
    put_at<std::uint32_t>(b, 4, 4);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("version 4"));
  }
  SECTION("huge tensor and metadata counts") {
    auto b = base;
    put_at<std::uint64_t>(b, 8, ~std::uint64_t{0});
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("tensor count"));
    b = base;
    put_at<std::uint64_t>(b, 16, std::uint64_t{1} << 62);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("metadata count"));
  }
  SECTION("huge string length in the first key") {
    auto b = base;
    put_at<std::uint64_t>(b, 24, ~std::uint64_t{0} - 3);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("string length"));
  }
  SECTION("unknown value type") {
    auto b = base;
    put_at<std::uint32_t>(b, 24 + 8 + std::strlen("general.architecture"), 13);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("unknown value type 13"));
  }
  // Tensor infos sit just before the (32-aligned) data section; locate tensor "b"'s info by its name.
  auto find = [&](std::string_view needle) {
    auto const* p = reinterpret_cast<char const*>(base.data());
    std::string_view const all(p, base.size());
    auto const at = all.rfind(needle);
    REQUIRE(at != std::string_view::npos);
    return at;
  };
  std::size_t const b_name = find(std::string_view("\x01\0\0\0\0\0\0\0b", 9)) + 8;  // u64 len 1 + "b"
  std::size_t const b_ndims = b_name + 1, b_dim0 = b_ndims + 4, b_type = b_dim0 + 8, b_offset = b_type + 4;
  SECTION("bad n_dims") {
    auto b = base;
    put_at<std::uint32_t>(b, b_ndims, 5);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("n_dims = 5"));
  }
  SECTION("unknown tensor type") {
    auto b = base;
    put_at<std::uint32_t>(b, b_type, 99);
    CHECK_THROWS_AS(GgufFile::parse(b), Unsupported);
  }
  SECTION("row length not a multiple of the block") {
    auto b = base;
    put_at<std::uint64_t>(b, b_dim0, 33);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("block size"));
  }
  SECTION("overflowing dimension") {
    auto b = base;
    put_at<std::uint64_t>(b, b_dim0, ~std::uint64_t{0} - 31);
    CHECK_THROWS_AS(GgufFile::parse(b), FormatError);
  }
  SECTION("misaligned and overflowing offsets") {
    auto b = base;
    put_at<std::uint64_t>(b, b_offset, 8);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("alignment"));
    put_at<std::uint64_t>(b, b_offset, ~std::uint64_t{0} - 31);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("runs past"));
    put_at<std::uint64_t>(b, b_offset, 4096);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("runs past"));
  }
  SECTION("random byte flips never crash") {
    std::mt19937 rng(1234);
    for (int i = 0; i < 3000; ++i) {
      auto b = base;
      int const flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<std::byte>(rng());
      try {
        auto f = GgufFile::parse(b);
        for (auto const& t : f.tensors()) (void)f.tensor_data(t);
      } catch (Error const&) {
      }
    }
  }
}

TEST_CASE("gguf: half and bfloat16 conversions", "[gguf]") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    float const f = detail::f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(detail::f32_to_f16(f) == h);
  }
  CHECK(detail::f16_to_f32(0x3c00) == 1.0f);
  CHECK(detail::f32_to_f16(1.0f + 1.0f / 4096) == 0x3c00);  // ties to even
  CHECK(detail::bf16_to_f32(detail::f32_to_bf16(3.0f)) == 3.0f);
}

TEST_CASE("gguf: Q4_0 and Q4_1 blocks decode as ggml does", "[gguf]") {
  std::vector<std::byte> q40(18), q41(20);
  std::uint16_t const d = detail::f32_to_f16(0.5f), m = detail::f32_to_f16(-1.0f);
  std::memcpy(q40.data(), &d, 2);
  std::memcpy(q41.data(), &d, 2);
  std::memcpy(q41.data() + 2, &m, 2);
  for (int j = 0; j < 16; ++j) {
    q40[2 + j] = static_cast<std::byte>(j | ((15 - j) << 4));
    q41[4 + j] = static_cast<std::byte>(j | ((15 - j) << 4));
  }
  std::vector<float> a(32), b(32);
  dequantize_row(GgmlType::q4_0, q40, a);
  dequantize_row(GgmlType::q4_1, q41, b);
  for (int j = 0; j < 16; ++j) {
    CHECK(a[j] == 0.5f * static_cast<float>(j - 8));
    CHECK(a[j + 16] == 0.5f * static_cast<float>(15 - j - 8));
    CHECK(b[j] == 0.5f * static_cast<float>(j) - 1.0f);
    CHECK(b[j + 16] == 0.5f * static_cast<float>(15 - j) - 1.0f);
  }
  CHECK_THROWS_AS(dequantize_row(GgmlType::q4_1, q41, std::span<float>(b.data(), 31)), InvalidArgument);
}

TEST_CASE("gguf: the real SmolLM2-135M-Instruct Q4_1 file", "[gguf][model-file]") {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const f = GgufFile::open(path);
  CHECK(f.version() == 3);
  CHECK(f.get<std::string>("general.architecture") == "llama");
  CHECK(f.get<int>("llama.block_count") == 30);
  CHECK(f.get<int>("llama.embedding_length") == 576);
  CHECK(f.get<int>("llama.attention.head_count") == 9);
  CHECK(f.get<int>("llama.attention.head_count_kv") == 3);
  CHECK(f.get<float>("llama.rope.freq_base") == 100000.0f);
  CHECK(f.get<std::string>("tokenizer.ggml.model") == "gpt2");
  CHECK(f.get<std::string>("tokenizer.ggml.pre") == "smollm");
  CHECK(f.array("tokenizer.ggml.tokens").values.size() == 49152);
  CHECK(f.array("tokenizer.ggml.merges").values.size() == 48900);
  CHECK(f.tensors().size() == 272);
  auto const& emb = f.tensor("token_embd.weight");
  CHECK(emb.type == GgmlType::q8_0);
  CHECK(emb.dims[0] == 576);
  CHECK(emb.dims[1] == 49152);
  auto const& q = f.tensor("blk.0.attn_q.weight");
  CHECK(q.type == GgmlType::q4_1);
  std::vector<float> row(576);
  dequantize_row(q.type, f.tensor_data(q).subspan(0, q.row_bytes()), row);
  for (float x : row) REQUIRE(std::isfinite(x));
  CHECK(f.find_tensor("output.weight") == nullptr);  // tied embeddings
}
