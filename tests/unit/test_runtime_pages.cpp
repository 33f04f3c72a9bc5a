// Runtime page and sampling bookkeeping on the tiny random Llama: the masked-slot ranges the engine reads its
// default attention rows from agree with the page table's per-slot flags through random programs (masking,
// unmasking, dropping pages, truncating, forking), and a pass reading them computes exactly what explicit rows
// built from the flags compute; Generation::logprobs against probes; RawContext::commit_full_working_pages.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace piecrust;
using Tiny = testing::Tiny;

namespace {

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

// The masked flags of every KV slot, by scanning the page table (the reference).
Brle scan_flags(Context<Tiny> const& ctx) {
  Brle bits;  // [seq_len]
  for (TokenMeta const& t : ctx.page_table().tokens()) bits.append(t.masked);
  return bits;
}

Brle ranges_bits(Context<Tiny> const& ctx) { return ctx.state().masked.bits(ctx.seq_len()); }

Task<std::vector<float>> one_token_logits(Context<Tiny>& ctx, std::uint32_t token, std::vector<AttentionMask> rows) {
  auto f = ctx.forward();
  f.input({token});
  if (!rows.empty()) f.attention_mask(std::move(rows));
  auto const h = f.probe(0, Logits{});
  ForwardOutput const out = co_await f.execute();
  co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
}

double log_softmax_at(std::span<float const> logits, std::uint32_t id, double temperature, LogitMask const* mask = nullptr) {
  double m = -INFINITY;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (mask == nullptr || mask->allows(static_cast<std::uint32_t>(i))) m = std::max(m, logits[i] / temperature);
  }
  double z = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (mask == nullptr || mask->allows(static_cast<std::uint32_t>(i))) z += std::exp(logits[i] / temperature - m);
  }
  return logits[id] / temperature - m - std::log(z);
}

}  // namespace

TEST_CASE("masked-slot ranges agree with the page table's flags through random programs", "[runtime][window]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options(96, 4));
  auto prog = [](Engine<Tiny>& e, std::uint32_t seed) -> Task<std::size_t> {
    std::mt19937 r(seed);
    auto ctx = e.create_context();
    ctx.fill(testing::random_prompt(r(), 11));
    co_await ctx.flush();
    std::size_t compared_passes = 0;
    for (int op = 0; op < 120; ++op) {
      INFO("op " << op);
      switch (r() % 6) {
        case 0:
          ctx.fill(testing::random_prompt(r(), 1 + r() % 6));
          co_await ctx.flush();
          break;
        case 1: {
          std::size_t const b = r() % (ctx.seq_len() + 1);
          std::size_t const n = r() % 9;
          ctx.mask_token_range(b, std::min(ctx.seq_len(), b + n), r() % 4 != 0);
          break;
        }
        case 2: ctx.drop_masked_kv_pages(); break;
        case 3: {
          // Deferred pass, then a rollback of part of it (speculation's pattern); some pages may commit.
          auto f = ctx.forward();
          f.input(testing::random_prompt(r(), 1 + r() % 6));
          f.defer_commit();
          co_await f.execute();
          std::size_t const n = std::min<std::size_t>(ctx.page_table().working_token_count(), r() % 5);
          ctx.inner().truncate_working_page_tokens(n);
          if (r() % 2 == 0) ctx.inner().commit_full_working_pages();
          break;
        }
        case 4: ctx = ctx.fork(); break;
        case 5: {
          // The default rows (from the ranges) and explicit rows (from the flags) give the same logits.
          auto a = ctx.fork();
          auto b = ctx.fork();
          std::vector<AttentionMask> rows{AttentionMask(Brle(scan_flags(ctx)).append(false, 1))};
          auto const by_default = co_await one_token_logits(a, 17, {});
          auto const by_rows = co_await one_token_logits(b, 17, std::move(rows));
          CHECK(by_default == by_rows);
          ++compared_passes;
          break;
        }
      }
      REQUIRE(ranges_bits(ctx) == scan_flags(ctx));
    }
    co_return compared_passes;
  };
  std::size_t const compared = e.block_on(prog(e, seed));
  CHECK(compared > 5);
}

TEST_CASE("MaskedSlots: assign, truncate and erase_blocks against a plain bit vector", "[runtime][window]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 r(seed);
  for (int round = 0; round < 200; ++round) {
    MaskedSlots m;
    std::vector<bool> ref(64 + r() % 64, false);
    for (int op = 0; op < 30; ++op) {
      std::size_t const b = r() % ref.size();
      std::size_t const e = std::min(ref.size(), b + r() % 20);
      switch (r() % 3) {
        case 0:
        case 1: {
          bool const v = r() % 3 != 0;
          m.assign(b, e, v);
          for (std::size_t i = b; i < e; ++i) ref[i] = v;
          break;
        }
        case 2: {
          std::size_t const block = 4;
          auto const firsts = m.masked_blocks(block, ref.size() / block);
          std::vector<std::size_t> want;  // wholly masked blocks, by brute force
          for (std::size_t p = 0; p < ref.size() / block; ++p) {
            if (std::all_of(ref.begin() + static_cast<long>(p * block), ref.begin() + static_cast<long>((p + 1) * block),
                            [](bool x) { return x; })) {
              want.push_back(p * block);
            }
          }
          REQUIRE(firsts == want);
          m.erase_blocks(firsts, block);
          for (auto it = want.rbegin(); it != want.rend(); ++it) {
            ref.erase(ref.begin() + static_cast<long>(*it), ref.begin() + static_cast<long>(*it + block));
          }
          if (ref.empty()) ref.assign(8, false);
          break;
        }
      }
      Brle want;
      for (bool const x : ref) want.append(x);
      REQUIRE(m.bits(ref.size()) == want);
      for (std::size_t k = 0; k + 1 < m.ranges().size(); ++k) REQUIRE(m.ranges()[k].end < m.ranges()[k + 1].begin);
    }
    std::size_t const n = r() % ref.size();
    m.truncate(n);
    Brle want;
    for (std::size_t i = 0; i < n; ++i) want.append(ref[i]);
    REQUIRE(m.bits(n) == want);
    REQUIRE((m.ranges().empty() || m.ranges().back().end <= n));
  }
}

TEST_CASE("Generation::logprobs are the log-probabilities the probes give for the chosen tokens", "[runtime][probe]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options(256, 16, seed));
  auto const prompt = testing::random_prompt(seed, 17);

  SECTION("in the same pass: sampled_logprobs against Logprobs / Logits probes of the same row") {
    auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<void> {
      auto ctx = e.create_context();
      std::vector<std::uint32_t> all(512);
      for (std::uint32_t i = 0; i < 512; ++i) all[i] = i;
      LogitMask const allow = LogitMask::allow({3, 50, 77, 100, 200, 311, 400}, 512);
      auto f = ctx.forward();
      f.input(p);
      std::size_t const last = p.size() - 1;
      auto const s_multi = f.sample({last, last - 1}, samplers::multinomial());
      auto const s_greedy = f.sample({last}, samplers::greedy());
      auto const s_temp = f.sample({last}, samplers::temperature(Temperature{0.7f}));
      auto const s_topk = f.sample({last}, samplers::top_k(TopK{5}, Temperature{1.3f}));
      auto const lps = f.probe(last, Logprobs{all});
      auto const lps_prev = f.probe(last - 1, Logprobs{all});
      auto const logits = f.probe(last, Logits{});
      ForwardOutput const out = co_await f.execute();
      auto const probe = out.logprobs(lps);
      CHECK(out.sampled_logprobs(s_multi)[0] == Approx(probe[out.tokens(s_multi)[0]]).margin(1e-6));
      CHECK(out.sampled_logprobs(s_multi)[1] == Approx(out.logprobs(lps_prev)[out.tokens(s_multi)[1]]).margin(1e-6));
      CHECK(out.sampled_logprobs(s_greedy)[0] == Approx(probe[out.token(s_greedy)]).margin(1e-6));
      CHECK(out.sampled_logprobs(s_greedy)[0] == Approx(*std::max_element(probe.begin(), probe.end())).margin(1e-6));
      auto const lg = out.logits(logits);
      CHECK(out.sampled_logprobs(s_temp)[0] == Approx(log_softmax_at(lg, out.token(s_temp), 0.7)).margin(1e-5));
      CHECK(out.sampled_logprobs(s_topk)[0] == Approx(log_softmax_at(lg, out.token(s_topk), 1.3)).margin(1e-5));

      // Under a logit mask the distribution is renormalized over the allowed ids.
      auto g = ctx.forward();
      g.input({5});
      g.mask(allow);
      auto const s_masked = g.sample({0}, samplers::multinomial());
      auto const lg2 = g.probe(0, Logits{});
      ForwardOutput const out2 = co_await g.execute();
      CHECK(allow.allows(out2.token(s_masked)));
      CHECK(out2.sampled_logprobs(s_masked)[0] == Approx(log_softmax_at(out2.logits(lg2), out2.token(s_masked), 1.0, &allow)).margin(1e-5));
      CHECK(out2.sampled_logprobs(s_masked)[0] > out2.logits(lg2)[out2.token(s_masked)] - 1e9f);
    };
    e.block_on(prog(e, prompt));
  }

  SECTION("ctx.generate: each logprob equals a Logprob probe of that token after the same prefix") {
    auto gen = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_return co_await ctx.generate(samplers::multinomial(), max_len(10));
    };
    Generation const g = e.block_on(gen(e, prompt));
    REQUIRE(g.logprobs.size() == g.tokens.size());
    auto probe_each = [](Engine<Tiny>& e, std::vector<std::uint32_t> p, Generation g) -> Task<void> {
      for (std::size_t i = 0; i < g.tokens.size(); ++i) {
        auto ctx = e.create_context();
        std::vector<std::uint32_t> prefix = p;
        prefix.insert(prefix.end(), g.tokens.begin(), g.tokens.begin() + static_cast<long>(i));
        auto f = ctx.forward();
        f.input(prefix);
        auto const h = f.probe(prefix.size() - 1, Logprob{g.tokens[i]});
        ForwardOutput const out = co_await f.execute();
        // The probe computes the row in a prefill of many rows, generate in a decode of one: the host GEMM may
        // round differently in the last bits.
        CHECK(g.logprobs[i] == Approx(out.logprobs(h)[0]).margin(1e-4));
        CHECK(g.logprobs[i] <= 0.0f);
      }
    };
    e.block_on(probe_each(e, prompt, g));
  }

  SECTION("speculative generation reports the same log-probabilities as plain greedy") {
    std::vector<std::uint32_t> p = prompt;
    for (int k = 0; k < 3; ++k) p.insert(p.end(), prompt.begin(), prompt.begin() + 6);  // repeats: drafts hit
    auto plain = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_return co_await ctx.generate(samplers::greedy(), max_len(24));
    };
    auto spec = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(p);
      NgramDrafter drafter(2);
      co_return co_await ctx.generate_with_drafter(drafter, max_len(24));
    };
    Generation const a = e.block_on(plain(e, p));
    Generation const b = e.block_on(spec(e, p));
    REQUIRE(a.tokens == b.tokens);
    REQUIRE(b.logprobs.size() == b.tokens.size());
    for (std::size_t i = 0; i < a.logprobs.size(); ++i) CHECK(b.logprobs[i] == Approx(a.logprobs[i]).margin(1e-4));
  }
}

TEST_CASE("RawContext::commit_full_working_pages commits every full working page at once", "[runtime][pages]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options(64, 16));
  auto prog = [](Engine<Tiny>& e, std::uint32_t seed) -> Task<void> {
    auto ctx = e.create_context();
    auto f = ctx.forward();
    f.input(testing::random_prompt(seed, 40));
    f.defer_commit();
    co_await f.execute();
    CHECK(ctx.page_table().committed_pages().empty());
    CHECK(ctx.page_table().working_token_count() == 40);
    auto const ids = ctx.token_ids();
    auto const working = std::vector<PageId>(ctx.page_table().working_pages().begin(), ctx.page_table().working_pages().end());

    auto const committed = ctx.inner().commit_full_working_pages();
    REQUIRE(committed.size() == 2);
    CHECK(committed == std::vector<PageId>(working.begin(), working.begin() + 2));  // no equal page elsewhere
    CHECK(std::vector<PageId>(ctx.page_table().committed_pages().begin(), ctx.page_table().committed_pages().end()) == committed);
    CHECK(ctx.page_table().working_token_count() == 8);
    CHECK(ctx.token_ids() == ids);
    CHECK(ctx.inner().commit_full_working_pages().empty());  // nothing full is left

    // The normal commit path: a second context with the same tokens shares the pages.
    auto twin = e.create_context();
    auto g = twin.forward();
    g.input(testing::random_prompt(seed, 40));
    g.defer_commit();
    co_await g.execute();
    std::size_t const free_before = e.pool().free_count();
    auto const shared = twin.inner().commit_full_working_pages();
    CHECK(shared == committed);
    CHECK(e.pool().free_count() == free_before + 2);  // its private copies went back to the pool
    for (PageId const id : committed) CHECK(e.pool().refcount(id) == 2);

    // Error path: a full working page whose positions are not above the committed ones.
    auto h = ctx.forward();
    std::vector<std::uint32_t> positions(8);
    for (std::uint32_t i = 0; i < 8; ++i) positions[i] = i;  // repeats positions 0..7
    h.input_at(testing::random_prompt(seed + 1, 8), positions);
    h.defer_commit();
    co_await h.execute();
    REQUIRE(ctx.page_table().working_token_count() == 16);
    auto const ids2 = ctx.token_ids();
    std::size_t const committed_before = ctx.page_table().committed_pages().size(), free2 = e.pool().free_count();
    CHECK_THROWS_WITH(ctx.inner().commit_full_working_pages(), Catch::Contains("<= largest committed position"));
    CHECK_THROWS_AS(ctx.inner().commit_full_working_pages(), InvalidState);
    CHECK(ctx.page_table().committed_pages().size() == committed_before);
    CHECK(ctx.page_table().working_token_count() == 16);
    CHECK(ctx.token_ids() == ids2);
    CHECK(e.pool().free_count() == free2);
  };
  e.block_on(prog(e, seed));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}
