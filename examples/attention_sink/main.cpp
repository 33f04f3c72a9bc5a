// piecrust-attention_sink: StreamingLLM-style generation: the first --sink slots stay visible, plus a window
// of the most recent ones; everything in between is dropped page by page. Prints the sink tokens still held,
// and the pages in use staying bounded.
//
//   piecrust-attention_sink [--model FILE.gguf | --tiny] [--sink 4] [--window 60] [--steps 400] [--prompt TEXT]

#include "attention_sink/attention_sink.hpp"
#include "common/cli.hpp"

#include <cstdio>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::size_t sink = 4, window = 60, steps = 400;
  Prompt prompt{"Write a long poem about the sea.", "The Sea, a poem\n\nThe waves come in"};
  auto const o = parse_common(argc, argv, "piecrust-attention_sink", " [--sink N] [--window N] [--steps N] [--prompt TEXT]",
                              {{"--sink", integer(sink, 0, 4096)},
                               {"--window", integer(window, 1, 8192)},
                               {"--steps", integer(steps, 1, max_generation)},
                               {"--prompt", text(prompt)}});
  try {
    auto const m = load_model(o, "piecrust-attention_sink");
    Engine<Llama> engine(*m.model, engine_options(o, 64), m.tokenizer_ptr(), m.chat);
    std::vector<std::uint32_t> const ids = m.has_text() ? m.prompt(prompt) : std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8};
    auto ctx = engine.create_context();
    auto progress = [&](std::size_t step, Context<Llama> const& c) {
      if ((step + 1) % 100 != 0) return;
      std::printf("step %4zu: position %5u, slots held %4zu (first slot at position %u), pages in use %zu\n", step + 1,
                  c.page_table().token(c.seq_len() - 1).position, c.seq_len(), c.page_table().token(0).position,
                  engine.pool().num_pages() - engine.pool().free_count());
    };
    auto const st = engine.block_on(sink_generate<Llama>(engine, ctx, std::span(ids), sink, window, steps,
                                                         samplers::top_k(TopK{40}, Temperature{0.8f}), progress));
    std::printf("%s\n", m.show(st.tokens).c_str());
    std::printf("%zu tokens, sink %zu + window %zu: peak %zu pages in use, %zu pages dropped\n", st.tokens.size(), sink,
                window, st.max_pages_in_use, st.pages_dropped);
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-attention_sink: %s\n", e.what());
    return 1;
  }
}
