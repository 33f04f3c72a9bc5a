// libFuzzer target for the GGUF reader and the tokenizer/config loaders on top of it: any input must
// either parse or throw a piecrust::Error — never crash, hang, read out of bounds or exhaust memory.

#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::vector<std::byte> bytes(reinterpret_cast<std::byte const*>(data), reinterpret_cast<std::byte const*>(data) + size);
  try {
    auto const f = piecrust::GgufFile::parse(std::move(bytes), "fuzz");
    for (auto const& t : f.tensors()) {
      auto const d = f.tensor_data(t);
      if (t.dims[0] <= 4096 && d.size() >= t.row_bytes()) {
        std::vector<float> row(static_cast<std::size_t>(t.dims[0]));
        try {
          piecrust::dequantize_row(t.type, d.first(static_cast<std::size_t>(t.row_bytes())), row);
        } catch (piecrust::Unsupported const&) {
        }
      }
    }
    try {
      (void)piecrust::LlamaConfig::from_gguf(f);
    } catch (piecrust::Error const&) {
    }
    try {
      (void)piecrust::Tokenizer::from_gguf(f);
    } catch (piecrust::Error const&) {
    }
  } catch (piecrust::Error const&) {
  }
  return 0;
}
