// Threads: an Engine belongs to one thread and says so (InvalidState naming both threads on any other, until
// adopt_thread hands it over); a model is shared read-only, so engines on several threads that share one
// LlamaModel compute exactly what they compute one after the other. Built again under ThreadSanitizer in CI.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <piecrust/model/detail/sequence_runner.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <span>
#include <thread>
#include <utility>
#include <vector>

using namespace piecrust;
using Tiny = testing::Tiny;

namespace {

Tiny& tiny() { return testing::tiny_model(); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

std::string text_of(std::thread::id id) {
  std::ostringstream out;
  out << id;
  return out.str();
}

// What one engine computes: tokens of three sampled generations (one with a LoRA adapter) sharing steps, and
// the logits after the first prompt.
struct Work {
  std::vector<std::vector<std::uint32_t>> tokens;
  std::vector<float> logits;
  std::size_t steps = 0;
};

Task<std::vector<std::uint32_t>> generate_tokens(Context<Tiny>& ctx, SamplerSpec s, std::size_t n) {
  Generation const g = co_await ctx.generate(std::move(s), max_len(n));
  co_return g.tokens;
}

Task<Work> workload(Engine<Tiny>& e, std::uint32_t seed, AdapterId adapter) {
  Work w;
  auto first = e.create_context();
  {
    auto f = first.forward();
    auto const p = prompt(seed, 21);
    f.input(p);
    auto const h = f.probe(p.size() - 1, Logits{});
    ForwardOutput const out = co_await f.execute();
    w.logits.assign(out.logits(h).begin(), out.logits(h).end());
  }
  std::vector<Context<Tiny>> ctxs;
  for (std::uint32_t i = 0; i < 3; ++i) {
    ctxs.push_back(e.create_context());
    ctxs.back().fill(prompt(seed + 1 + i, 9 + 5 * i));
  }
  ctxs[2].set_adapter(adapter);
  std::vector<Task<std::vector<std::uint32_t>>> gens;
  gens.push_back(generate_tokens(ctxs[0], samplers::multinomial(), 20));
  gens.push_back(generate_tokens(ctxs[1], samplers::top_k(TopK{40}, Temperature{1.2f}), 20));
  gens.push_back(generate_tokens(ctxs[2], samplers::greedy(), 20));
  w.tokens = co_await e.when_all(std::move(gens));
  co_return w;
}

// One engine's whole life on the calling thread: create, load an adapter, run the workload.
Work run_engine(std::uint32_t seed) {
  Engine<Tiny> e(tiny(), testing::engine_options(64, 16, seed));
  AdapterId const id = e.load_adapter("a", LoraAdapter::random(LoraShape::of(tiny().config()), 4, 8.0f, seed));
  Work w = e.block_on(workload(e, seed, id));
  w.steps = e.stats().steps;
  return w;
}

// Runs f on a new thread and joins it; an exception f throws is rethrown here (Catch2 asserts on one thread).
void on_thread(std::function<void()> const& f) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

// The message of the InvalidState that f throws, or a note saying what happened instead.
std::string invalid_state_of(std::function<void()> const& f) {
  try {
    f();
  } catch (InvalidState const& e) {
    return e.what();
  } catch (std::exception const& e) {
    return std::string("another exception: ") + e.what();
  }
  return "no exception";
}

}  // namespace

TEST_CASE("engines on two threads sharing one model compute what they compute one after the other", "[concurrency]") {
  (void)tiny();  // built before the threads start (a function-local static; its first use is thread-safe anyway)
  std::vector<std::uint32_t> const seeds{101, 202, 303};
  std::vector<Work> sequential;
  for (std::uint32_t const s : seeds) sequential.push_back(run_engine(s));
  REQUIRE(sequential[0].tokens != sequential[1].tokens);  // the engines do different work

  for (int round = 0; round < 3; ++round) {
    std::vector<Work> parallel(seeds.size());
    std::vector<std::exception_ptr> errors(seeds.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          parallel[i] = run_engine(seeds[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      INFO("round " << round << ", engine " << i);
      if (errors[i]) std::rethrow_exception(errors[i]);
      CHECK(parallel[i].tokens == sequential[i].tokens);
      CHECK(parallel[i].logits == sequential[i].logits);  // bit for bit
      CHECK(parallel[i].steps == sequential[i].steps);
    }
  }
}

TEST_CASE("the model's own forward takes turns across threads", "[concurrency]") {
  // SequenceRunner steps the model in a workspace of its own; a direct model.forward(kv, batch, logits)
  // uses the model's workspace under its lock. Both on two threads at once give the sequential logits.
  auto logits_of = [](bool own_workspace, std::uint32_t seed) {
    std::vector<float> out;
    if (own_workspace) {
      detail::SequenceRunner<Tiny> runner(tiny(), 16, 16);
      std::size_t const s = runner.add_sequence();
      auto const ids = prompt(seed, 30);
      std::vector<TokenId> const p(ids.begin(), ids.end());
      for (std::size_t k = 0; k < 3; ++k) {
        auto const l = runner.step(s, std::span<TokenId const>(p).subspan(10 * k, 10));
        out.insert(out.end(), l.begin(), l.end());
      }
    } else {
      auto kv = tiny().make_kv_cache(4, 16);
      auto const ids = prompt(seed, 20);
      std::vector<TokenId> const p(ids.begin(), ids.end());
      std::vector<std::uint32_t> positions(p.size()), qo{0, 20}, kv_indptr{0, 2}, pages{0, 1}, last{4}, rows{19};
      for (std::size_t i = 0; i < p.size(); ++i) positions[i] = static_cast<std::uint32_t>(i);
      ForwardBatch b;
      b.tokens = p;
      b.positions = positions;
      b.pages = {qo, kv_indptr, pages, last};
      b.logit_rows = rows;
      out.resize(512);
      for (int k = 0; k < 3; ++k) tiny().forward(kv, b, out);  // the same step again: same logits
    }
    return out;
  };
  for (bool const own : {true, false}) {
    INFO((own ? "SequenceRunner" : "model.forward"));
    auto const a = logits_of(own, 1), b = logits_of(own, 2);
    std::vector<float> pa, pb;
    std::thread ta([&] { pa = logits_of(own, 1); });
    std::thread tb([&] { pb = logits_of(own, 2); });
    ta.join();
    tb.join();
    CHECK(pa == a);
    CHECK(pb == b);
  }
}

TEST_CASE("a second thread calling an engine gets InvalidState naming both threads, and nothing changes", "[concurrency][errors]") {
  Engine<Tiny> e(tiny(), testing::engine_options(32));
  auto ctx = e.create_context();
  ctx.fill({1, 2, 3});
  auto const ids = ctx.token_ids();
  std::string const owner = text_of(std::this_thread::get_id());
  REQUIRE(e.owner_thread() == std::this_thread::get_id());

  std::vector<std::pair<std::string, std::string>> got;  // (call, message)
  std::string other;
  on_thread([&] {
    other = text_of(std::this_thread::get_id());
    auto record = [&](char const* call, std::function<void()> const& f) { got.emplace_back(call, invalid_state_of(f)); };
    record("Engine::create_context", [&] { (void)e.create_context(); });
    record("Engine::spawn", [&] { e.spawn(ctx.flush()); });
    record("Engine::run", [&] { e.run(); });
    record("Engine::shape", [&] { ctx.fill({4}); });  // fill checks ids against the engine's vocabulary
    record("Context::fork", [&] { (void)ctx.fork(); });
    record("Context::mask_token_range", [&] { ctx.mask_token_range(0, 0); });
    record("Engine::stats", [&] { (void)e.stats(); });
    record("Engine::encode", [&] { (void)e.encode("x"); });
  });
  REQUIRE(got.size() == 8);
  for (auto const& [call, what] : got) {
    INFO(call);
    CHECK_THAT(what, Catch::StartsWith(call) && Catch::Contains("called on thread " + other) &&
                         Catch::Contains("belongs to thread " + owner));
  }
  // Nothing changed: the context, the pool, the next context id, the steps.
  CHECK(ctx.token_ids() == ids);
  CHECK(e.pool().free_count() == e.pool().num_pages());
  CHECK(e.stats().steps == 0);
  CHECK(e.create_context().id() == 1);
}

TEST_CASE("adopt_thread hands an engine to another thread and back", "[concurrency]") {
  auto const p = prompt(7, 17);
  Engine<Tiny> alone(tiny(), testing::engine_options(32));
  auto greedy = [&p](Engine<Tiny>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    ctx.fill(p);
    Generation const g = co_await ctx.generate(samplers::greedy(), max_len(8));
    co_return g.tokens;
  };
  auto const want = alone.block_on(greedy(alone));

  Engine<Tiny> e(tiny(), testing::engine_options(32));
  std::vector<std::uint32_t> got;
  std::thread::id worker;
  on_thread([&] {
    e.adopt_thread();
    worker = std::this_thread::get_id();
    got = e.block_on(greedy(e));
  });
  CHECK(got == want);
  CHECK(e.owner_thread() == worker);
  // The creating thread no longer owns it ...
  CHECK_THAT(invalid_state_of([&] { (void)e.create_context(); }), Catch::Contains("belongs to thread " + text_of(worker)));
  // ... until it adopts it back.
  e.adopt_thread();
  CHECK(e.owner_thread() == std::this_thread::get_id());
  CHECK(e.block_on(greedy(e)).size() == 8);

  // A program cannot hand its engine away while the engine runs it.
  auto adopt_inside = [](Engine<Tiny>& e) -> Task<std::string> {
    co_return invalid_state_of([&] { e.adopt_thread(); });
  };
  CHECK_THAT(e.block_on(adopt_inside(e)), Catch::Contains("Engine::adopt_thread: the engine is running programs"));
}
