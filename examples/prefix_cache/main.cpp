// piecrust-prefix_cache: run it twice. The first run prefills a long system prompt and exports its KV pages
// to an SQLite file; the second run (a new process) imports them and computes no prefill for that prefix.
//
//   piecrust-prefix_cache [--model FILE.gguf | --tiny] [--db piecrust-prefix-cache.db] [--question TEXT] [--clear]

#include "common/cli.hpp"
#include "prefix_cache/prefix_cache.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>

using namespace piecrust;
using namespace piecrust::examples;

int main(int argc, char** argv) {
  std::string db = "piecrust-prefix-cache.db";
  std::string question = "Which planet is known as the red planet?";
  bool clear = false;
  auto const o = parse_common(argc, argv, "piecrust-prefix_cache", " [--db FILE] [--question TEXT] [--clear]",
                              {{"--db", text(db)},
                               {"--question", text(question)}},
                              {{"--clear", [&] { clear = true; }}});
  try {
    if (clear) std::filesystem::remove(db);
    auto const m = load_model(o, "piecrust-prefix_cache");
    EngineOptions eo = engine_options(o);
    eo.model_id = m.has_text() ? m.name : "tiny";  // exports from another model are refused on import
    Engine<Llama> engine(*m.model, eo, m.tokenizer_ptr(), m.chat);
    SqliteStore store(db);

    std::vector<std::uint32_t> prefix, q;
    if (m.has_text()) {
      std::string const system =
          "You are a helpful astronomy tutor. You answer questions about the solar system in one short, "
          "accurate sentence. The planets, in order from the Sun, are Mercury, Venus, Earth, Mars, Jupiter, "
          "Saturn, Uranus and Neptune. Mars looks red because of iron oxide dust on its surface. Jupiter is the "
          "largest planet; Saturn has the most visible rings.";
      if (m.completion) {  // the text to continue: the system text, then the question and "Answer:"
        prefix = m.text_ids(system + "\n\n", true);
        q = m.text_ids("Question: " + question + "\nAnswer:", false);
      } else {
        prefix = m.chat_ids({{"system", system}}, true, false);
        q = m.chat_ids({{"user", question}}, false, true);
      }
    } else {
      for (std::uint32_t i = 0; i < 100; ++i) prefix.push_back((i * 37 + 11) % 512);
      q = {5, 6, 7};
    }
    auto const t0 = std::chrono::steady_clock::now();
    auto const r = engine.block_on(
        answer_with_prefix_cache(engine, store, prefix, q, samplers::greedy(), m.answer_stop(48)));
    double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s\n", m.show(r.answer.tokens).c_str());
    if (r.imported) {
      std::printf("imported %zu of the %zu prefix tokens from %s: no prefill for them; %zu tokens computed in %.2f s\n",
                  r.reused_tokens, prefix.size(), db.c_str(), r.computed_tokens, s);
    } else {
      std::printf("prefilled the %zu-token prefix and exported it to %s; %zu tokens computed in %.2f s (run again)\n",
                  prefix.size(), db.c_str(), r.computed_tokens, s);
    }
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-prefix_cache: %s\n", e.what());
    return 1;
  }
}
