// Model throughput (SmolLM2-135M-Instruct Q4_1 unless --model) on the host backend: prefill of 512 tokens, decode at batch 1
// and batch 8 (8 sequences, one token each per step). Prints one JSON object; bench/bench_model.py runs
// it beside llama.cpp (llama-cpp-python, same file, same thread count) and writes the ratios.
//   bench_model [--model FILE] [--threads N] [--repeats R]
//   bench_model --long N [--model FILE] [--threads N]   decode at batch 1 after N cached positions, for a model
//       with sliding-window layers, through the Engine: with the window (local layers read only the pages it
//       touches and keep only those in the window store) and with every layer global (what reading the whole
//       cache costs; `--window-only 1` skips it); plus the KV bytes the engine holds against a full cache
//   bench_model --context N [--kv f32|bf16] [--model FILE] [--threads N]   decode at batch 1 and 8 after N cached positions
//       through the Engine (the 8 sequences are forks of one prefilled context, as llama.cpp's side copies
//       one sequence), and the same after 64 positions: the difference is what the cache's length costs
#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/model/detail/sequence_runner.hpp>
#include <piecrust/runtime.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace piecrust;
using Llama = LlamaModel<Host>;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TokenId argmax(std::span<float const> v) {
  return static_cast<TokenId>(std::max_element(v.begin(), v.end()) - v.begin());
}

/// Prefills n tokens, a deterministic spread of ids, into ctx in passes of chunk_len, the last token left
/// pending (what generate continues from).
template <class Ctx>
Task<void> prefill_spread(Ctx& ctx, std::size_t n, std::size_t chunk_len) {
  std::vector<std::uint32_t> chunk;  // [chunk_len]
  for (std::size_t done = 0; done < n; done += chunk.size()) {
    chunk.resize(std::min(chunk_len, n - done));
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<std::uint32_t>(100 + ((done + i) * 37) % 30000);
    ctx.fill(chunk);
    co_await ctx.flush(Flush::keep_last);
  }
}

/// --context N: decode at batch 1 and 8 after N and after 64 cached positions (see the header).
template <class KvT>
int context_bench(std::shared_ptr<GgufFile const> const& file, std::size_t threads, std::size_t context) {
  LlamaModel<Host, KvT> lm(LlamaWeights::from_gguf(file), Host{threads});
  std::printf("{\"engine\": \"piecrust\", \"threads\": %zu, \"context\": %zu, \"kv\": \"%s\"", threads, context,
              std::is_same_v<KvT, float> ? "f32" : "bf16");
  for (std::size_t const n : {context, std::size_t{64}}) {
    std::size_t const page = 16, chunk_len = 512, steps = 32, batch = 8;
    EngineOptions o;
    o.page_size = page;
    o.num_pages = n / page + batch * (steps / page + 2) + 16;  // the shared prefix and each fork's own pages
    if (lm.config().sliding_window > 0) o.window_pages = lm.config().sliding_window / page + chunk_len / page + batch * 4 + 8;
    Engine<LlamaModel<Host, KvT>> e(lm, o);
    auto const rates = e.block_on([&]() -> Task<std::pair<double, double>> {
      auto root = e.create_context();
      co_await prefill_spread(root, n, chunk_len);
      auto one = root.fork();
      auto t0 = Clock::now();
      Generation const g1 = co_await one.generate(samplers::greedy(), max_len(steps));
      double const b1 = static_cast<double>(g1.tokens.size()) / seconds_since(t0);
      std::vector<Task<Generation>> branches;
      std::vector<Context<LlamaModel<Host, KvT>>> forks;
      for (std::size_t b = 0; b < batch; ++b) forks.push_back(root.fork());
      for (auto& f : forks) branches.push_back(f.generate(samplers::greedy(), max_len(steps)));
      t0 = Clock::now();
      auto const gs = co_await e.when_all(std::move(branches));
      double const secs = seconds_since(t0);
      std::size_t tokens = 0;
      for (auto const& g : gs) tokens += g.tokens.size();
      co_return std::pair{b1, static_cast<double>(tokens) / secs};
    }());
    char const* const at = n == context ? "" : "_at_64";
    std::printf(", \"decode_b1_tok_s%s\": %.2f, \"decode_b8_tok_s%s\": %.2f", at, rates.first, at, rates.second);
  }
  std::printf("}\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = default_model_path();
  std::size_t threads = 2, repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string const a = argv[i];
    if (a == "--model") model = argv[i + 1];
    else if (a == "--threads") threads = std::stoul(argv[i + 1]);
    else if (a == "--repeats") repeats = std::stoul(argv[i + 1]);
  }
  std::size_t long_context = 0, context = 0;
  std::string kv = "f32";  // --context's KV cache: f32 or bf16
  bool window_only = false;  // --long N --window-only 1: skip the (slow) every-layer-global run
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--long") long_context = std::stoul(argv[i + 1]);
    if (std::string(argv[i]) == "--window-only") window_only = std::string(argv[i + 1]) != "0";
    if (std::string(argv[i]) == "--context") context = std::stoul(argv[i + 1]);
    if (std::string(argv[i]) == "--kv") kv = argv[i + 1];
  }
  if (!std::filesystem::exists(model)) {
    std::fprintf(stderr, "bench_model: model file %s is missing: %s\n", model.c_str(), fetch_model_hint);
    return 1;
  }
  auto const file = std::make_shared<GgufFile const>(GgufFile::open(model));
  auto const tok = Tokenizer::from_gguf(*file);
  if (context > 0) return kv == "bf16" ? context_bench<BFloat16>(file, threads, context) : context_bench<float>(file, threads, context);
  if (long_context > 0) {
    std::printf("{\"engine\": \"piecrust\", \"threads\": %zu, \"context\": %zu", threads, long_context);
    for (bool window : {true, false}) {
      if (!window && window_only) break;
      auto w = LlamaWeights::from_gguf(file);
      if (!window) w.config.sliding_window = 0;
      Llama lm(std::move(w), Host{threads});
      std::size_t const page = 16, chunk_len = 512;
      EngineOptions o;
      o.page_size = page;
      o.num_pages = long_context / page + 64;
      // The window's pages, one prefill chunk's and a few spare: all a single context ever holds at once.
      o.window_pages = lm.config().sliding_window / page + chunk_len / page + 8;
      Engine<Llama> e(lm, o);
      char const* const name = window ? "window" : "all_global";
      auto const report = e.block_on([&]() -> Task<std::string> {
        auto ctx = e.create_context();
        co_await prefill_spread(ctx, long_context, chunk_len);
        auto const t0 = Clock::now();
        Generation const g = co_await ctx.generate(samplers::greedy(), max_len(32));
        double const tok_s = static_cast<double>(g.tokens.size()) / seconds_since(t0);
        // Bytes held: the main pages in every full-attention layer, the window pages in every window layer.
        auto const& kv = e.kv_cache();
        auto const st = e.pool().stats();
        std::size_t held = 0, full = 0;
        for (std::size_t l = 0; l < kv.num_layers(); ++l) {
          held += (kv.is_window_layer(l) ? st.window_used : st.used) * kv.page_bytes();
          full += st.used * kv.page_bytes();
        }
        char buf[256];
        std::snprintf(buf, sizeof buf, ", \"decode_b1_tok_s_%s\": %.2f, \"kv_bytes_held_%s\": %zu, \"kv_bytes_full_%s\": %zu",
                      name, tok_s, name, held, name, full);
        co_return std::string(buf);
      }());
      std::printf("%s", report.c_str());
    }
    std::printf("}\n");
    return 0;
  }
  Llama m(LlamaWeights::from_gguf(file), Host{threads});
  std::size_t const V = m.shape().vocab_size;

  // A deterministic 512-token text prompt.
  std::string text;
  for (int i = 0; tok.encode(text).size() < 512; ++i) {
    text += "The quick brown fox " + std::to_string(i) + " jumps over the lazy dog while the river flows to the sea. ";
  }
  auto prompt = tok.encode(text);
  prompt.resize(512);

  double prefill = 0;  // best tokens/s
  for (std::size_t r = 0; r < repeats; ++r) {
    detail::SequenceRunner<Llama> run(m, 40, 16);
    auto const s = run.add_sequence();
    auto const t0 = Clock::now();
    (void)run.step(s, prompt);
    prefill = std::max(prefill, 512.0 / seconds_since(t0));
  }

  auto decode = [&](std::size_t batch, std::size_t steps) {
    double best = 0;
    for (std::size_t r = 0; r < repeats; ++r) {
      detail::SequenceRunner<Llama> run(m, batch * 12, 16);
      std::vector<std::size_t> seqs(batch);
      std::vector<TokenId> next(batch);
      for (std::size_t b = 0; b < batch; ++b) {
        seqs[b] = run.add_sequence();
        auto const lg = run.step(seqs[b], std::span(prompt).subspan(b * 8, 64));
        next[b] = argmax(lg);
      }
      auto const t0 = Clock::now();
      for (std::size_t i = 0; i < steps; ++i) {
        std::vector<detail::SequenceRunner<Llama>::Append> ap;
        for (std::size_t b = 0; b < batch; ++b) ap.push_back({seqs[b], std::span(&next[b], 1)});
        auto const lg = run.step(ap);
        for (std::size_t b = 0; b < batch; ++b) next[b] = argmax(std::span<float const>(lg).subspan(b * V, V));
      }
      best = std::max(best, static_cast<double>(batch * steps) / seconds_since(t0));
    }
    return best;
  };
  double const d1 = decode(1, 64);
  double const d8 = decode(8, 32);
  std::printf("{\"engine\": \"piecrust\", \"threads\": %zu, \"prefill_512_tok_s\": %.2f, \"decode_b1_tok_s\": %.2f, "
              "\"decode_b8_tok_s\": %.2f}\n",
              threads, prefill, d1, d8);
  return 0;
}
