// Writes seed inputs for the GGUF fuzzer: small valid files that exercise every metadata type, arrays,
// tensors of several types, and a tiny tokenizer. Usage: make_seeds <output-dir>

#include <piecrust/model/gguf_writer.hpp>

#include <fstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  using namespace piecrust;
  if (argc != 2) return 2;
  std::string const dir = argv[1];
  auto save = [&](std::string const& name, std::vector<std::byte> const& b) {
    std::ofstream(dir + "/" + name, std::ios::binary).write(reinterpret_cast<char const*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  {
    GgufWriter w;
    w.set("general.architecture", {std::string("llama")});
    w.set("u8", {std::uint8_t{1}}).set("i16", {std::int16_t{-2}}).set("f64", {0.5}).set("b", {true});
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<s>"});
    w.set("tokenizer.ggml.model", {std::string("gpt2")});
    w.set("tokenizer.ggml.pre", {std::string("smollm")});
    w.set_string_array("tokenizer.ggml.merges", {"a b"});
    std::vector<float> v(32, 1.0f);
    w.add_f32("token_embd.weight", {32, 1}, v);
    save("small_v3.gguf", w.bytes());
  }
  {
    GgufWriter w(64, 2);
    GgufArray nested{GgufValueType::array, {}};
    nested.values.push_back({GgufArray{GgufValueType::u64, {{std::uint64_t{7}}}}});
    w.set("nested", {nested});
    std::vector<std::byte> q(34, std::byte{1});
    w.add_tensor("q", {32}, GgmlType::q8_0, q);
    std::vector<std::byte> q41(20, std::byte{3});
    w.add_tensor("q41", {32}, GgmlType::q4_1, q41);
    save("aligned64_v2.gguf", w.bytes());
  }
  return 0;
}
