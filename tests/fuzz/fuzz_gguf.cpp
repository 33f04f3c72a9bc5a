// libFuzzer target for the GGUF reader and the loaders on top of it: the Llama config, the weights (every
// tensor's shape and type checked against the config), a LoRA adapter for a small base model, and the
// tokenizer. Any input must either load or throw a piecrust::Error — never crash, hang, read out of bounds or
// exhaust memory. Seeds: tests/fuzz/corpus/gguf/ (written by make_seeds.cpp).

#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/llama_weights.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace {

// The base model the seeds' adapters are for (make_seeds.cpp writes a model file of the same shape).
piecrust::LlamaConfig const& base_config() {
  static piecrust::LlamaConfig const c = [] {
    piecrust::LlamaConfig c;
    c.vocab_size = 16;
    c.hidden = 32;
    c.num_layers = 2;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.head_dim = 16;
    c.ffn = 64;
    c.context_length = 256;
    return c;
  }();
  return c;
}

// Decodes the first and last rows of a loaded matrix, so that a view the shape checks let through that does
// not lie in its tensor's bytes is read (ASan sees reads past the file's buffer).
void touch(piecrust::WeightMatrix const& m) {
  if (m.cols == 0 || m.cols > (1u << 16)) return;
  std::vector<float> row(m.cols);  // [cols]
  piecrust::LlamaWeights::dequantize_matrix_row(m, 0, row);
  piecrust::LlamaWeights::dequantize_matrix_row(m, m.rows - 1, row);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::vector<std::byte> bytes(reinterpret_cast<std::byte const*>(data), reinterpret_cast<std::byte const*>(data) + size);
  try {
    auto const file = std::make_shared<piecrust::GgufFile const>(piecrust::GgufFile::parse(std::move(bytes), "fuzz"));
    auto const& f = *file;
    for (auto const& t : f.tensors()) {
      auto const d = f.tensor_data(t);
      if (t.dims[0] <= 4096 && d.size() >= t.row_bytes()) {
        std::vector<float> row(static_cast<std::size_t>(t.dims[0]));  // [dims[0]]
        try {
          piecrust::dequantize_row(t.type, d.first(static_cast<std::size_t>(t.row_bytes())), row);
        } catch (piecrust::Unsupported const&) {
        }
      }
    }
    for (auto const& [key, value] : f.metadata()) {  // every packed element reads back
      if (auto const* a = std::get_if<piecrust::GgufArray>(&value.value)) {
        for (auto const& v : a->values) (void)v.type();
      }
    }
    try {
      auto const w = piecrust::LlamaWeights::from_gguf(file);
      touch(w.token_embd);
      touch(w.lm_head);
      for (auto const& l : w.layers) {
        for (auto const* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) touch(*m);
      }
    } catch (piecrust::Error const&) {
    }
    try {
      (void)piecrust::LoraAdapter::from_gguf(f, base_config());
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
