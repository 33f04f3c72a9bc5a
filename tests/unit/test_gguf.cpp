// GGUF reader: the real SmolLM2 file, synthetic files written here, and every kind of corruption: size
// products that overflow, tensors that overlap, metadata that would cost far more memory than the file, and
// model files whose tensors do not match their configuration; every weight type read as its bytes decode, and
// the refusal of types no kernel reads by name, id and the supported list.

#include <piecrust/model/dequantize.hpp>
#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/model_paths.hpp>

#include "random_quant_blocks.hpp"

#include <catch2/catch.hpp>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>

// Every operator new of this executable is counted (by the allocator's usable size, which is what the
// allocation really holds), so a test can measure the peak of the heap bytes live while one call runs.
namespace {
std::atomic<std::size_t> heap_live{0};
std::atomic<std::size_t> heap_peak{0};

void* counted_new(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  std::size_t const live = heap_live.fetch_add(malloc_usable_size(p)) + malloc_usable_size(p);
  std::size_t peak = heap_peak.load();
  while (live > peak && !heap_peak.compare_exchange_weak(peak, live)) {
  }
  return p;
}
void counted_delete(void* p) noexcept {
  if (p == nullptr) return;
  heap_live.fetch_sub(malloc_usable_size(p));
  std::free(p);
}

// Peak heap bytes allocated (beyond those live before) while f runs.
template <class F>
std::size_t peak_heap_of(F&& f) {
  std::size_t const before = heap_live.load();
  heap_peak.store(before);
  f();
  return heap_peak.load() - before;
}
}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, std::size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_delete(p); }
void* operator new(std::size_t n, std::nothrow_t const&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::nothrow_t const&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p, std::nothrow_t const&) noexcept { counted_delete(p); }
void operator delete[](void* p, std::nothrow_t const&) noexcept { counted_delete(p); }

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

// A GGUF v3 file written byte by byte, for what GgufWriter refuses to write: tensor infos with any dims, type
// and offset over a zero data section of `data_bytes`, and metadata entries given as raw bytes.
struct RawGguf {
  struct Info {
    std::string name;
    std::vector<std::uint64_t> dims;
    GgmlType type = GgmlType::f32;
    std::uint64_t offset = 0;
  };
  std::vector<Info> infos;
  std::size_t data_bytes = 0;
  std::uint64_t kv_count = 0;
  std::vector<std::byte> entries;  // kv_count metadata entries, as they appear in the file

  template <class T>
  static void put(std::vector<std::byte>& out, T v) {
    std::byte b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
  }
  static void put_string(std::vector<std::byte>& out, std::string_view s) {
    put<std::uint64_t>(out, s.size());
    auto const* p = reinterpret_cast<std::byte const*>(s.data());
    out.insert(out.end(), p, p + s.size());
  }
  // An entry `key` = array of `n` elements of `type`, `element` bytes each, every byte `fill`.
  RawGguf& array(std::string_view key, GgufValueType type, std::uint64_t n, std::size_t element, std::byte fill = {}) {
    put_string(entries, key);
    put<std::uint32_t>(entries, static_cast<std::uint32_t>(GgufValueType::array));
    put<std::uint32_t>(entries, static_cast<std::uint32_t>(type));
    put<std::uint64_t>(entries, n);
    entries.insert(entries.end(), static_cast<std::size_t>(n) * element, fill);
    ++kv_count;
    return *this;
  }
  [[nodiscard]] std::vector<std::byte> bytes() const {
    std::vector<std::byte> out;
    put<std::uint32_t>(out, GgufFile::magic);
    put<std::uint32_t>(out, 3);
    put<std::uint64_t>(out, infos.size());
    put<std::uint64_t>(out, kv_count);
    out.insert(out.end(), entries.begin(), entries.end());
    for (auto const& t : infos) {
      put_string(out, t.name);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) put<std::uint64_t>(out, d);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
      put<std::uint64_t>(out, t.offset);
    }
    out.resize((out.size() + 31) / 32 * 32 + data_bytes);
    return out;
  }
};

// Where the dims of tensor `name` start in a file GgufWriter wrote (just past its name and n_dims).
std::size_t dims_of(std::vector<std::byte> const& b, std::string const& name) {
  std::string needle(8, '\0');
  std::uint64_t const len = name.size();
  std::memcpy(needle.data(), &len, 8);
  needle += name;
  std::string_view const all(reinterpret_cast<char const*>(b.data()), b.size());
  auto const at = all.rfind(needle);
  REQUIRE(at != std::string_view::npos);
  return at + needle.size() + 4;
}

// A small Llama model file: 2 layers, hidden 64, 2 query heads and 1 KV head of dim 32, ffn 96, a 16-token
// vocabulary, zero F32 tensors. `edit` may change the tensors (dims in ggml order, type) and add metadata.
struct TensorSpec {
  std::vector<std::uint64_t> dims;
  GgmlType type = GgmlType::f32;
};
using TinyEdit = std::function<void(std::map<std::string, TensorSpec>&, GgufWriter&)>;

std::vector<std::byte> tiny_model_file(TinyEdit const& edit = {}) {
  std::map<std::string, TensorSpec> t;
  t["token_embd.weight"] = {{64, 16}};
  t["output_norm.weight"] = {{64}};
  for (int l = 0; l < 2; ++l) {
    auto const n = [&](char const* s) { return "blk." + std::to_string(l) + "." + s; };
    t[n("attn_norm.weight")] = {{64}};
    t[n("attn_q.weight")] = {{64, 64}};
    t[n("attn_k.weight")] = {{64, 32}};
    t[n("attn_v.weight")] = {{64, 32}};
    t[n("attn_output.weight")] = {{64, 64}};
    t[n("ffn_norm.weight")] = {{64}};
    t[n("ffn_gate.weight")] = {{64, 96}};
    t[n("ffn_up.weight")] = {{64, 96}};
    t[n("ffn_down.weight")] = {{96, 64}};
  }
  GgufWriter w;
  w.set("general.architecture", {std::string("llama")});
  w.set("llama.embedding_length", {std::uint32_t{64}});
  w.set("llama.block_count", {std::uint32_t{2}});
  w.set("llama.attention.head_count", {std::uint32_t{2}});
  w.set("llama.attention.head_count_kv", {std::uint32_t{1}});
  w.set("llama.feed_forward_length", {std::uint32_t{96}});
  w.set("llama.context_length", {std::uint32_t{256}});
  std::vector<std::string> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back("t" + std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  if (edit) edit(t, w);
  for (auto const& [name, spec] : t) {
    std::uint64_t elems = 1;
    for (auto d : spec.dims) elems *= d;
    w.add_tensor(name, spec.dims, spec.type, std::vector<std::byte>(ggml_row_bytes(spec.type, elems)));
  }
  return w.bytes();
}

LlamaWeights load_tiny(TinyEdit const& edit = {}) {
  return LlamaWeights::from_gguf(std::make_shared<GgufFile const>(GgufFile::parse(tiny_model_file(edit), "tiny")));
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
  // Packed metadata: the tokens and merges cost about what they take in the file's header.
  CHECK(f.memory_bytes() <= 2 * f.data_offset());
}

TEST_CASE("gguf: every size product is checked for overflow; the error names the tensor, the field and the value", "[gguf][hardening]") {
  auto parse_one = [](RawGguf::Info info) {
    RawGguf r;
    r.infos.push_back(std::move(info));
    r.data_bytes = 256;
    return GgufFile::parse(r.bytes(), "raw");
  };
  std::uint64_t const two31 = std::uint64_t{1} << 31, two32 = std::uint64_t{1} << 32, two56 = std::uint64_t{1} << 56;
  // 2^62 elements of 4 bytes: the byte size wrapped to 0 before, so the tensor "fit" any data section.
  CHECK_THROWS_AS(parse_one({"big", {two31, two31}, GgmlType::f32, 0}), FormatError);
  CHECK_THROWS_WITH(parse_one({"big", {two31, two31}, GgmlType::f32, 0}),
                    Catch::Contains("tensor 'big' dims {2147483648, 2147483648} of type F32") &&
                        Catch::Contains("byte size overflow"));
  CHECK_THROWS_WITH(parse_one({"wide", {two32, two31, 4}, GgmlType::f32, 0}),
                    Catch::Contains("tensor 'wide' dims[2] = 4 makes its element count overflow"));
  CHECK_THROWS_WITH(parse_one({"empty", {32, 0}, GgmlType::f32, 0}), Catch::Contains("tensor 'empty' has dims[1] = 0"));
  // 2^58 Q8_0 blocks fit in 64 bits but not in the file.
  CHECK_THROWS_WITH(parse_one({"q", {std::uint64_t{1} << 63}, GgmlType::q8_0, 0}),
                    Catch::Contains("tensor 'q' data [0, +9799832789158199296) runs past the 256-byte data section"));
  CHECK_THROWS_WITH(parse_one({"q", {33}, GgmlType::q8_0, 0}), Catch::Contains("dims[0] = 33 is not a multiple"));
  CHECK_NOTHROW(parse_one({"ok", {32, 2}, GgmlType::f32, 0}));
  CHECK_THROWS_WITH(ggml_row_bytes(GgmlType::f32, std::size_t{1} << 62), Catch::Contains("n = 4611686018427387904"));
  CHECK_THROWS_AS(ggml_row_bytes(GgmlType::f32, std::size_t{1} << 62), InvalidArgument);

  // A model whose token_embd claims {64, 2^56}: refused by the reader whatever its type (F32 wraps, Q8_0 does not fit).
  for (GgmlType const type : {GgmlType::f32, GgmlType::q8_0}) {
    INFO(ggml_type_name(type));
    auto b = tiny_model_file([&](auto& t, GgufWriter&) { t["token_embd.weight"].type = type; });
    put_at<std::uint64_t>(b, dims_of(b, "token_embd.weight") + 8, two56);
    CHECK_THROWS_AS(GgufFile::parse(b), FormatError);
    CHECK_THROWS_WITH(GgufFile::parse(b), Catch::Contains("tensor 'token_embd.weight'") &&
                                              (Catch::Contains("72057594037927936") || Catch::Contains("runs past")));
  }
}

TEST_CASE("gguf: tensor data lies in the data section and tensors do not overlap", "[gguf][hardening]") {
  auto two = [](std::uint64_t a_offset, std::uint64_t b_offset, std::uint64_t b_len = 32) {
    RawGguf r;
    r.infos.push_back({"a", {32}, GgmlType::f32, a_offset});  // 128 bytes
    r.infos.push_back({"b", {b_len}, GgmlType::f32, b_offset});
    r.data_bytes = 512;
    return GgufFile::parse(r.bytes(), "raw");
  };
  CHECK_THROWS_AS(two(0, 96), FormatError);
  CHECK_THROWS_WITH(two(0, 96), Catch::Contains("tensors 'a' (data [0, +128)) and 'b' (data [96, +128)) overlap"));
  CHECK_THROWS_WITH(two(0, 0), Catch::Contains("tensors 'a'") && Catch::Contains("'b'") && Catch::Contains("overlap"));
  // Listed out of order: 'b' covers all of 'a'.
  CHECK_THROWS_WITH(two(128, 0, 96), Catch::Contains("tensors 'b' (data [0, +384)) and 'a' (data [128, +128)) overlap"));
  auto const f = two(0, 128);  // adjacent ranges are fine
  CHECK(f.tensor_data(f.tensor("a")).data() + 128 == f.tensor_data(f.tensor("b")).data());
  CHECK_THROWS_WITH(two(0, 512), Catch::Contains("tensor 'b' data [512, +128) runs past the 512-byte data section"));

  GgufTensorInfo forged = f.tensor("b");
  forged.offset = 480;
  CHECK_THROWS_AS((void)f.tensor_data(forged), OutOfRange);
  CHECK_THROWS_WITH((void)f.tensor_data(forged), Catch::Contains("tensor 'b' data [480, +128)"));
}

TEST_CASE("gguf: metadata costs about its bytes in the file, and GgufLimits bounds it", "[gguf][hardening]") {
  SECTION("a 16 MiB u8 array takes 16 MiB, not a value object per byte") {
    std::uint64_t const n = std::uint64_t{16} << 20;
    auto bytes = RawGguf().array("big", GgufValueType::u8, n, 1, std::byte{7}).bytes();
    std::size_t const file_size = bytes.size();
    std::optional<GgufFile> f;
    std::size_t const peak = peak_heap_of([&] { f.emplace(GgufFile::parse(std::move(bytes))); });
    INFO("peak heap " << peak << ", file " << file_size << ", accounted " << f->memory_bytes());
    CHECK(peak <= file_size + (64 << 10));
    CHECK(peak <= f->memory_bytes() + (64 << 10));  // the accounting bounds the real allocations
    CHECK(f->memory_bytes() >= n);
    CHECK(f->memory_bytes() <= n + 4096);
    auto const& arr = f->array("big");
    CHECK(arr.element_type == GgufValueType::u8);
    CHECK(arr.values.heap_bytes() == n);
    REQUIRE(arr.values.size() == n);
    CHECK(arr.values[n - 1].as<int>("big") == 7);
    CHECK_THROWS_AS(arr.values[n], OutOfRange);
  }
  SECTION("a string array takes its characters and one offset per string") {
    std::uint64_t const n = 200000;
    RawGguf r;
    RawGguf::put_string(r.entries, "strings");
    RawGguf::put<std::uint32_t>(r.entries, static_cast<std::uint32_t>(GgufValueType::array));
    RawGguf::put<std::uint32_t>(r.entries, static_cast<std::uint32_t>(GgufValueType::string));
    RawGguf::put<std::uint64_t>(r.entries, n);
    for (std::uint64_t i = 0; i < n; ++i) RawGguf::put_string(r.entries, std::to_string(i % 1000));
    r.kv_count = 1;
    auto bytes = r.bytes();
    std::size_t const file_size = bytes.size();
    std::optional<GgufFile> f;
    std::size_t const peak = peak_heap_of([&] { f.emplace(GgufFile::parse(std::move(bytes))); });
    INFO("peak heap " << peak << ", file " << file_size << ", accounted " << f->memory_bytes());
    CHECK(peak <= file_size + (64 << 10));
    CHECK(peak <= f->memory_bytes() + (64 << 10));
    auto const& v = f->array("strings").values;
    REQUIRE(v.size() == n);
    CHECK(v.string_at(1234) == "234");
    CHECK(v[999].as<std::string>("strings") == "999");
    CHECK_THROWS_AS(v.array_at(0), InvalidArgument);
  }
  SECTION("nested arrays (a fixed-size object each) past the relative bound: LimitExceeded before allocating") {
    std::uint64_t const n = 100000;  // 12 bytes each in the file, an object of ~100 bytes each in memory
    RawGguf r;
    RawGguf::put_string(r.entries, "nest");
    RawGguf::put<std::uint32_t>(r.entries, static_cast<std::uint32_t>(GgufValueType::array));
    RawGguf::put<std::uint32_t>(r.entries, static_cast<std::uint32_t>(GgufValueType::array));
    RawGguf::put<std::uint64_t>(r.entries, n);
    for (std::uint64_t i = 0; i < n; ++i) {
      RawGguf::put<std::uint32_t>(r.entries, static_cast<std::uint32_t>(GgufValueType::u8));
      RawGguf::put<std::uint64_t>(r.entries, 0);
    }
    r.kv_count = 1;
    auto const bytes = r.bytes();
    std::size_t peak = 0;
    peak = peak_heap_of([&] {
      CHECK_THROWS_AS(GgufFile::parse(bytes), LimitExceeded);
    });
    CHECK(peak <= bytes.size() + (256 << 10));  // the copy of the bytes and the message, nothing sized by n
    CHECK_THROWS_WITH(GgufFile::parse(bytes), Catch::Contains("array 'nest' of 100000 array") &&
                                                  Catch::Contains("metadata_bytes_per_file_byte = 4 x the " +
                                                                  std::to_string(bytes.size()) + "-byte file"));
    // Explicit, looser limits accept it.
    GgufLimits loose;
    loose.metadata_bytes_per_file_byte = 64;
    auto const f = GgufFile::parse(bytes, "nest", loose);
    CHECK(f.array("nest").values.size() == n);
    CHECK(f.array("nest").values.array_at(n - 1).element_type == GgufValueType::u8);
  }
  SECTION("a metadata count is charged before anything is reserved for it") {
    RawGguf r;
    r.kv_count = 100000;
    r.entries.resize(13 * 100000);  // room for the count, so only the memory bound refuses it
    CHECK_THROWS_WITH(GgufFile::parse(r.bytes()), Catch::Contains("the metadata count 100000 would bring"));
    CHECK_THROWS_AS(GgufFile::parse(r.bytes()), LimitExceeded);
  }
  SECTION("a ceiling whatever the file's size") {
    GgufLimits tight;
    tight.max_metadata_bytes = 512;
    CHECK_THROWS_AS(GgufFile::parse(sample_file(), "s", tight), LimitExceeded);
    CHECK_THROWS_WITH(GgufFile::parse(sample_file(), "s", tight), Catch::Contains("over the limit of 512 bytes"));
    auto const f = GgufFile::parse(sample_file());
    CHECK(f.memory_bytes() > 512);
  }
}

TEST_CASE("gguf: packed arrays built in code keep one element type", "[gguf]") {
  GgufArray a{GgufValueType::i32, {{std::int32_t{1}}, {std::int32_t{-2}}}};
  CHECK(a.values.size() == 2);
  CHECK(a.values.type() == GgufValueType::i32);
  CHECK(a.values[1].as<int>("a") == -2);
  CHECK_THROWS_AS(a.values.push_back({std::string("x")}), InvalidArgument);
  CHECK(a.values.size() == 2);
  GgufValues strings{{std::string("x")}, {std::string("")}, {std::string("yz")}};
  std::vector<std::string> seen;
  for (auto const& v : strings) seen.push_back(v.as<std::string>("s"));
  CHECK(seen == std::vector<std::string>{"x", "", "yz"});
  CHECK_THROWS_AS(strings.push_back({1.5f}), InvalidArgument);
  CHECK(strings.string_at(2) == "yz");
  CHECK_THROWS_AS(strings.string_at(3), OutOfRange);
}

TEST_CASE("LlamaWeights::from_gguf checks every tensor's shape and type against the configuration", "[gguf][hardening]") {
  auto const w = load_tiny();
  CHECK(w.config.vocab_size == 16);
  CHECK(w.config.hidden == 64);
  CHECK(w.config.head_dim == 32);
  CHECK(w.layers.size() == 2);
  CHECK(w.layers[1].down.rows == 64);
  CHECK(w.layers[1].down.cols == 96);

  auto const set = [](std::string const& name, std::vector<std::uint64_t> dims, GgmlType type = GgmlType::f32) {
    return TinyEdit([=](auto& t, GgufWriter&) { t[name] = {dims, type}; });
  };
  // The vocabulary is the tokenizer's 16 tokens: 17 embedding rows would let token 16 read past the table.
  CHECK_THROWS_AS(load_tiny(set("token_embd.weight", {64, 17})), FormatError);
  CHECK_THROWS_WITH(load_tiny(set("token_embd.weight", {64, 17})),
                    Catch::Contains("tensor 'token_embd.weight' has shape [17][64], expected [16][64] [vocab_size][hidden]"));
  CHECK_THROWS_WITH(load_tiny(set("token_embd.weight", {32, 16})), Catch::Contains("has shape [16][32], expected [16][64]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.1.attn_k.weight", {64, 33})),
                    Catch::Contains("tensor 'blk.1.attn_k.weight' has shape [33][64], expected [32][64] [num_kv_heads * head_dim][hidden]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.0.attn_output.weight", {64, 64, 2})), Catch::Contains("has shape [2][64][64], expected [64][64]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.1.ffn_down.weight", {64, 96})),
                    Catch::Contains("tensor 'blk.1.ffn_down.weight' has shape [96][64], expected [64][96] [hidden][ffn]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.0.ffn_gate.weight", {64, 95})), Catch::Contains("'blk.0.ffn_gate.weight' has shape [95][64]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.1.attn_norm.weight", {63})),
                    Catch::Contains("tensor 'blk.1.attn_norm.weight' has shape [63], expected [64] [hidden]"));
  CHECK_THROWS_WITH(load_tiny(set("output_norm.weight", {32, 2})), Catch::Contains("'output_norm.weight' has shape [2][32], expected [64]"));
  CHECK_NOTHROW(load_tiny(set("output_norm.weight", {64, 1})));  // a 1-row matrix is a vector
  CHECK_THROWS_AS(load_tiny(set("blk.0.ffn_norm.weight", {64}, GgmlType::i32)), Unsupported);
  CHECK_THROWS_WITH(load_tiny(set("blk.0.ffn_norm.weight", {64}, GgmlType::i32)),
                    Catch::Contains("tensor 'blk.0.ffn_norm.weight' has type I32"));
  CHECK_THROWS_WITH(load_tiny(set("blk.0.attn_q.weight", {64, 64}, GgmlType::i8)),
                    Catch::Contains("tensor 'blk.0.attn_q.weight' has type I8"));
  CHECK_THROWS_WITH(load_tiny(set("output.weight", {64, 15})), Catch::Contains("'output.weight' has shape [15][64], expected [16][64]"));
  CHECK_THROWS_WITH(load_tiny(set("blk.2.attn_q.weight", {64, 64})),
                    Catch::Contains("tensor 'blk.2.attn_q.weight' is for layer 2 but block_count = 2"));
  CHECK_THROWS_WITH(load_tiny([](auto& t, GgufWriter&) { t.erase("blk.1.ffn_up.weight"); }),
                    Catch::Contains("missing tensor 'blk.1.ffn_up.weight'"));
  // Products of the configuration that overflow are refused before anything is sized by them.
  CHECK_THROWS_WITH(load_tiny([](auto&, GgufWriter& w) { w.set("llama.attention.key_length", {std::uint64_t{1} << 60}); }),
                    Catch::Contains("num_heads = 2 x head_dim = 1152921504606846976 x hidden = 64 overflows 64 bits"));
  // Without a tokenizer the vocabulary is the {arch}.vocab_size key, else token_embd's rows.
  auto const no_tokens = [](std::uint64_t rows, bool key) {
    std::vector<std::byte> b = tiny_model_file([&](auto& t, GgufWriter& w) {
      t["token_embd.weight"] = {{64, rows}};
      if (key) w.set("llama.vocab_size", {std::uint32_t{16}});
    });
    // Rename the tokens array so that the file has no tokenizer.
    std::string_view const all(reinterpret_cast<char const*>(b.data()), b.size());
    auto const at = all.find("tokenizer.ggml.tokens");
    REQUIRE(at != std::string_view::npos);
    b[at] = std::byte{'T'};
    return LlamaWeights::from_gguf(std::make_shared<GgufFile const>(GgufFile::parse(b)));
  };
  CHECK(no_tokens(20, false).config.vocab_size == 20);
  CHECK(no_tokens(16, true).config.vocab_size == 16);
  CHECK_THROWS_WITH(no_tokens(20, true), Catch::Contains("'token_embd.weight' has shape [20][64], expected [16][64]"));
}

namespace {

// A one-layer Llama model file of hidden 256 (rows of whole K-quant blocks): every matrix of `type`, norms F32,
// every tensor random valid content (random_quant_blocks.hpp; the F32 norms too). `edit` as in tiny_model_file.
std::vector<std::byte> wide_model_file(GgmlType type, std::uint64_t seed, TinyEdit const& edit = {}) {
  std::map<std::string, TensorSpec> t;
  t["token_embd.weight"] = {{256, 16}, type};
  t["output_norm.weight"] = {{256}};
  t["blk.0.attn_norm.weight"] = {{256}};
  t["blk.0.attn_q.weight"] = {{256, 256}, type};
  t["blk.0.attn_k.weight"] = {{256, 128}, type};
  t["blk.0.attn_v.weight"] = {{256, 128}, type};
  t["blk.0.attn_output.weight"] = {{256, 256}, type};
  t["blk.0.ffn_norm.weight"] = {{256}};
  t["blk.0.ffn_gate.weight"] = {{256, 256}, type};
  t["blk.0.ffn_up.weight"] = {{256, 256}, type};
  t["blk.0.ffn_down.weight"] = {{256, 256}, type};
  GgufWriter w;
  w.set("general.architecture", {std::string("llama")});
  w.set("llama.embedding_length", {std::uint32_t{256}});
  w.set("llama.block_count", {std::uint32_t{1}});
  w.set("llama.attention.head_count", {std::uint32_t{2}});
  w.set("llama.attention.head_count_kv", {std::uint32_t{1}});
  w.set("llama.feed_forward_length", {std::uint32_t{256}});
  w.set("llama.context_length", {std::uint32_t{256}});
  std::vector<std::string> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back("t" + std::to_string(i));
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  if (edit) edit(t, w);
  for (auto const& [name, spec] : t) {
    std::uint64_t elems = 1;
    for (auto d : spec.dims) elems *= d;
    std::vector<std::byte> data(ggml_row_bytes(spec.type, elems));
    auto const wt = weight_type_from_id(static_cast<std::uint32_t>(spec.type));
    if (wt) {
      testing::fill_random_blocks(*wt, data.data(), data.size(), seed++);
    } else {  // a type no kernel reads: any bytes
      testing::SplitMix64 rng(seed++);
      for (auto& b : data) b = static_cast<std::byte>(rng() & 0xffu);
    }
    w.add_tensor(name, spec.dims, spec.type, data);
  }
  return w.bytes();
}

}  // namespace

TEST_CASE("LlamaWeights::from_gguf reads every supported weight type as its bytes decode", "[gguf][quant]") {
  std::uint64_t const seed = std::random_device{}();
  INFO("seed " << seed);
  for (WeightType const wt : all_weight_types) {
    auto const type = static_cast<GgmlType>(wt);
    INFO(ggml_type_name(type));
    auto const file = std::make_shared<GgufFile const>(GgufFile::parse(wide_model_file(type, seed), "wide"));
    auto const w = LlamaWeights::from_gguf(file);
    // Every type as it is stored (Q4_0 may also be kept as the Q4_1 of the same values).
    CHECK((w.layers[0].wq.type == wt || (wt == WeightType::q4_0 && w.layers[0].wq.type == WeightType::q4_1)));
    for (auto const& [name, m] : {std::pair{"token_embd.weight", w.token_embd}, std::pair{"blk.0.attn_k.weight", w.layers[0].wk},
                                  std::pair{"blk.0.ffn_down.weight", w.layers[0].down}}) {
      INFO(name);
      auto const& t = file->tensor(name);
      auto const data = file->tensor_data(t);
      for (std::size_t r : {std::size_t{0}, m.rows / 2, m.rows - 1}) {
        std::vector<float> want(m.cols), got(m.cols);  // [cols]
        dequantize_row(type, data.subspan(r * t.row_bytes(), t.row_bytes()), want);
        LlamaWeights::dequantize_matrix_row(m, r, got);
        CHECK(got == want);  // == on values: Q4_0's d * 0 is -0 where the Q4_1 copy gives +0
        CHECK(std::set<float>(want.begin(), want.end()).size() >= 16);  // real weights, not a degenerate fill
      }
    }
  }
}

TEST_CASE("a tensor of a type piecrust does not support is refused by name, id and the supported list", "[gguf][quant]") {
  std::string const supported = "(supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)";
  // Known to the reader (so the file parses and can be inspected), unknown to every kernel.
  for (std::uint32_t const id : {9u, 15u, 16u, 17u, 19u, 21u, 24u, 26u, 28u, 29u, 34u, 35u, 39u}) {
    auto const type = static_cast<GgmlType>(id);
    INFO(ggml_type_name(type));
    for (char const* name : {"blk.0.attn_q.weight", "token_embd.weight"}) {
      auto const bytes = wide_model_file(GgmlType::q4_k, id, [&](auto& t, GgufWriter&) { t[name].type = type; });
      auto const file = std::make_shared<GgufFile const>(GgufFile::parse(bytes, "wide"));
      CHECK(file->tensor(name).type == type);
      CHECK_THROWS_AS(LlamaWeights::from_gguf(file), Unsupported);
      CHECK_THROWS_WITH(LlamaWeights::from_gguf(file),
                        Catch::Contains(std::string("wide: tensor '") + name + "' has type " + std::string(ggml_type_name(type)) +
                                        " (id " + std::to_string(id) + "), which piecrust does not support") &&
                            Catch::Contains(supported));
    }
  }
  // An id the reader does not know: its size is unknown, so parsing stops at that tensor.
  for (std::uint32_t const id : {31u, 99u, 0xffffffffu}) {
    RawGguf r;
    r.infos.push_back({"blk.3.ffn_up.weight", {256, 2}, static_cast<GgmlType>(id), 0});
    r.data_bytes = 1024;
    CHECK_THROWS_AS(GgufFile::parse(r.bytes(), "raw"), Unsupported);
    CHECK_THROWS_WITH(GgufFile::parse(r.bytes(), "raw"),
                      Catch::Contains("raw: tensor 'blk.3.ffn_up.weight' has unknown ggml type id " + std::to_string(id)) &&
                          Catch::Contains(supported));
  }
}

TEST_CASE("tensors of the block types whose shape, size or place does not fit are refused at parse", "[gguf][quant][hardening]") {
  auto parse = [](std::vector<RawGguf::Info> infos, std::size_t data_bytes) {
    RawGguf r;
    r.infos = std::move(infos);
    r.data_bytes = data_bytes;
    return GgufFile::parse(r.bytes(), "raw");
  };
  for (WeightType const wt : all_weight_types) {
    if (!is_quantized(wt)) continue;
    auto const type = static_cast<GgmlType>(wt);
    auto const name = std::string(ggml_type_name(type));
    INFO(name);
    std::uint64_t const block = weight_block_size(wt), bytes = weight_block_bytes(wt);
    // A row that is not a whole number of blocks has no byte size (e.g. a Q4_K row of 128 or 384 weights).
    for (std::uint64_t cols : {block / 2, block + block / 2, std::uint64_t{1}}) {
      CHECK_THROWS_AS(parse({{"w", {cols, 4}, type, 0}}, 4096), FormatError);
      CHECK_THROWS_WITH(parse({{"w", {cols, 4}, type, 0}}, 4096),
                        Catch::Contains("tensor 'w' row length dims[0] = " + std::to_string(cols) + " is not a multiple of the " +
                                        name + " block size " + std::to_string(block)));
    }
    // Data that runs past the file, by one byte: 4 rows of 2 blocks.
    std::uint64_t const size = 4 * 2 * bytes, padded = (size + 31) / 32 * 32;
    CHECK_THROWS_WITH(parse({{"w", {2 * block, 4}, type, 0}}, size - 1),
                      Catch::Contains("tensor 'w' data [0, +" + std::to_string(size) + ") runs past the " +
                                      std::to_string(size - 1) + "-byte data section"));
    auto const ok = parse({{"w", {2 * block, 4}, type, 0}}, size);
    CHECK(ok.tensor_data(ok.tensor("w")).size() == size);
    CHECK(ok.tensor("w").row_bytes() == 2 * bytes);
    // A tensor whose type and shape need more bytes than lie before the next tensor's data.
    CHECK_THROWS_WITH(parse({{"a", {2 * block, 4}, type, 0}, {"b", {2 * block, 4}, type, padded - 32}}, 2 * padded),
                      Catch::Contains("tensors 'a' (data [0, +" + std::to_string(size) + ")) and 'b'") &&
                          Catch::Contains("overlap"));
    CHECK_NOTHROW(parse({{"a", {2 * block, 4}, type, 0}, {"b", {2 * block, 4}, type, padded}}, 2 * padded));
  }
  // The writer refuses bytes that do not match the type and shape.
  GgufWriter w;
  CHECK_THROWS_WITH(w.add_tensor("k", {256, 2}, GgmlType::q6_k, std::vector<std::byte>(419)),
                    Catch::Contains("tensor 'k' has 419 bytes, expected 420"));
}
