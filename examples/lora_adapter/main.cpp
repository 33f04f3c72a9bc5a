// piecrust-lora_adapter: one prompt answered by the base model and by LoRA adapters in the same engine steps.
// With --adapter FILE.gguf (a LoRA adapter converted by llama.cpp's convert_lora_to_gguf.py for this model)
// that adapter is loaded; without it two random adapters are built in code (--rank, --alpha, --strength), and
// the first is written to a GGUF file and loaded back from it, the way a converted adapter would be.
//
//   piecrust-lora_adapter [--model FILE.gguf | --tiny] [--adapter FILE.gguf] [--rank 8] [--alpha 16]
//                         [--strength 0.05] [--max-tokens 32] [--prompt TEXT]

#include "common/cli.hpp"
#include "lora_adapter/lora_variants.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::string adapter_file;
  std::size_t rank = 8, max_tokens = 32;
  float alpha = 16.0f, strength = 0.05f;
  Prompt prompt{"Write one sentence about the sea.", "The sea is"};
  auto const o = parse_common(
      argc, argv, "piecrust-lora_adapter",
      " [--adapter FILE.gguf] [--rank R] [--alpha A] [--strength S] [--max-tokens N] [--prompt TEXT]",
      {{"--adapter", text(adapter_file)},
       {"--rank", integer(rank, 1, 256)},
       {"--alpha", real(alpha, 0.0, 1e4, Lower::open)},
       {"--strength", real(strength, 0.0, 100.0)},
       {"--max-tokens", integer(max_tokens, 1, max_generation)},
       {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-lora_adapter");
    Engine<Llama> engine(*m.model, engine_options(o), m.tokenizer_ptr(), m.chat);
    LlamaConfig const& config = m.model->config();
    std::vector<LoraVariant> variants{{"base", std::nullopt}};
    if (!adapter_file.empty()) {
      variants.push_back({adapter_file, engine.load_adapter("file", std::filesystem::path(adapter_file))});
    } else {
      // Random adapters: B's range `strength` sets how far each moves the model from the base.
      LoraShape const shape = LoraShape::of(config);
      auto const a = LoraAdapter::random(shape, rank, alpha, o.seed + 1, {LoraTarget::q, LoraTarget::v}, strength);
      auto const b = LoraAdapter::random(shape, rank, alpha, o.seed + 2, {LoraTarget::q, LoraTarget::k, LoraTarget::v, LoraTarget::o},
                                         strength);
      auto const path = std::filesystem::temp_directory_path() / "piecrust-example-lora.gguf";
      {
        auto const bytes = lora_adapter_gguf(a, config.arch);
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<char const*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      }
      variants.push_back({"random q,v (from GGUF)", engine.load_adapter("a", path)});
      std::filesystem::remove(path);
      variants.push_back({"random q,k,v,o", engine.load_adapter("b", b)});
    }
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto const answers = engine.block_on(answer_with_adapters(engine, std::span(ids), variants, samplers::greedy(), m.answer_stop(max_tokens)));
    for (LoraAnswer const& a : answers) {
      std::printf("%-24s mean log p %7.3f  %s\n", a.name.c_str(), a.mean_logprob(), m.show(a.generation.tokens).c_str());
    }
    std::printf("%zu variants in %zu engine steps\n", answers.size(), engine.stats().steps);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-lora_adapter: %s\n", e.what());
    return 1;
  }
}
