// Runtime benchmarks on SmolLM2-135M-Instruct (Q4_1), each against a peer measured in the same run:
//   * overhead: Engine + Context::generate at batch 1 vs a bare loop of model steps (same model, same KV
//     layout, greedy argmax on the logits) — the runtime's cost per step;
//   * forks: one prefill, then N forked branches decoding together — time per step as N grows;
//   * speculative: generate_with_drafter (n-gram) vs plain greedy on a repetitive prompt, same output.
// Run: build/release/bench/bench_runtime [--benchmark_min_time=...]   (model from PIECRUST_MODEL or the cache)
#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace piecrust;
using Llama = LlamaModel<Host>;

struct Loaded {
  std::shared_ptr<GgufFile const> file;
  std::unique_ptr<Llama> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded* loaded() {
  static std::optional<Loaded> l;
  if (!l) {
    l.emplace();
    l->file = std::make_shared<GgufFile const>(GgufFile::open(default_model_path()));
    l->model = std::make_unique<Llama>(LlamaWeights::from_gguf(l->file));
    l->tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*l->file));
  }
  return &*l;
}

std::vector<std::uint32_t> encode(std::string const& text) {
  auto const ids = loaded()->tokenizer->encode(text);
  return {ids.begin(), ids.end()};
}

EngineOptions engine_options() {
  EngineOptions o;
  o.num_pages = 256;  // the same KV pool as the bare loop: creating it (zero-filled) is part of both timings
  o.page_size = 16;
  return o;
}

std::string const kPrompt = "The history of the printing press begins in the fifteenth century, when";

// The peer: the same model stepped directly, one token per step, pages from a PageTable.
void BM_bare_model_loop(benchmark::State& state) {
  Llama& model = *loaded()->model;
  std::size_t const steps = static_cast<std::size_t>(state.range(0));
  auto const prompt = encode(kPrompt);
  std::size_t const vocab = model.shape().vocab_size;
  for (auto _ : state) {
    PagePool pool(256, 16);
    auto kv = model.make_kv_cache(256, 16);
    PageTable table(pool);
    std::vector<std::uint32_t> next = prompt;
    std::vector<float> logits(vocab);
    for (std::size_t s = 0; s < steps; ++s) {
      std::size_t const n = next.size();
      std::size_t const need = n > table.working_capacity() ? n - table.working_capacity() : 0;
      table.reserve_working_pages((need + 15) / 16);
      std::uint32_t const first = table.next_position();
      std::vector<TokenMeta> meta;
      std::vector<TokenId> toks;
      std::vector<std::uint32_t> pos;
      for (std::size_t i = 0; i < n; ++i) {
        meta.push_back({next[i], first + static_cast<std::uint32_t>(i), false});
        toks.push_back(static_cast<TokenId>(next[i]));
        pos.push_back(first + static_cast<std::uint32_t>(i));
      }
      table.append_working_tokens(meta);
      auto const pages = table.kv_indices();
      std::vector<std::uint32_t> qo{0, static_cast<std::uint32_t>(n)}, kvp{0, static_cast<std::uint32_t>(pages.size())};
      std::vector<std::uint32_t> last{table.kv_last_page_len()};
      std::vector<std::uint32_t> rows{static_cast<std::uint32_t>(n - 1)};
      ForwardBatch b;
      b.tokens = toks;
      b.positions = pos;
      b.pages = PagedBatch{qo, kvp, pages, last};
      b.logit_rows = rows;
      model.forward(kv, b, logits);
      next = {static_cast<std::uint32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
      if (table.working_token_count() >= 16) table.commit_working_pages(table.working_token_count() / 16);
    }
    benchmark::DoNotOptimize(next.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(steps * state.iterations()), benchmark::Counter::kIsRate);
}

Task<Generation> generate_greedy(Engine<Llama>& e, std::vector<std::uint32_t> prompt, std::size_t n) {
  auto ctx = e.create_context();
  ctx.fill(prompt);
  co_return co_await ctx.generate(samplers::greedy(), max_len(n));
}

void BM_engine_generate(benchmark::State& state) {
  std::size_t const steps = static_cast<std::size_t>(state.range(0));
  auto const prompt = encode(kPrompt);
  for (auto _ : state) {
    Engine<Llama> e(*loaded()->model, engine_options());
    auto const g = e.block_on(generate_greedy(e, prompt, steps));
    benchmark::DoNotOptimize(g.tokens.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(steps * state.iterations()), benchmark::Counter::kIsRate);
}

// N branches forked from one prefilled prompt, each generating `tokens` tokens with its own sampler stream.
void BM_forks(benchmark::State& state) {
  std::size_t const n = static_cast<std::size_t>(state.range(0));
  std::size_t const tokens = 16;
  auto const prompt = encode(kPrompt);
  std::size_t steps = 0;
  for (auto _ : state) {
    Engine<Llama> e(*loaded()->model, engine_options());
    auto branch = [](Context<Llama> ctx, std::size_t t) -> Task<Generation> {
      co_return co_await ctx.generate(samplers::top_k(TopK{40}, Temperature{0.8f}), max_len(t));
    };
    auto prog = [&](Engine<Llama>& e) -> Task<std::vector<Generation>> {
      auto root = e.create_context();
      root.fill(prompt);
      root.fill({static_cast<std::uint32_t>(prompt.back())});
      std::vector<Task<Generation>> tasks;
      for (std::size_t i = 0; i < n; ++i) tasks.push_back(branch(root.fork(), tokens));
      co_return co_await e.when_all(std::move(tasks));
    };
    auto const gens = e.block_on(prog(e));
    benchmark::DoNotOptimize(gens.data());
    steps = e.stats().steps;
  }
  state.counters["steps"] = static_cast<double>(steps);
  state.counters["branch_tokens/s"] =
      benchmark::Counter(static_cast<double>(n * tokens * state.iterations()), benchmark::Counter::kIsRate);
}

// Prompt lookup pays where the output repeats the context (code edits, quoting, templated text). This
// prompt ends inside the third copy of a block the model has seen twice, so greedy decoding continues it;
// with a trailing newline instead, SmolLM2 closes the code block and writes prose, and drafts rarely help.
std::string const kRepetitive =
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n    return a * b\n\n"
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):";

void BM_greedy_repetitive(benchmark::State& state) {
  auto const prompt = encode(kRepetitive);
  for (auto _ : state) {
    Engine<Llama> e(*loaded()->model, engine_options());
    auto const g = e.block_on(generate_greedy(e, prompt, 48));
    benchmark::DoNotOptimize(g.tokens.data());
  }
  state.counters["tokens/s"] = benchmark::Counter(48.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_speculative_repetitive(benchmark::State& state) {
  auto const prompt = encode(kRepetitive);
  std::vector<std::uint32_t> plain;
  {
    Engine<Llama> e(*loaded()->model, engine_options());
    plain = e.block_on(generate_greedy(e, prompt, 48)).tokens;
  }
  std::size_t passes = 0;
  bool same = true;
  for (auto _ : state) {
    Engine<Llama> e(*loaded()->model, engine_options());
    auto prog = [&](Engine<Llama>& e) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(prompt);
      NgramDrafter drafter(3, 8);
      co_return co_await ctx.generate_with_drafter(drafter, max_len(48));
    };
    auto const g = e.block_on(prog(e));
    passes = g.passes;
    same = same && g.tokens == plain;
  }
  if (!same) state.SkipWithError("speculative output differs from greedy");
  state.counters["passes"] = static_cast<double>(passes);
  state.counters["tokens/s"] = benchmark::Counter(48.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_bare_model_loop)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_engine_generate)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_forks)->RangeMultiplier(2)->Range(1, 32)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_greedy_repetitive)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_speculative_repetitive)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  try {
    loaded();
  } catch (std::exception const& e) {
    std::fprintf(stderr, "bench_runtime: cannot load the model (%s); run scripts/fetch-model.sh\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
