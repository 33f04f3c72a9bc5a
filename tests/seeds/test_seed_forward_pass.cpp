// Seed 001, Pie's "The forward pass" page: every code snippet, transcribed into piecrust, with what its text
// documents asserted (what execute() does to the context, what each handle reads). Differences from Pie are
// listed in docs/runtime.md, "The seeds, snippet by snippet".
#include <catch2/catch.hpp>

#include "seed_support.hpp"

#include <cmath>
#include <numeric>
#include <vector>

using namespace piecrust;
using testing::Tiny;

namespace {

EngineOptions opts() { return testing::engine_options(256, 16); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

}  // namespace

TEST_CASE("What ctx.forward() does: prefill the pending tokens, reserve pages, run, read typed outputs, commit",
          "[seeds][forward]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(20, 30));  // pending: prefilled by the pass, before its own inputs
    auto const token_ids = prompt(21, 5);
    std::size_t const free_before = e.pool().free_count();

    auto fwd = ctx.forward();
    fwd.input(token_ids);                                     // auto-derived positions
    auto const h = fwd.sample({0}, samplers::greedy());       // SampleHandle for position 0
    auto const d = fwd.probe(0, Distribution{1.0f, 32});
    auto const lg = fwd.probe(0, Logits{});
    ForwardOutput const out = co_await fwd.execute();

    std::uint32_t const token = out.token(h);
    auto const [ids, probs] = out.distribution(d);
    REQUIRE(ids.size() == 32);
    CHECK(token == ids[0]);
    CHECK(token == testing::argmax(out.logits(lg)));  // index 0 is the pass's first input, not a pending token
    CHECK(std::is_sorted(probs.begin(), probs.end(), std::greater<>()));
    auto const want = testing::softmax(out.logits(lg));
    for (std::size_t i = 0; i < ids.size(); ++i) CHECK(probs[i] == Approx(want[ids[i]]).margin(1e-6));

    // 1. pending tokens prefilled, 2. pages reserved, 5. outputs returned, then full pages committed.
    CHECK(ctx.pending_tokens().empty());
    CHECK(ctx.seq_len() == 35);
    CHECK(ctx.page_table().committed_pages().size() == 2);
    CHECK(ctx.page_table().working_token_count() == 3);
    CHECK(e.pool().free_count() == free_before - 3);
    CHECK(e.stats().steps == 1);
    CHECK(testing::positions_of(ctx).back() == 34u);
    CHECK_THROWS_AS(fwd.execute(), InvalidState);  // .execute() once
  };
  e.block_on(prog(e));
}

TEST_CASE("Outputs: logits, distribution, logprob, logprobs and entropy through typed handles", "[seeds][forward]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto const p = prompt(22, 11);
    std::uint32_t const target_token_id = 17, id_a = 3, id_b = 200;
    auto fwd = ctx.forward();
    fwd.input(p);
    std::size_t const last = p.size() - 1;
    auto const logits_h = fwd.probe(last, Logits{});
    auto const dist_h = fwd.probe(last, Distribution{1.0f, 32});
    auto const lp_h = fwd.probe(last, Logprob{target_token_id});  // log p(target_token_id)
    auto const lps_h = fwd.probe(last, Logprobs{{id_a, id_b}});   // log p of each
    auto const ent_h = fwd.probe(last, Entropy{});
    ForwardOutput const out = co_await fwd.execute();

    std::span<float const> const logits = out.logits(logits_h);  // floats, not Pie's raw f32 LE bytes
    REQUIRE(logits.size() == 512);
    auto const p_of = testing::softmax(logits);
    auto const dist = out.distribution(dist_h);  // ids + probs: views into the output, not owned vectors
    CHECK(dist.first.size() == 32);
    CHECK(dist.second[0] == Approx(p_of[dist.first[0]]).margin(1e-6));
    std::span<float const> const logp = out.logprobs(lp_h);  // length 1
    REQUIRE(logp.size() == 1);
    CHECK(logp[0] == Approx(std::log(p_of[target_token_id])).margin(1e-4));
    std::span<float const> const logps = out.logprobs(lps_h);  // length K; both kinds read with logprobs()
    REQUIRE(logps.size() == 2);
    CHECK(logps[0] == Approx(std::log(p_of[id_a])).margin(1e-4));
    CHECK(logps[1] == Approx(std::log(p_of[id_b])).margin(1e-4));
    double entropy = 0.0;
    for (double const q : p_of) entropy -= q > 0.0 ? q * std::log(q) : 0.0;
    CHECK(out.entropy(ent_h) == Approx(entropy).margin(1e-4));

    // Handles are typed (out.token(probe_handle) does not compile, tests/compile_fail); a handle read on
    // another pass's output is refused (Pie: None).
    auto other = ctx.forward();
    other.input({1});
    auto const foreign = other.probe(0, Entropy{});
    CHECK_THROWS_AS(out.entropy(foreign), InvalidArgument);
  };
  e.block_on(prog(e));
}

TEST_CASE("The Forward builder: each method of the table, chained", "[seeds][forward]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(23, 8));
    co_await ctx.flush();
    std::vector<std::uint32_t> const tokens{5, 6, 7};
    std::vector<std::uint32_t> const positions{8, 9, 10};
    auto fwd = ctx.forward();
    fwd.input({4})                                  // .input(tokens): auto positions (8)
        .input_at(tokens, positions)                // .input_at(tokens, positions): 8 again, 9, 10
        .attention_mask(AttentionMask::causal_rows(8, 4))
        .mask(LogitMask::allow({1, 2, 3}, 512));   // .mask(logit_brle): samplers only
    auto const s = fwd.sample({0, 3}, samplers::greedy());
    auto const pr = fwd.probe(3, Logits{});
    ForwardOutput const out = co_await fwd.execute();
    CHECK(testing::positions_of(ctx) == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10});
    auto const sampled = out.tokens(s);
    REQUIRE(sampled.size() == 2);
    for (std::uint32_t const t : sampled) CHECK((t >= 1 && t <= 3));
    CHECK(out.logits(pr).size() == 512);
  };
  e.block_on(prog(e));
}

TEST_CASE("Why drop down from generate(): generate() is the loop over forward() passes", "[seeds][forward]") {
  // ctx.generate(...) is a state machine over forward(): the same tokens as one greedy pass per token by hand.
  auto const p = prompt(24, 13);
  Engine<Tiny> a(testing::tiny_model(), opts());
  auto by_hand = [&](Engine<Tiny>& e) -> Task<std::vector<std::uint32_t>> {
    auto ctx = e.create_context();
    std::vector<std::uint32_t> out, next = p;
    for (int i = 0; i < 8; ++i) {
      auto fwd = ctx.forward();
      fwd.input(next);
      auto const h = fwd.sample({next.size() - 1}, samplers::greedy());
      ForwardOutput const o = co_await fwd.execute();
      out.push_back(o.token(h));
      next = {out.back()};
    }
    co_return out;
  };
  Engine<Tiny> b(testing::tiny_model(), opts());
  auto looped = [&](Engine<Tiny>& e) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.fill(p);
    co_return co_await ctx.generate(samplers::greedy(), max_len(8));
  };
  Generation const g = b.block_on(looped(b));
  CHECK(g.tokens == a.block_on(by_hand(a)));
  CHECK(g.passes == 8);
}
