// Writes the seed inputs of the GGUF fuzzer (kept in tests/fuzz/corpus/gguf/): small valid files that exercise
// every metadata type, nested arrays, several tensor types, a tiny tokenizer, a whole small Llama and Qwen2
// model (the shape fuzz_gguf.cpp's adapters are for) and a LoRA adapter for it; and hostile variants the reader
// must refuse: size products that overflow, an embedding that claims 2^56 rows, overlapping tensors, a
// transposed projection, an array length past the file, a bool byte of 2.
// Usage: make_seeds <output-dir>. The names carry no .gguf suffix, which the repository ignores.

#include <piecrust/model/gguf_writer.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace piecrust;

struct Spec {
  std::vector<std::uint64_t> dims;  // ggml order: row length first
  GgmlType type;
};

// Deterministic, not all-zero tensor bytes (quantized scales included), so decoders see varied input.
std::vector<std::byte> filler(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> out(n);  // [n]
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>((x >> 24) & 0x3f);  // small values: f16/bf16 halves stay finite
  }
  return out;
}

// A model of the shape fuzz_gguf.cpp's base_config() has: vocab 16, hidden 32, 2 layers, 2 heads of 16, 1 KV
// head, ffn 64; tensors in a mix of the supported types.
std::vector<std::byte> small_model(std::string const& arch) {
  std::map<std::string, Spec> t;
  t["token_embd.weight"] = {{32, 16}, GgmlType::q8_0};
  t["output_norm.weight"] = {{32}, GgmlType::f32};
  if (arch == "qwen2") t["output.weight"] = {{32, 16}, GgmlType::f16};
  for (int l = 0; l < 2; ++l) {
    auto const n = [&](char const* s) { return "blk." + std::to_string(l) + "." + s; };
    t[n("attn_norm.weight")] = {{32}, GgmlType::f32};
    t[n("attn_q.weight")] = {{32, 32}, GgmlType::f16};
    t[n("attn_k.weight")] = {{32, 16}, GgmlType::bf16};
    t[n("attn_v.weight")] = {{32, 16}, GgmlType::q8_0};
    t[n("attn_output.weight")] = {{32, 32}, GgmlType::q4_1};
    t[n("ffn_norm.weight")] = {{32}, GgmlType::f16};
    t[n("ffn_gate.weight")] = {{32, 64}, GgmlType::q4_0};
    t[n("ffn_up.weight")] = {{32, 64}, GgmlType::q4_1};
    t[n("ffn_down.weight")] = {{64, 32}, GgmlType::q4_0};
    if (arch == "qwen2") {
      t[n("attn_q.bias")] = {{32}, GgmlType::f32};
      t[n("attn_k.bias")] = {{16}, GgmlType::f32};
      t[n("attn_v.bias")] = {{16}, GgmlType::f32};
    }
  }
  GgufWriter w;
  w.set("general.architecture", {arch});
  w.set(arch + ".embedding_length", {std::uint32_t{32}});
  w.set(arch + ".block_count", {std::uint32_t{2}});
  w.set(arch + ".attention.head_count", {std::uint32_t{2}});
  w.set(arch + ".attention.head_count_kv", {std::uint32_t{1}});
  w.set(arch + ".feed_forward_length", {std::uint32_t{64}});
  w.set(arch + ".context_length", {std::uint32_t{256}});
  w.set(arch + ".rope.freq_base", {10000.0f});
  w.set(arch + ".attention.layer_norm_rms_epsilon", {1e-5f});
  w.set("tokenizer.ggml.model", {std::string("gpt2")});
  w.set("tokenizer.ggml.pre", {std::string(arch == "qwen2" ? "qwen2" : "smollm")});
  w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "c", "ab", "bc", "abc", " ", "Ġ", "<s>", "</s>", "x", "y", "z",
                                               "xy", "<|im_start|>", "<|im_end|>"});
  w.set_string_array("tokenizer.ggml.merges", {"a b", "b c", "ab c", "x y"});
  GgufArray types{GgufValueType::i32, {}};
  for (int i = 0; i < 16; ++i) types.values.push_back({std::int32_t{i >= 14 ? 3 : 1}});
  w.set("tokenizer.ggml.token_type", {types});
  w.set("tokenizer.ggml.bos_token_id", {std::uint32_t{8}});
  w.set("tokenizer.ggml.eos_token_id", {std::uint32_t{15}});
  std::uint32_t seed = 0;
  for (auto const& [name, spec] : t) {
    std::uint64_t elems = 1;
    for (auto d : spec.dims) elems *= d;
    w.add_tensor(name, spec.dims, spec.type, filler(ggml_row_bytes(spec.type, elems), ++seed));
  }
  return w.bytes();
}

std::vector<std::byte> small_adapter() {
  GgufWriter w;
  w.set("general.architecture", {std::string("llama")});
  w.set("general.type", {std::string("adapter")});
  w.set("adapter.type", {std::string("lora")});
  w.set("adapter.lora.alpha", {4.0f});
  w.add_tensor("blk.0.attn_q.weight.lora_a", {32, 2}, GgmlType::f32, filler(32 * 2 * 4, 1));
  w.add_tensor("blk.0.attn_q.weight.lora_b", {2, 32}, GgmlType::f32, filler(2 * 32 * 4, 2));
  w.add_tensor("blk.1.attn_v.weight.lora_a", {32, 4}, GgmlType::f16, filler(32 * 4 * 2, 3));
  w.add_tensor("blk.1.attn_v.weight.lora_b", {4, 16}, GgmlType::f16, filler(4 * 16 * 2, 4));
  w.add_tensor("blk.1.attn_output.weight.lora_a", {32, 1}, GgmlType::q8_0, filler(34, 5));
  w.add_tensor("blk.1.attn_output.weight.lora_b", {1, 32}, GgmlType::f32, filler(32 * 4, 6));
  return w.bytes();
}

// Where the dims of tensor `name` start in a file GgufWriter wrote (just past its name and n_dims).
std::size_t dims_of(std::vector<std::byte> const& b, std::string const& name) {
  std::string needle(8, '\0');
  std::uint64_t const len = name.size();
  std::memcpy(needle.data(), &len, 8);
  needle += name;
  auto const at = std::string_view(reinterpret_cast<char const*>(b.data()), b.size()).rfind(needle);
  if (at == std::string_view::npos) throw std::runtime_error("make_seeds: no tensor " + name);
  return at + needle.size() + 4;
}

template <class T>
void put_at(std::vector<std::byte>& b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string const dir = argv[1];
  auto save = [&](std::string const& name, std::vector<std::byte> const& b) {
    std::ofstream(dir + "/" + name, std::ios::binary).write(reinterpret_cast<char const*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  {
    GgufWriter w;
    w.set("general.architecture", {std::string("llama")});
    w.set("u8", {std::uint8_t{1}}).set("i16", {std::int16_t{-2}}).set("f64", {0.5}).set("b", {true});
    w.set("u16", {std::uint16_t{3}}).set("u32", {std::uint32_t{4}}).set("i32", {std::int32_t{-5}});
    w.set("i8", {std::int8_t{-6}}).set("f32", {0.25f}).set("u64", {std::uint64_t{7}}).set("i64", {std::int64_t{-8}});
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<s>"});
    w.set("tokenizer.ggml.model", {std::string("gpt2")});
    w.set("tokenizer.ggml.pre", {std::string("smollm")});
    w.set_string_array("tokenizer.ggml.merges", {"a b"});
    std::vector<float> v(32, 1.0f);
    w.add_f32("token_embd.weight", {32, 1}, v);
    save("small_v3", w.bytes());
  }
  {
    GgufWriter w(64, 2);
    GgufArray nested{GgufValueType::array, {}};
    nested.values.push_back({GgufArray{GgufValueType::u64, {{std::uint64_t{7}}}}});
    nested.values.push_back({GgufArray{GgufValueType::u64, {}}});
    w.set("nested", {nested});
    GgufArray bools{GgufValueType::boolean, {{true}, {false}}};
    w.set("bools", {bools});
    std::vector<std::byte> q(34, std::byte{1});
    w.add_tensor("q", {32}, GgmlType::q8_0, q);
    std::vector<std::byte> q41(20, std::byte{3});
    w.add_tensor("q41", {32}, GgmlType::q4_1, q41);
    save("aligned64_v2", w.bytes());
  }
  auto const llama = small_model("llama");
  save("small_llama", llama);
  save("small_qwen2", small_model("qwen2"));
  save("small_lora", small_adapter());

  // Hostile variants, each refused with a typed error.
  {
    auto b = llama;  // token_embd claims {32, 2^56}: its byte size fits 64 bits but not the file
    put_at<std::uint64_t>(b, dims_of(b, "token_embd.weight") + 8, std::uint64_t{1} << 56);
    save("hostile_embd_2p56", b);
  }
  {
    auto b = llama;  // an F32 projection of {2^31, 2^31}: the byte size overflows 64 bits
    std::size_t const at = dims_of(b, "blk.0.attn_q.weight");
    put_at<std::uint64_t>(b, at, std::uint64_t{1} << 31);
    put_at<std::uint64_t>(b, at + 8, std::uint64_t{1} << 31);
    put_at<std::uint32_t>(b, at + 16, 0);
    save("hostile_f32_2p31_squared", b);
  }
  {
    auto b = llama;  // two tensors at the same offset
    std::size_t const k = dims_of(b, "blk.0.attn_k.weight");
    std::size_t const v = dims_of(b, "blk.0.attn_v.weight");
    std::uint64_t offset;
    std::memcpy(&offset, b.data() + k + 16 + 4, 8);
    put_at<std::uint64_t>(b, v + 16 + 4, offset);
    save("hostile_overlap", b);
  }
  {
    auto b = llama;  // a transposed projection of the same byte size: [32][16] for attn_k's [16][32]
    put_at<std::uint64_t>(b, dims_of(b, "blk.1.attn_k.weight"), 16);
    put_at<std::uint64_t>(b, dims_of(b, "blk.1.attn_k.weight") + 8, 32);
    save("hostile_attn_k_shape", b);
  }
  {
    GgufWriter w;  // an array whose length runs past the file
    w.set("general.architecture", {std::string("llama")});
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
    auto b = w.bytes();
    std::string_view const all(reinterpret_cast<char const*>(b.data()), b.size());
    put_at<std::uint64_t>(b, all.find("tokenizer.ggml.tokens") + 21 + 4 + 4, std::uint64_t{1} << 40);
    save("hostile_array_length", b);
  }
  {
    GgufWriter w;  // 1000 empty nested arrays: 12 bytes each in the file, an object each in memory (within bounds)
    GgufArray outer{GgufValueType::array, {}};
    for (int i = 0; i < 1000; ++i) outer.values.push_back({GgufArray{GgufValueType::u8, {}}});
    w.set("nest", {outer});
    save("many_nested_arrays", w.bytes());
  }
  {
    GgufWriter w;  // a bool array with a byte of 2
    w.set("bools", {GgufArray{GgufValueType::boolean, {{true}, {false}}}});
    auto b = w.bytes();
    std::string_view const all(reinterpret_cast<char const*>(b.data()), b.size());
    b[all.find("bools") + 5 + 4 + 4 + 8 + 1] = std::byte{2};  // key, array type, element type, length, 2nd element
    save("hostile_bool_byte", b);
  }
  return 0;
}
