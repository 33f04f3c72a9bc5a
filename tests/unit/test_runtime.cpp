// The inferlet runtime on the tiny random Llama: generation against direct probes, fork semantics, batching
// (bit-identical to running alone, one step per token for many programs), speculative decoding equal to
// greedy, constraints, KV export/import through memory and SQLite stores, and error paths that change nothing.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

using namespace piecrust;
using Tiny = testing::Tiny;

namespace {

EngineOptions opts(std::size_t pages = 256, std::uint32_t page_size = 16) {
  return testing::engine_options(pages, page_size);
}
Tiny& tiny() { return testing::tiny_model(); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

std::uint32_t argmax(std::span<float const> row) {
  return static_cast<std::uint32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// Greedy by hand: one Forward per token, reading the raw logits.
Task<std::vector<std::uint32_t>> greedy_by_probe(Engine<Tiny>& e, std::vector<std::uint32_t> p, std::size_t n) {
  auto ctx = e.create_context();
  std::vector<std::uint32_t> out;
  std::vector<std::uint32_t> next = p;
  for (std::size_t i = 0; i < n; ++i) {
    auto fwd = ctx.forward();
    fwd.input(next);
    auto const h = fwd.probe(next.size() - 1, Logits{});
    ForwardOutput o = co_await fwd.execute();
    out.push_back(argmax(o.logits(h)));
    next = {out.back()};
  }
  co_return out;
}

Task<Generation> generate_from(Engine<Tiny>& e, std::vector<std::uint32_t> p, SamplerSpec s, std::size_t n) {
  auto ctx = e.create_context();
  ctx.fill(p);
  co_return co_await ctx.generate(s, max_len(n));
}

}  // namespace

TEST_CASE("generate with greedy equals argmax of the probed logits", "[runtime]") {
  auto const p = prompt(1, 23);
  Engine<Tiny> a(tiny(), opts());
  Engine<Tiny> b(tiny(), opts());
  auto const want = a.block_on(greedy_by_probe(a, p, 12));
  auto const got = b.block_on(generate_from(b, p, samplers::greedy(), 12));
  CHECK(got.tokens == want);
  CHECK(got.passes == 12);
  CHECK(b.pool().free_count() == b.pool().num_pages());  // every page back once the program ended
}

TEST_CASE("probes agree with each other and with sampling", "[runtime][probe]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto fwd = ctx.forward();
    fwd.input(prompt(2, 9));
    auto const s = fwd.sample({8}, samplers::greedy());
    auto const lg = fwd.probe(8, Logits{});
    auto const d = fwd.probe(8, Distribution{1.0f, 5});
    auto const lp = fwd.probe(8, Logprobs{{3, 17, 200}});
    auto const one = fwd.probe(8, Logprob{17});
    auto const h = fwd.probe(8, Entropy{});
    ForwardOutput out = co_await fwd.execute();
    auto const [ids, probs] = out.distribution(d);
    CHECK(out.token(s) == argmax(out.logits(lg)));
    CHECK(ids[0] == out.token(s));
    CHECK(std::is_sorted(probs.begin(), probs.end(), std::greater<>()));
    CHECK(out.logprobs(one)[0] == Approx(out.logprobs(lp)[1]).margin(1e-6));
    CHECK(out.entropy(h) >= 0.0f);
    CHECK(out.entropy(h) <= std::log(512.0f) + 1e-4f);
    CHECK(std::exp(out.logprobs(one)[0]) <= 1.0f);
  };
  e.block_on(prog(e));
}

TEST_CASE("fork: branches diverge and the parent is untouched", "[runtime][fork]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto parent = e.create_context();
    parent.fill(prompt(3, 40));  // two full pages and a partial one once flushed
    co_await parent.flush();
    CHECK(parent.page_table().committed_pages().size() == 2);
    auto const parent_ids = parent.token_ids();
    std::size_t const free_before = e.pool().free_count();

    auto child = parent.fork();
    CHECK(e.pool().free_count() == free_before - 1);  // only the partial working page is copied
    CHECK(child.token_ids() == parent_ids);
    child.fill({1, 2, 3});
    Generation const g = co_await child.generate(samplers::top_k(TopK{50}, Temperature{1.5f}), max_len(6));
    CHECK(g.tokens.size() == 6);
    CHECK(parent.token_ids() == parent_ids);
    CHECK(child.token_ids().size() == parent_ids.size() + 3 + 6);
    // Shared committed pages have two owners.
    for (PageId const id : parent.page_table().committed_pages()) CHECK(e.pool().refcount(id) == 2);
  };
  e.block_on(prog(e));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}

TEST_CASE("batched programs get bit-identical tokens to running alone, in fewer steps", "[runtime][batching]") {
  std::size_t const n = 5;
  std::vector<std::vector<std::uint32_t>> alone;
  for (std::size_t i = 0; i < n; ++i) {
    Engine<Tiny> e(tiny(), opts());
    for (std::size_t k = 0; k < i; ++k) (void)e.create_context();  // same context ids as in the batched run
    alone.push_back(e.block_on(generate_from(e, prompt(10 + static_cast<std::uint32_t>(i), 5 + 7 * i),
                                             samplers::top_p(TopP{0.9f}, Temperature{1.3f}), 10 + i))
                        .tokens);
  }
  Engine<Tiny> e(tiny(), opts());
  std::vector<std::vector<std::uint32_t>> together(n);
  auto prog = [](Engine<Tiny>& e, std::size_t i, std::vector<std::uint32_t>& out) -> Task<void> {
    out = (co_await generate_from(e, prompt(10 + static_cast<std::uint32_t>(i), 5 + 7 * i), samplers::top_p(TopP{0.9f}, Temperature{1.3f}),
                                  10 + i))
              .tokens;
  };
  for (std::size_t i = 0; i < n; ++i) e.spawn(prog(e, i, together[i]));
  e.run();
  CHECK(together == alone);
  CHECK(e.stats().steps == 10 + n - 1);  // the longest program's steps, not the sum
  CHECK(e.stats().passes == 10 * n + n * (n - 1) / 2);
}

TEST_CASE("when_all runs forked generations in the same steps", "[runtime][batching]") {
  Engine<Tiny> e(tiny(), opts());
  auto branch = [](Context<Tiny> ctx, std::uint32_t tok) -> Task<Generation> {
    ctx.fill({tok});
    co_return co_await ctx.generate(samplers::multinomial(), max_len(8));
  };
  auto prog = [&](Engine<Tiny>& e) -> Task<std::vector<Generation>> {
    auto root = e.create_context();
    root.fill(prompt(4, 30));
    co_await root.flush();
    std::vector<Task<Generation>> tasks;
    for (std::uint32_t k = 0; k < 8; ++k) tasks.push_back(branch(root.fork(), k));
    co_return co_await e.when_all(std::move(tasks));
  };
  auto const gens = e.block_on(prog(e));
  REQUIRE(gens.size() == 8);
  for (auto const& g : gens) CHECK(g.tokens.size() == 8);
  CHECK(e.stats().steps == 1 + 8);  // one prefill, then 8 batched steps for all 8 branches
  CHECK(e.pool().free_count() == e.pool().num_pages());
}

TEST_CASE("speculative decoding with the n-gram drafter equals greedy and saves passes", "[runtime][draft]") {
  std::vector<std::uint32_t> p;
  for (int r = 0; r < 6; ++r) {
    for (std::uint32_t t : {11u, 22u, 33u, 44u, 55u}) p.push_back(t);
  }
  Engine<Tiny> a(tiny(), opts());
  auto const plain = a.block_on(generate_from(a, p, samplers::greedy(), 24));
  Engine<Tiny> b(tiny(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.fill(p);
    NgramDrafter drafter(3, 6);
    co_return co_await ctx.generate_with_drafter(drafter, max_len(24));
  };
  auto const spec = b.block_on(prog(b));
  CHECK(spec.tokens == plain.tokens);
  CHECK(spec.passes <= plain.passes);
  CHECK(b.pool().free_count() == b.pool().num_pages());
}

TEST_CASE("a regex constraint holds under any sampler", "[runtime][constraint]") {
  // Token i of the tiny vocabulary spells "a" if i % 3 == 0, "b" if i % 3 == 1, "-" otherwise; 0 is EOS.
  std::vector<std::string> spell(512);
  for (std::size_t i = 1; i < spell.size(); ++i) spell[i] = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "-";
  std::string const pattern = "(ab-)+";
  std::vector<SamplerSpec> const kinds{samplers::multinomial(), samplers::top_k(TopK{5}, Temperature{2.0f}), samplers::greedy()};
  for (SamplerSpec const& s : kinds) {
    Engine<Tiny> e(tiny(), opts());
    auto prog = [&](Engine<Tiny>& e) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(prompt(5, 12));
      RegexConstraint c(pattern, spell, {0});
      StopCondition const stop = max_len(12) || ends_with_any({0});  // (gcc 12: no init-lists in a co_await operand)
      co_return co_await ctx.generate(s, stop, c);
    };
    auto const g = e.block_on(prog(e));
    std::string text;
    for (auto const t : g.tokens) text += spell[t];
    std::string const want = "ab-ab-ab-ab-";
    CHECK(text.substr(0, std::min(text.size(), want.size())) == want.substr(0, std::min(text.size(), want.size())));
  }
}

TEST_CASE("export/import through memory and SQLite stores: no prefill, same continuation", "[runtime][store]") {
  auto const p = prompt(6, 37);
  auto const db = (std::filesystem::temp_directory_path() / ("piecrust-test-" + std::to_string(std::random_device{}()) + ".db")).string();
  std::vector<std::uint32_t> continued;
  {
    Engine<Tiny> e(tiny(), opts());
    SqliteStore store(db);
    MemoryStore mem;
    auto prog = [&](Engine<Tiny>& e) -> Task<void> {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_await ctx.flush();
      ctx.export_kv_pages(store, "prefix");
      ctx.export_kv_pages(mem, "prefix");
      // Same engine: imported pages stay private copies (an entry's K/V is not trusted by default), unless the
      // store is trusted, when they are the same physical pages (content-addressed).
      auto copy = Context<Tiny>::from_imported(e, mem, "prefix");
      for (std::size_t i = 0; i < 2; ++i) CHECK(copy.page_table().committed_pages()[i] != ctx.page_table().committed_pages()[i]);
      auto const shared = Context<Tiny>::from_imported(e, mem, "prefix", KvTrust::trusted);
      CHECK(std::equal(shared.page_table().committed_pages().begin(), shared.page_table().committed_pages().end(),
                       ctx.page_table().committed_pages().begin()));
      // Continue from the 32 imported tokens; the restarted process below must do exactly the same.
      copy.fill(std::span(p).subspan(32));
      continued = (co_await copy.generate(samplers::greedy(), max_len(6))).tokens;
    };
    e.block_on(prog(e));
  }
  {
    // A "restarted process": a new engine, the SQLite file reopened.
    Engine<Tiny> e(tiny(), opts());
    SqliteStore store(db);
    CHECK(store.list() == std::vector<std::string>{"prefix"});
    auto prog = [&](Engine<Tiny>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = Context<Tiny>::from_imported(e, store, "prefix");
      CHECK(ctx.seq_len() == 32);
      ctx.fill(std::span(p).subspan(32));
      co_return (co_await ctx.generate(samplers::greedy(), max_len(6))).tokens;
    };
    auto const got = e.block_on(prog(e));
    CHECK(got == continued);
    CHECK(e.stats().tokens == 5 + 5);  // 5 new prompt tokens + 5 decode steps: the 32 imported were not recomputed
  }
  std::filesystem::remove(db);
}

TEST_CASE("corrupt or mismatched imports are refused", "[runtime][store][errors]") {
  MemoryStore store;
  {
    Engine<Tiny> e(tiny(), opts());
    auto prog = [&](Engine<Tiny>& e) -> Task<void> {
      auto ctx = e.create_context();
      ctx.fill(prompt(7, 20));
      co_await ctx.flush();
      ctx.export_kv_pages(store, "x");
    };
    e.block_on(prog(e));
  }
  Engine<Tiny> other_page(tiny(), opts(256, 32));
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(other_page, store, "x"), Catch::Contains("page_size is 16 but this engine's is 32"));
  EngineOptions o = opts();
  o.model_id = "another-model";
  Engine<Tiny> other_model(tiny(), o);
  CHECK_THROWS_AS(Context<Tiny>::from_imported(other_model, store, "x"), InvalidArgument);
  Engine<Tiny> e(tiny(), opts());
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "missing"), Catch::Contains("no entry named \"missing\""));
  auto blob = *store.get("x");
  blob[blob.size() / 2] ^= 0x5a;
  store.set("bad", blob);
  CHECK_THROWS_AS(Context<Tiny>::from_imported(e, store, "bad"), FormatError);
  blob.resize(blob.size() / 3);
  store.set("short", blob);
  CHECK_THROWS_WITH(Context<Tiny>::from_imported(e, store, "short"), Catch::Contains("truncated"));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}

TEST_CASE("invalid passes throw typed errors and leave the context as it was", "[runtime][errors]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(8, 20));
    co_await ctx.flush();
    ctx.fill({5, 6});
    auto const ids = ctx.token_ids();
    std::size_t const len = ctx.seq_len(), free = e.pool().free_count();
    auto unchanged = [&] { return ctx.token_ids() == ids && ctx.seq_len() == len && e.pool().free_count() == free; };

    {
      auto f = ctx.forward();
      f.input({7, 512});
      CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("token id 512 at input 1 >= vocab = 512"));
      CHECK(unchanged());
    }
    {
      auto f = ctx.forward();
      f.input({7});
      f.attention_mask({AttentionMask::causal(5), AttentionMask::causal(5)});
      CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("2 rows for 1 inputs"));
      f = ctx.forward();
      f.input({7});
      f.attention_mask({AttentionMask::causal(40)});
      CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("length 40 > KV length after the pass 23"));
      CHECK(unchanged());
    }
    {
      auto f = ctx.forward();
      f.input({7});
      f.sample({1});
      CHECK_THROWS_AS(co_await f.execute(), OutOfRange);
      f = ctx.forward();
      f.input({7});
      f.probe(0, Logprob{600});
      CHECK_THROWS_AS(co_await f.execute(), OutOfRange);
      f = ctx.forward();
      f.input({7});
      f.mask(LogitMask::allow({1}, 100));
      f.sample({0});
      CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("logit mask covers 100 ids"));
      f = ctx.forward();
      f.input({7});
      f.sample({0}, samplers::top_p(TopP{1.5f}));
      CHECK_THROWS_AS(co_await f.execute(), InvalidArgument);
      CHECK(unchanged());
    }
    {
      auto empty = e.create_context();
      auto f = empty.forward();
      CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("empty pass"));
      CHECK_THROWS_AS(empty.fill({999}), OutOfRange);
      CHECK(empty.token_ids().empty());
      CHECK_THROWS_AS(co_await empty.generate(samplers::greedy(), max_len(2)), InvalidState);
    }
    {
      auto f = ctx.forward();
      f.input({7});
      (void)f.execute();
      CHECK_THROWS_AS(f.execute(), InvalidState);
    }
    CHECK(unchanged());
  };
  e.block_on(prog(e));
}

TEST_CASE("running out of pages fails the pass and changes nothing", "[runtime][errors]") {
  Engine<Tiny> e(tiny(), opts(3, 16));
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(9, 40));
    co_await ctx.flush();
    auto const ids = ctx.token_ids();
    ctx.fill(prompt(10, 20));
    auto const with_pending = ctx.token_ids();
    CHECK_THROWS_AS(co_await ctx.flush(), OutOfPages);
    CHECK(ctx.token_ids() == with_pending);
    CHECK(ctx.seq_len() == ids.size());
    CHECK(e.pool().free_count() == 0);
  };
  e.block_on(prog(e));
  CHECK(e.pool().free_count() == 3);
}

TEST_CASE("windowed attention with dropped pages keeps memory bounded", "[runtime][window]") {
  Engine<Tiny> e(tiny(), opts(16, 16));
  auto prog = [](Engine<Tiny>& e) -> Task<std::size_t> {
    auto ctx = e.create_context();
    ctx.fill(prompt(11, 8));
    std::size_t const window = 32;
    std::size_t max_used = 0;
    std::uint32_t tok = 1;
    for (int step = 0; step < 200; ++step) {
      auto f = testing::windowed_pass(ctx, window, [](std::size_t i, std::size_t masked) {
        return AttentionMask::window(i + 1, std::min(i + 1, i + 1 - masked));
      });
      auto const h = f.sample({ctx.pending_tokens().size() - 1}, samplers::multinomial());
      ForwardOutput out = co_await f.execute();
      tok = out.token(h);
      ctx.fill({tok});
      max_used = std::max(max_used, e.pool().num_pages() - e.pool().free_count());
    }
    CHECK(ctx.page_table().tokens().back().position >= 200);  // positions keep growing
    co_return max_used;
  };
  std::size_t const max_used = e.block_on(prog(e));
  CHECK(max_used <= 4);  // 32-token window in 16-token pages: never more than a few pages live
}

TEST_CASE("custom samplers model the Sampler concept", "[runtime][sampler]") {
  struct SecondBest {
    std::uint32_t sample(std::span<std::uint32_t const> ids, std::span<float const>) { return ids.size() > 1 ? ids[1] : ids[0]; }
  };
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto f = ctx.forward();
    f.input(prompt(12, 6));
    auto const s = f.sample({5}, SamplerSpec::custom(SecondBest{}));
    auto const d = f.probe(5, Distribution{1.0f, 2});
    ForwardOutput out = co_await f.execute();
    CHECK(out.token(s) == out.distribution(d).first[1]);
  };
  e.block_on(prog(e));
}

TEST_CASE("thousands of random programs leave no page behind", "[runtime][model]") {
  auto const seed = std::random_device{}();
  INFO("seed " << seed);
  Engine<Tiny> e(tiny(), opts(48, 4));  // small pages and a small pool: forks, commits and exhaustion all happen
  std::mt19937 rng(seed);
  std::size_t failures = 0;
  auto program = [](Engine<Tiny>& e, std::uint32_t s, std::size_t& failures) -> Task<void> {
    std::mt19937 r(s);
    std::vector<Context<Tiny>> ctxs;
    ctxs.push_back(e.create_context());
    for (int op = 0; op < 12; ++op) {
      auto& c = ctxs[r() % ctxs.size()];
      try {
        switch (r() % 7) {
          case 0: c.fill(prompt(r(), 1 + r() % 9)); break;
          case 1: co_await c.flush(); break;
          case 2:
            if (!c.pending_tokens().empty() || c.seq_len() > 0) {
              if (c.pending_tokens().empty()) c.fill({1});
              co_await c.generate(samplers::multinomial(), max_len(1 + r() % 4));
            }
            break;
          case 3:
            if (ctxs.size() < 4) ctxs.push_back(c.fork());
            break;
          case 4:
            if (c.seq_len() > 0) {
              std::size_t const b = r() % c.seq_len();
              c.mask_token_range(b, b + r() % (c.seq_len() - b + 1));
            }
            break;
          case 5: c.drop_masked_kv_pages(); break;
          case 6:
            if (ctxs.size() > 1) ctxs.erase(ctxs.begin() + static_cast<long>(r() % ctxs.size()));
            break;
        }
      } catch (OutOfPages const&) {
        ++failures;  // a full pool is a legal outcome; the pass changed nothing
      }
    }
  };
  int const rounds = 60 / testing::emulation_rounds_divisor;
  for (int round = 0; round < rounds; ++round) {
    for (int p = 0; p < 6; ++p) e.spawn(program(e, static_cast<std::uint32_t>(rng()), failures));
    e.run();
    REQUIRE(e.pool().free_count() == e.pool().num_pages());
    REQUIRE(e.pool().stats().content_indexed == 0);
  }
  INFO("out-of-pages outcomes: " << failures);
  CHECK(e.stats().passes > static_cast<std::size_t>(5 * rounds));
}

TEST_CASE("flush(keep_last) shares one prefill between forks that then generate together", "[runtime][fork]") {
  // The README's example spelled with Flush::keep_last (the README uses flush(), whose kept logits
  // tests/seeds covers), on the tiny model with token ids instead of chat text.
  Engine<Tiny> e(tiny(), opts());
  auto two_answers = [](Engine<Tiny>& engine) -> Task<std::vector<Generation>> {
    auto ctx = engine.create_context();
    ctx.fill(prompt(13, 37));
    co_await ctx.flush(Flush::keep_last);
    CHECK(ctx.seq_len() == 36);
    CHECK(ctx.pending_tokens().size() == 1);
    auto a = ctx.fork(), b = ctx.fork();
    std::vector<Task<Generation>> branches;
    branches.push_back(a.generate(samplers::top_p(TopP{0.9f}), max_len(16)));
    branches.push_back(b.generate(samplers::min_p(MinP{0.1f}), max_len(16)));
    co_return co_await engine.when_all(std::move(branches));
  };
  auto const gens = e.block_on(two_answers(e));
  CHECK(gens[0].tokens.size() == 16);
  CHECK(gens[1].tokens.size() == 16);
  CHECK(e.stats().steps == 1 + 16);
  CHECK(e.stats().tokens == 36 + 2 * 16);  // the prompt once, then one token per branch per step
}

TEST_CASE("masked slots are skipped by passes without their own rows", "[runtime][window]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto a = e.create_context();
    a.fill(prompt(14, 40));
    co_await a.flush();
    auto b = a.fork();
    auto c = a.fork();
    a.mask_token_range(3, 35);
    auto read = [](Context<Tiny>& ctx, std::vector<AttentionMask> rows) -> Task<std::vector<float>> {
      auto f = ctx.forward();
      f.input({7});
      if (!rows.empty()) f.attention_mask(std::move(rows));
      auto const h = f.probe(0, Logits{});
      ForwardOutput const out = co_await f.execute();
      co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
    };
    std::vector<AttentionMask> const none;
    std::vector<AttentionMask> const explicit_rows{AttentionMask::from_runs({3, 32, 6})};  // (gcc 12: built outside co_await)
    auto const masked_by_flags = co_await read(a, none);         // default rows
    auto const masked_by_rows = co_await read(b, explicit_rows);  // the same, explicit
    auto const unmasked = co_await read(c, none);
    CHECK(masked_by_flags == masked_by_rows);
    CHECK(masked_by_flags != unmasked);
  };
  e.block_on(prog(e));
}

TEST_CASE("pages computed under custom attention rows are never shared with a plain context", "[runtime][pages]") {
  // Equal tokens and positions, different K/V: a context that prefilled under window rows must not lend its
  // committed pages to one that prefills the same tokens causally (the rows are not part of TokenMeta).
  std::size_t const ps = opts().page_size;
  auto const ids = prompt(21, 2 * ps + 3);  // two full pages and a partial one
  auto next = [](Context<Tiny>& ctx) -> Task<std::vector<float>> {  // the logits after the pending token
    auto f = ctx.forward();
    f.input_pending();
    auto const h = f.probe(0, Logits{});
    ForwardOutput const out = co_await f.execute();
    co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
  };
  Engine<Tiny> fresh(tiny(), opts());
  auto const want = fresh.block_on([&]() -> Task<std::vector<float>> {
    auto c = fresh.create_context();
    c.fill(ids);
    co_await c.flush(Flush::keep_last);
    co_return co_await next(c);
  }());
  Engine<Tiny> e(tiny(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<void> {
    std::vector<AttentionMask> rows;  // [ids] a window of 5 (gcc 12: built outside co_await)
    for (std::size_t i = 0; i < ids.size(); ++i) rows.push_back(AttentionMask::window(i + 1, 5));
    auto windowed = e.create_context();
    {
      auto f = windowed.forward();
      f.input(ids);
      f.attention_mask(rows);
      co_await f.execute();
    }
    REQUIRE(windowed.page_table().committed_pages().size() == 2);
    auto plain = e.create_context();
    plain.fill(ids);
    co_await plain.flush(Flush::keep_last);
    REQUIRE(plain.page_table().committed_pages().size() == 2);
    for (std::size_t p = 0; p < 2; ++p) CHECK(plain.page_table().committed_pages()[p] != windowed.page_table().committed_pages()[p]);
    // Rows equal to the causal ones change nothing: such a context still shares.
    std::vector<AttentionMask> const causal = AttentionMask::causal_rows(0, ids.size());
    auto explicit_causal = e.create_context();
    {
      auto f = explicit_causal.forward();
      f.input(ids);
      f.attention_mask(causal);
      co_await f.execute();
    }
    for (std::size_t p = 0; p < 2; ++p) CHECK(explicit_causal.page_table().committed_pages()[p] == plain.page_table().committed_pages()[p]);
    // And the plain context computes what a fresh engine computes.
    auto const got = co_await next(plain);
    CHECK(got == want);
  };
  e.block_on(prog(e));
}

// ---- positions: never at or past the model's context length, never wrapping ----

namespace {

// The message of the E that awaiting `f.execute()` throws, or a note saying what happened instead.
template <class E, class M>
Task<std::string> error_of(Forward<M>& f) {
  std::string what = "no exception";
  try {
    (void)co_await f.execute();
  } catch (E const& e) {
    what = e.what();
  } catch (std::exception const& e) {
    what = std::string("another exception: ") + e.what();
  }
  co_return what;
}

}  // namespace

TEST_CASE("positions at or past the context length are refused and change nothing", "[runtime][errors][positions]") {
  REQUIRE(tiny().shape().context_length == 1024);
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(20, 5));
    co_await ctx.flush(Flush::keep_last);  // positions 0..3 in KV, one token pending
    std::vector<std::uint32_t> ids = ctx.token_ids();
    std::size_t len = ctx.seq_len(), free = e.pool().free_count();
    std::uint32_t next = ctx.page_table().next_position();
    std::uint64_t draws = ctx.state().sample_step;
    auto unchanged = [&] {
      return ctx.token_ids() == ids && ctx.seq_len() == len && e.pool().free_count() == free &&
             ctx.page_table().next_position() == next && ctx.state().sample_step == draws;
    };
    auto snapshot = [&] {
      ids = ctx.token_ids();
      len = ctx.seq_len();
      free = e.pool().free_count();
      next = ctx.page_table().next_position();
      draws = ctx.state().sample_step;
    };

    // Explicit positions 2^32 - 1 and 1024: refused by input_at, which appends nothing.
    std::array<std::uint32_t, 2> const bad_positions{0xFFFFFFFFu, 1024u};
    for (std::uint32_t const bad : bad_positions) {
      auto f = ctx.forward();
      std::vector<std::uint32_t> const toks{7, 8}, pos{6, bad};
      std::string what = "no exception";
      try {
        f.input_at(toks, pos);
      } catch (OutOfRange const& err) {
        what = err.what();
      }
      CHECK_THAT(what, Catch::Contains("positions[1] = " + std::to_string(bad)) &&
                           Catch::Contains(">= the model's context length 1024"));
      auto const h = f.probe(0, Logits{});  // the builder holds no input: index 0 is out of range
      CHECK_THAT(co_await error_of<OutOfRange>(f), Catch::Contains("probe index 0 >= number of inputs 0"));
      (void)h;
      CHECK(unchanged());
    }

    // The last position, 1023, is accepted; the next automatic one (1024) is refused.
    {
      auto f = ctx.forward();
      std::vector<std::uint32_t> const toks{7}, pos{1023};
      f.input_at(toks, pos);
      (void)co_await f.execute();
      CHECK(ctx.page_table().next_position() == 1024);
      snapshot();
    }
    {
      auto f = ctx.forward();
      f.input({8});
      f.sample({0});
      CHECK_THAT(co_await error_of<OutOfRange>(f),
                 Catch::Contains("input 0 would get position 1024 >= the model's context length 1024"));
      CHECK(unchanged());
    }
    ctx.fill({9});
    snapshot();
    {
      std::string what = "no exception";
      try {
        co_await ctx.flush();
      } catch (OutOfRange const& err) {
        what = err.what();
      }
      CHECK_THAT(what, Catch::Contains("pending token 0 would get position 1024"));
      CHECK(unchanged());
      CHECK(ctx.pending_tokens().size() == 1);
    }
    {
      std::string what = "no exception";
      try {
        (void)co_await ctx.generate(samplers::greedy(), max_len(4));
      } catch (OutOfRange const& err) {
        what = err.what();
      }
      CHECK_THAT(what, Catch::Contains("would get position 1024"));
      CHECK(unchanged());
    }
  };
  e.block_on(prog(e));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}

TEST_CASE("generation stops at the last position instead of wrapping", "[runtime][positions]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e, bool speculative) -> Task<void> {
    auto ctx = e.create_context();
    std::vector<std::uint32_t> p;
    for (int r = 0; r < 4; ++r) {
      for (std::uint32_t t : {11u, 22u, 33u}) p.push_back(t);
    }
    ctx.fill(p);
    {
      auto f = ctx.forward();
      f.input_pending();
      std::vector<std::uint32_t> const toks{11}, pos{1017};  // explicit positions run ahead of the KV slots
      f.input_at(toks, pos);
      auto const h = f.sample({p.size()});
      ForwardOutput const out = co_await f.execute();
      ctx.fill({out.token(h)});
    }
    Generation g;
    if (speculative) {
      NgramDrafter drafter(2, 6);
      g = co_await ctx.generate_with_drafter(drafter, max_len(100));
    } else {
      g = co_await ctx.generate(samplers::greedy(), max_len(100));
    }
    CHECK(g.tokens.size() >= 1);
    CHECK(g.tokens.size() <= 6);  // positions 1018 .. 1023 at most
    co_await ctx.flush();          // the last pending token fits: at position 1023 or before
    for (TokenMeta const& t : ctx.page_table().tokens()) CHECK(t.position < 1024);
    CHECK(ctx.page_table().next_position() <= 1024);
  };
  SECTION("plain") { e.block_on(prog(e, false)); }
  SECTION("speculative") { e.block_on(prog(e, true)); }
}

// ---- one bad pass fails only its own program ----

namespace {

struct GoodResult {
  std::vector<float> logits;  // [vocab] at the last input
  std::uint32_t token = 0;    // multinomial draw there
};

// A good pass: a prompt, the logits and a multinomial sample at its last token.
template <class M>
Task<void> good_pass(Context<M>& ctx, std::vector<std::uint32_t> p, GoodResult& out) {
  auto f = ctx.forward();
  f.input(p);
  auto const lg = f.probe(p.size() - 1, Logits{});
  auto const s = f.sample({p.size() - 1}, samplers::multinomial());
  ForwardOutput const o = co_await f.execute();
  out.logits.assign(o.logits(lg).begin(), o.logits(lg).end());
  out.token = o.token(s);
}

// What the bad program saw: the error's message, and whether its context was left as it was.
struct BadResult {
  std::string error = "no exception";
  bool unchanged = false;
  std::string expect;  // what the message must name, when only the program knows it
};

struct StepRun {
  std::vector<GoodResult> good;  // [4]
  std::size_t steps = 0;
  std::size_t free_pages = 0;
  BadResult bad;
};

enum class Order { bad_first, bad_last, each_alone };

// Four good contexts and a fifth for the bad program (created in every run, so ids and random streams match).
// Every program is spawned before run(), so their passes share one step; each_alone runs the good passes one
// step each and no bad program.
template <class M, class Bad>
StepRun run_step(M& model, EngineOptions const& o, Order order, Bad bad) {
  Engine<M> e(model, o);
  std::vector<Context<M>> ctxs;
  for (int i = 0; i < 4; ++i) ctxs.push_back(e.create_context());
  Context<M> bad_ctx = e.create_context();
  StepRun r;
  r.good.resize(4);
  auto good = [&](std::size_t i) { return good_pass(ctxs[i], prompt(30 + static_cast<std::uint32_t>(i), 4 + 3 * i), r.good[i]); };
  if (order == Order::each_alone) {
    for (std::size_t i = 0; i < 4; ++i) e.block_on(good(i));
  } else {
    if (order == Order::bad_first) e.spawn(bad(e, ctxs, bad_ctx, r.bad));
    for (std::size_t i = 0; i < 4; ++i) e.spawn(good(i));
    if (order == Order::bad_last) e.spawn(bad(e, ctxs, bad_ctx, r.bad));
    e.run();
  }
  r.steps = e.stats().steps;
  r.free_pages = e.pool().free_count();
  return r;
}

template <class M>
Task<void> no_bad(Engine<M>&, std::vector<Context<M>>&, Context<M>&, BadResult&) {
  co_return;
}

// The bad program's pass: `f` on `ctx`; records the E it throws and whether ctx stayed as it was (tokens, KV
// slots and pages, random draws). The pool as a whole is compared between runs (require_same_good).
template <class E, class M>
Task<void> expect_failure(Engine<M>&, Context<M>& ctx, Forward<M>& f, BadResult& out) {
  auto const ids = ctx.token_ids();
  auto const pages = ctx.page_table().kv_indices();
  std::size_t const len = ctx.seq_len();
  std::uint64_t const draws = ctx.state().sample_step;
  out.error = co_await error_of<E>(f);
  out.unchanged = ctx.token_ids() == ids && ctx.seq_len() == len && ctx.page_table().kv_indices() == pages &&
                  ctx.state().sample_step == draws && ctx.state().pass_in_flight == 0;
}

// The good contexts' logits and draws are the reference's, and so are the free pages (but for `bad_kept`
// pages that the reference's bad pass kept because it succeeded there).
void require_same_good(StepRun const& got, StepRun const& want, std::size_t bad_kept = 0) {
  for (std::size_t i = 0; i < 4; ++i) {
    INFO("good context " << i);
    REQUIRE(got.good[i].logits.size() == 512);
    CHECK(got.good[i].logits == want.good[i].logits);  // bit for bit
    CHECK(got.good[i].token == want.good[i].token);
  }
  CHECK(got.free_pages == want.free_pages + bad_kept);
}

// A model that fails every step holding token `poison` (as a device error would), else the tiny model.
struct Poisoned {
  using model_type = Poisoned;
  using space_type = Tiny::space_type;
  using kv_cache_type = Tiny::kv_cache_type;
  using workspace_type = Tiny::workspace_type;
  Tiny* inner;
  TokenId poison;

  [[nodiscard]] space_type const& space() const { return inner->space(); }
  [[nodiscard]] ModelShape shape() const { return inner->shape(); }
  [[nodiscard]] kv_cache_type make_kv_cache(std::size_t n, std::size_t page_size) const { return inner->make_kv_cache(n, page_size); }
  [[nodiscard]] workspace_type make_workspace() const { return inner->make_workspace(); }
  void check(ForwardBatch const& b) const {
    for (TokenId const t : b.tokens) {
      if (t == poison) detail::fail<Unsupported>("Poisoned::forward: token ", t, " is poison");
    }
  }
  void forward(kv_cache_type& kv, ForwardBatch const& b, std::span<float> logits) {
    check(b);
    inner->forward(kv, b, logits);
  }
  void forward(kv_cache_type& kv, ForwardBatch const& b, std::span<float> logits, workspace_type& ws) const {
    check(b);
    inner->forward(kv, b, logits, ws);
  }
};
static_assert(WorkspaceModel<Poisoned>);

}  // namespace

TEST_CASE("a second pass of a context in flight fails alone; the step runs the others as without it", "[runtime][errors][isolation]") {
  auto const want = run_step(tiny(), opts(), Order::bad_last, no_bad<Tiny>);
  auto bad = [](Engine<Tiny>& e, std::vector<Context<Tiny>>& ctxs, Context<Tiny>&, BadResult& out) -> Task<void> {
    auto f = ctxs[0].forward();  // context 0's good pass is already queued for this step
    f.input({5, 6});
    f.sample({1});
    // Its context does change (the first pass runs): check the message and the pass count instead.
    out.error = co_await error_of<InvalidState>(f);
    out.unchanged = e.stats().passes == 0;
  };
  auto const got = run_step(tiny(), opts(), Order::bad_last, bad);
  CHECK_THAT(got.bad.error, Catch::Contains("context 0 already has pass") && Catch::Contains("in flight"));
  CHECK(got.bad.unchanged);
  require_same_good(got, want);
  CHECK(got.steps == 1);
  CHECK(want.steps == 1);
}

TEST_CASE("a pass that runs out of pages fails alone; the step runs the others as without it", "[runtime][errors][isolation]") {
  auto const o = opts(12, 16);  // the good passes take a page each; the bad one wants 20
  auto const want = run_step(tiny(), o, Order::bad_first, no_bad<Tiny>);
  auto bad = [](Engine<Tiny>& e, std::vector<Context<Tiny>>&, Context<Tiny>& ctx, BadResult& out) -> Task<void> {
    auto f = ctx.forward();
    f.input(prompt(40, 320));
    f.sample({319});
    co_await expect_failure<OutOfPages>(e, ctx, f, out);
  };
  auto const got = run_step(tiny(), o, Order::bad_first, bad);
  CHECK_THAT(got.bad.error, Catch::Contains("n = 20 pages requested"));
  CHECK(got.bad.unchanged);
  require_same_good(got, want);
  CHECK(got.steps == 1);
}

TEST_CASE("a pass whose adapter was unloaded fails alone; the step runs the others as without it", "[runtime][errors][isolation]") {
  auto const want = run_step(tiny(), opts(), Order::bad_last, no_bad<Tiny>);
  auto bad = [](Engine<Tiny>& e, std::vector<Context<Tiny>>&, Context<Tiny>& ctx, BadResult& out) -> Task<void> {
    AdapterId const id = e.load_adapter("gone", LoraAdapter::random(LoraShape::of(tiny().config()), 2, 4.0f, 5));
    auto f = ctx.forward();
    f.adapter(id);
    f.input({3, 4, 5});
    f.sample({2});
    auto const ids = ctx.token_ids();
    auto awaiter = f.execute();
    e.unload_adapter(id);
    std::string what = "no exception";
    try {
      (void)co_await awaiter;
    } catch (InvalidArgument const& err) {
      what = err.what();
    }
    out.error = what;
    out.expect = "adapter id " + std::to_string(id.value) + " was unloaded";
    out.unchanged = ctx.token_ids() == ids && ctx.seq_len() == 0 && ctx.state().sample_step == 0;
  };
  auto const got = run_step(tiny(), opts(), Order::bad_last, bad);
  CHECK_THAT(got.bad.error, Catch::Contains(got.bad.expect));
  CHECK(got.bad.unchanged);
  require_same_good(got, want);
}

TEST_CASE("a custom sampler that throws fails its pass alone", "[runtime][errors][isolation]") {
  struct Refuses {
    bool refuse = true;
    std::uint32_t sample(std::span<std::uint32_t const> ids, std::span<float const>) {
      if (refuse) detail::fail<InvalidArgument>("Refuses::sample: ids.size() = ", ids.size());
      return ids[0];
    }
  };
  // The reference runs the same pass with a sampler that does not throw: the same rows reach the model.
  auto make_bad = [](bool refuse) {
    return [refuse](Engine<Tiny>& e, std::vector<Context<Tiny>>&, Context<Tiny>& ctx, BadResult& out) -> Task<void> {
      auto f = ctx.forward();
      f.input({3, 4, 5});
      f.sample({2}, SamplerSpec::custom(Refuses{refuse}));
      f.sample({1}, samplers::multinomial());
      co_await expect_failure<InvalidArgument>(e, ctx, f, out);
    };
  };
  auto const want = run_step(tiny(), opts(), Order::bad_first, make_bad(false));
  auto const got = run_step(tiny(), opts(), Order::bad_first, make_bad(true));
  CHECK(want.bad.error == "no exception");
  CHECK_THAT(got.bad.error, Catch::Contains("Refuses::sample: ids.size() = 512"));
  CHECK(got.bad.unchanged);  // no KV kept, no draw consumed
  require_same_good(got, want, 1);
}

TEST_CASE("when the model fails a step, each pass runs alone and only the failing one gets the error", "[runtime][errors][isolation]") {
  Poisoned model{&tiny(), 13};
  for (std::uint32_t i = 0; i < 4; ++i) {
    auto const p = prompt(30 + i, 4 + 3 * i);  // the good prompts run_step feeds
    REQUIRE(std::find(p.begin(), p.end(), 13u) == p.end());
  }
  auto const want = run_step(model, opts(), Order::each_alone, no_bad<Poisoned>);
  auto bad = [](Engine<Poisoned>& e, std::vector<Context<Poisoned>>&, Context<Poisoned>& ctx, BadResult& out) -> Task<void> {
    auto f = ctx.forward();
    f.input({3, 13, 5});
    f.sample({2});
    co_await expect_failure<Unsupported>(e, ctx, f, out);
  };
  for (Order const order : {Order::bad_first, Order::bad_last}) {
    auto const got = run_step(model, opts(), order, bad);
    CHECK_THAT(got.bad.error, Catch::Contains("token 13 is poison"));
    CHECK(got.bad.unchanged);
    require_same_good(got, want);  // computed alone, as in the reference
    CHECK(got.steps == 4);         // the failed batch and the failed pass are not counted
  }
}
