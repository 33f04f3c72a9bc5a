// piecrust-windowed_attention: generate far past the window with sliding-window attention, dropping KV
// pages no token can see any more. Prints the pages in use as generation goes: they stay bounded while the
// RoPE positions keep growing.
//
//   piecrust-windowed_attention [--model FILE.gguf | --tiny] [--window 64] [--steps 400] [--prompt TEXT]

#include "common/cli.hpp"
#include "windowed_attention/windowed_attention.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  WindowOptions w;
  w.window = 64;
  w.steps = 400;
  w.sampler = samplers::top_k(TopK{40}, Temperature{0.8f});
  Prompt prompt{"Tell me a long story about a lighthouse keeper.", "Once upon a time, there lived a lighthouse keeper"};
  auto const o = parse_common(argc, argv, "piecrust-windowed_attention", " [--window N] [--steps N] [--prompt TEXT]",
                              {{"--window", integer(w.window, 1, 8192)},
                               {"--steps", integer(w.steps, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-windowed_attention");
    Engine<Llama> engine(*m.model, engine_options(o, 64), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto ctx = engine.create_context();
    auto progress = [&](std::size_t step, Context<Llama> const& c) {
      if ((step + 1) % 50 != 0) return;
      std::printf("step %4zu: position %5u, KV slots held %4zu, pages in use %2zu of %zu\n", step + 1,
                  c.page_table().token(c.seq_len() - 1).position, c.seq_len(),
                  engine.pool().num_pages() - engine.pool().free_count(), engine.pool().num_pages());
    };
    auto const st = engine.block_on(windowed_generate<Llama>(engine, ctx, std::span(ids), w, progress));
    std::printf("%s\n", m.show(st.tokens).c_str());
    std::printf("%zu tokens, window %zu: peak %zu pages in use, %zu pages dropped, last position %u\n",
                st.tokens.size(), w.window, st.max_pages_in_use, st.pages_dropped, st.last_position);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-windowed_attention: %s\n", e.what());
    return 1;
  }
}
