// The same programs on two engines: one over LlamaModel<Host> (the oracle) and one over the model on the space
// under test (testing::TestSpace: Host with one thread in the host build, Kokkos' default space in the Kokkos
// build, the Cuda space under the CUDA emulation). Tokens must be identical: greedy and seeded sampling, forks,
// truncation, export/import through memory and SQLite, LoRA, masks
// with page-trim and speculative decoding. Where logits are compared, the tolerance is
// |a - b| <= 1e-4 + 1e-4 |b|: f32 everywhere, the spaces differ only in summation order (2 layers, dots of
// 64 to 256 terms).
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace piecrust;

namespace {

using Oracle = LlamaModel<Host>;
using Subject = testing::Tiny;

Oracle& oracle_model() {
  static Oracle model(tiny_llama_weights(3), Host{});
  return model;
}
// The subject's space: Host with one thread in the host build (results must not depend on the thread count),
// else the space under test.
template <class S>
S subject_space() {
  if constexpr (std::is_same_v<S, Host>) {
    return Host{1};
  } else {
    return testing::make_test_space();
  }
}
Subject& subject_model() {
  static Subject model(tiny_llama_weights(3), subject_space<testing::TestSpace>());
  return model;
}

EngineOptions opts(std::size_t pages = 64, std::uint32_t page_size = 16) { return testing::engine_options(pages, page_size); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

// Runs `program(engine)` on an engine over each model and returns both results.
template <class Program>
auto on_both(Program program, EngineOptions const& o = opts()) {
  Engine<Oracle> a(oracle_model(), o);
  Engine<Subject> b(subject_model(), o);
  auto want = a.block_on(program(a));
  auto got = b.block_on(program(b));
  CHECK(a.pool().free_count() == a.pool().num_pages());
  CHECK(b.pool().free_count() == b.pool().num_pages());
  return std::pair{std::move(want), std::move(got)};
}

template <class M>
Task<std::vector<std::uint32_t>> generate_tokens(Engine<M>& e, std::vector<std::uint32_t> p, SamplerSpec s, std::size_t n) {
  auto ctx = e.create_context();
  ctx.fill(p);
  Generation const g = co_await ctx.generate(s, max_len(n));
  co_return g.tokens;
}

}  // namespace

TEST_CASE("the subject space computes the oracle's logits", "[spaces]") {
  auto const p = prompt(1, 37);
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<float>> {
    auto ctx = e.create_context();
    auto f = ctx.forward();
    f.input(p);
    auto const h = f.probe(p.size() - 1, Logits{});
    ForwardOutput const out = co_await f.execute();
    co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
  };
  auto const [want, got] = on_both(program);
  REQUIRE(want.size() == got.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("logit " << i);
    CHECK(std::abs(got[i] - want[i]) <= 1e-4f + 1e-4f * std::abs(want[i]));
  }
}

TEST_CASE("greedy and seeded sampling give identical tokens on every space", "[spaces]") {
  auto const p = prompt(2, 29);
  for (SamplerSpec const& s : {samplers::greedy(), samplers::multinomial(), samplers::top_p(TopP{0.9f}), samplers::min_p(MinP{0.05f}),
                              samplers::top_k_top_p(TopK{40}, TopP{0.95f}, Temperature{0.7f})}) {
    auto const [want, got] = on_both([&]<class M>(Engine<M>& e) { return generate_tokens(e, p, s, 16); });
    CHECK(got == want);
    CHECK(want.size() == 16);
  }
}

TEST_CASE("forks decoded together and a truncated branch give identical tokens on every space", "[spaces][fork]") {
  auto const p = prompt(3, 40);
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    ctx.fill(p);
    co_await ctx.flush(Flush::keep_last);
    auto a = ctx.fork(), b = ctx.fork();
    std::vector<Task<Generation>> branches;
    branches.push_back(a.generate(samplers::top_p(TopP{0.9f}), max_len(12)));
    branches.push_back(b.generate(samplers::greedy(), max_len(12)));
    auto gens = co_await e.when_all(std::move(branches));
    // Truncate branch a back into its working page (copy-on-write of a shared page on the next pass).
    std::vector<std::uint32_t> out = gens[0].tokens;
    out.insert(out.end(), gens[1].tokens.begin(), gens[1].tokens.end());
    std::size_t const keep = a.inner().page_table().working_token_count() > 5 ? 5 : 0;
    a.inner().truncate_working_page_tokens(keep);
    Generation const again_g = co_await a.generate(samplers::multinomial(), max_len(8));
    auto const& again = again_g.tokens;
    out.insert(out.end(), again.begin(), again.end());
    co_return out;
  };
  auto const [want, got] = on_both(program);
  CHECK(got == want);
}

TEST_CASE("export and import through memory and SQLite give identical continuations on every space", "[spaces][store]") {
  auto const p = prompt(4, 37);
  auto const db = (std::filesystem::temp_directory_path() /
                   ("piecrust-spaces-" + std::to_string(std::random_device{}()) + ".db")).string();
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<std::uint32_t>> {
    MemoryStore mem;
    SqliteStore sql(db);
    std::vector<std::uint32_t> out;
    {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_await ctx.flush();
      ctx.export_kv_pages(mem, "prefix");
      ctx.export_kv_pages(sql, "prefix");
    }
    // Every page was freed with the context: the imports write the K/V back into fresh pages.
    for (Store* s : {static_cast<Store*>(&mem), static_cast<Store*>(&sql)}) {
      auto copy = Context<M>::from_imported(e, *s, "prefix");
      copy.fill(std::span(p).subspan(32));
      Generation const g = co_await copy.generate(samplers::greedy(), max_len(6));
      auto const& t = g.tokens;
      out.insert(out.end(), t.begin(), t.end());
    }
    co_return out;
  };
  auto const [want, got] = on_both(program);
  std::filesystem::remove(db);
  CHECK(got == want);
  CHECK(std::equal(want.begin(), want.begin() + 6, want.begin() + 6));  // memory and SQLite agree
}

TEST_CASE("masks with page-trim give identical tokens on every space", "[spaces][window]") {
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    ctx.fill(prompt(5, 8));
    std::size_t const window = 32;
    std::vector<std::uint32_t> out;
    for (int step = 0; step < 70; ++step) {
      auto f = testing::windowed_pass(ctx, window, [](std::size_t i, std::size_t masked) {
        return AttentionMask::sink_window(i + 1, std::min<std::size_t>(2, i + 1 - masked), std::min(i + 1, i + 1 - masked));
      });
      auto const h = f.sample({ctx.pending_tokens().size() - 1}, samplers::multinomial());
      ForwardOutput out_step = co_await f.execute();
      out.push_back(out_step.token(h));
      ctx.fill({out.back()});
    }
    co_return out;
  };
  auto const [want, got] = on_both(program, opts(16, 16));
  CHECK(got == want);
}

TEST_CASE("speculative decoding gives the greedy tokens on every space", "[spaces][draft]") {
  std::vector<std::uint32_t> p;
  for (int r = 0; r < 6; ++r) {
    for (std::uint32_t t : {11u, 22u, 33u, 44u, 55u}) p.push_back(t);
  }
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    ctx.fill(p);
    NgramDrafter drafter(3, 6);
    Generation const g = co_await ctx.generate_with_drafter(drafter, max_len(24));
    co_return g.tokens;
  };
  auto const [want, got] = on_both(program);
  CHECK(got == want);
  auto const [plain, unused] = on_both([&]<class M>(Engine<M>& e) { return generate_tokens(e, p, samplers::greedy(), 24); });
  CHECK(got == plain);
}

TEST_CASE("LoRA adapters give identical tokens on every space", "[spaces][lora]") {
  auto const p = prompt(6, 21);
  LoraAdapter const ad = LoraAdapter::random(LoraShape::of(oracle_model().config()), 4, 8.0f, 99);
  auto program = [&]<class M>(Engine<M>& e) -> Task<std::vector<std::uint32_t>> {
    AdapterId const id = e.load_adapter("x", LoraAdapter(ad));
    auto ctx = e.create_context();
    ctx.set_adapter(id);
    ctx.fill(p);
    Generation const g = co_await ctx.generate(samplers::greedy(), max_len(10));
    co_return g.tokens;
  };
  auto const [want, got] = on_both(program);
  CHECK(got == want);
}
