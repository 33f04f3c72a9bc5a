// Seed 004, Pie's "Core Concepts" page: every code snippet, transcribed into piecrust, with what its text
// documents asserted (positions, pages committed or shared, what each call returns). Where piecrust differs
// from Pie on purpose, the test pins piecrust's behaviour; docs/runtime.md ("The seeds, snippet by snippet")
// lists the differences.
#include <catch2/catch.hpp>

#include "seed_support.hpp"

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

using namespace piecrust;
using testing::Tiny;

namespace {

EngineOptions opts(std::size_t pages = 256) { return testing::engine_options(pages, 16); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

// The Pie snippet's `generate(sampler, stop)` with a sampler and a stop condition chosen once.
SamplerSpec sampler() { return samplers::top_k(Temperature{0.8f}, TopK{40}); }
StopCondition stop() { return max_len(12) || ends_with_any({testing::im_end}); }

}  // namespace

TEST_CASE("Context Lifecycle: fill buffers, flush prefills, generate decodes", "[seeds][lifecycle]") {
  auto e = testing::chat_engine();
  auto lifecycle = [](Engine<Tiny>& e, bool flush) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.fill_system("System prompt");  // Tokens buffered
    ctx.fill_user("User message");     // More tokens buffered
    std::size_t const filled = ctx.pending_tokens().size();
    CHECK(filled > 16);
    CHECK(ctx.seq_len() == 0);  // nothing computed yet
    CHECK(e.stats().steps == 0);
    if (flush) {
      co_await ctx.flush();  // Prefill: tokens processed, KV cache populated
      CHECK(ctx.seq_len() == filled);
      CHECK(ctx.pending_tokens().empty());
      CHECK(ctx.page_table().committed_pages().size() == filled / 16);  // full pages are committed
      CHECK(e.stats().tokens == filled);
    }
    co_return co_await ctx.generate(sampler(), stop());  // Decode loop
  };
  Generation const flushed = e->block_on(lifecycle(*e, true));
  auto fresh = testing::chat_engine();
  Generation const direct = fresh->block_on(lifecycle(*fresh, false));
  // The note: generate() processes pending tokens itself, so flushing first changes nothing in the output.
  CHECK(!flushed.tokens.empty());
  CHECK(flushed.tokens == direct.tokens);
  CHECK(flushed.logprobs == direct.logprobs);
}

TEST_CASE("Context Lifecycle: generate and decode_step_dist continue from a flush with nothing pending",
          "[seeds][lifecycle]") {
  // Token fills leave no turn open, so after a full flush nothing at all is pending: piecrust continues from
  // the next-token logits the flush kept (one vocabulary row in the model's space), not from a pending token.
  auto run = [](bool flush, SamplerSpec s) {
    Engine<Tiny> e(testing::tiny_model(), opts());
    auto prog = [](Engine<Tiny>& e, bool flush, SamplerSpec s) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(prompt(40, 37));
      if (flush) {
        co_await ctx.flush();
        CHECK(ctx.pending_tokens().empty());
        CHECK(ctx.seq_len() == 37);
      }
      co_return co_await ctx.generate(s, max_len(10));
    };
    Generation g = e.block_on(prog(e, flush, s));
    CHECK(e.pool().free_count() == e.pool().num_pages());
    return g;
  };
  for (SamplerSpec const& s : {samplers::greedy(), samplers::top_p(Temperature{0.9f}, TopP{0.8f})}) {
    Generation const after_flush = run(true, s);
    Generation const direct = run(false, s);
    CHECK(after_flush.tokens.size() == 10);
    CHECK(after_flush.tokens == direct.tokens);  // the same draws of the same random stream
    CHECK(after_flush.logprobs == direct.logprobs);
    CHECK(after_flush.passes == direct.passes - 1);  // the first token came from the kept row, not a pass
  }

  Engine<Tiny> e(testing::tiny_model(), opts());
  auto dist = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    CHECK_THROWS_AS(co_await ctx.generate(samplers::greedy(), max_len(4)), InvalidState);  // empty: nothing to continue from
    auto const p = prompt(41, 20);
    ctx.fill(p);
    co_await ctx.flush();
    auto const dist = co_await ctx.decode_step_dist();
    auto const& [ids, probs] = dist;
    auto probe = e.create_context();
    auto const logits = co_await testing::logits_after(probe, p);
    auto const want = testing::softmax(logits);
    REQUIRE(ids.size() == 512);
    CHECK(ids[0] == testing::argmax(logits));
    for (std::size_t i = 0; i < ids.size(); ++i) CHECK(probs[i] == Approx(want[ids[i]]).margin(1e-6));
    // Reading the kept row changes nothing: the same row again, and the context as it was.
    auto const again = co_await ctx.decode_step_dist(1.0f, 4);
    CHECK(std::vector<std::uint32_t>(ids.begin(), ids.begin() + 4) == again.first);
    CHECK(ctx.seq_len() == 20);
    // A rollback of the last token drops the kept row: it no longer describes what comes next.
    ctx.inner().truncate_working_page_tokens(1);
    CHECK_THROWS_AS(co_await ctx.decode_step_dist(), InvalidState);
  };
  e.block_on(dist(e));
}

TEST_CASE("Forking (Copy-on-Write Contexts): forks share the flushed prefix and generate concurrently", "[seeds][fork]") {
  auto e = testing::chat_engine();
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto common = e.create_context();
    common.fill_system("You are a helpful assistant. Answer in one short sentence, please.");
    co_await common.flush();  // Commit shared prefix to KV cache
    std::size_t const prefix = common.seq_len();
    REQUIRE(prefix > 32);
    std::size_t const prefill_tokens = e.stats().tokens;
    CHECK(prefill_tokens == prefix);
    auto const committed = common.page_table().committed_pages();
    std::vector<PageId> const shared(committed.begin(), committed.end());

    auto ctx1 = common.fork();  // Shares KV cache with common
    auto ctx2 = common.fork();  // Also shares — no extra prefill
    for (PageId const id : shared) CHECK(e.pool().refcount(id) == 3);
    CHECK(ctx1.token_ids() == common.token_ids());

    ctx1.fill_user("Question A");
    ctx2.fill_user("Question B");
    std::size_t const a_pending = ctx1.pending_tokens().size(), b_pending = ctx2.pending_tokens().size();
    std::size_t const turn = e.encode_with_special_tokens(e.chat_template().generation_prompt_markup()).size();
    // Both generate concurrently, sharing the system prompt KV cache
    std::vector<Task<Generation>> both;
    both.push_back(ctx1.generate(sampler(), stop()));
    both.push_back(ctx2.generate(sampler(), stop()));
    std::size_t const steps_before = e.stats().steps;
    auto const gens = co_await e.when_all(std::move(both));
    // Each fork's own view: the parent is untouched, the forks hold their own question and answer.
    CHECK(common.seq_len() == prefix);
    CHECK(common.pending_tokens().empty());
    CHECK(ctx1.token_ids().size() == prefix + a_pending + turn + gens[0].tokens.size());  // turn: the assistant's markup
    CHECK(ctx2.token_ids().size() == prefix + b_pending + turn + gens[1].tokens.size());
    // Zero extra prefill for the shared prefix: the forks computed only their own tokens, in shared steps.
    std::size_t const own = a_pending + b_pending + 2 * turn + gens[0].tokens.size() + gens[1].tokens.size() - 2;
    CHECK(e.stats().tokens - prefill_tokens == own);
    CHECK(e.stats().steps - steps_before == std::max(gens[0].tokens.size(), gens[1].tokens.size()));
  };
  e->block_on(prog(*e));
  CHECK(e->pool().free_count() == e->pool().num_pages());
}

TEST_CASE("Forking (Copy-on-Write Contexts): forks of a flushed context continue from its kept logits", "[seeds][fork]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto common = e.create_context();
    common.fill(prompt(42, 30));
    co_await common.flush();
    auto a = common.fork(), b = common.fork();
    std::size_t const tokens_before = e.stats().tokens;
    std::vector<Task<Generation>> greedy;
    greedy.push_back(a.generate(samplers::greedy(), max_len(6)));
    greedy.push_back(b.generate(samplers::greedy(), max_len(6)));
    auto const g = co_await e.when_all(std::move(greedy));
    CHECK(g[0].tokens == g[1].tokens);  // one row, shared: the same first token and the same continuation
    CHECK(e.stats().tokens - tokens_before == 2 * 5);  // no prefill again, only the 5 tokens each fed back
    // The parent's kept row is still there after its forks used theirs.
    Generation const parent = co_await common.generate(samplers::greedy(), max_len(6));
    CHECK(parent.tokens == g[0].tokens);
  };
  e.block_on(prog(e));
}

TEST_CASE("Export / Import: a prefix exported after flush is imported with no prefill", "[seeds][store]") {
  // The snippet's ctx.queue().export_kv_pages(&ctx.kv_pages, "my-prefix") is ctx.export_kv_pages(store, name);
  // Context::from_imported_state(&model, pages, token_ids, last_len) is Context::from_imported(engine, store,
  // name): the entry carries the token ids and positions. piecrust exports committed (full) pages only.
  auto const long_system_prompt = prompt(43, 48 + 5);
  auto const question = prompt(44, 7);
  MemoryStore store;
  std::vector<std::uint32_t> imported_tokens;
  Generation from_import;
  std::size_t imported_prefill = 0;
  {
    Engine<Tiny> e(testing::tiny_model(), opts());
    auto first = [&](Engine<Tiny>& e) -> Task<void> {
      auto ctx = e.create_context();
      ctx.fill(long_system_prompt);
      co_await ctx.flush();
      ctx.export_kv_pages(store, "my-prefix");  // Export KV pages for later reuse
      std::vector<std::uint8_t> const serialized_state{1, 2, 3};
      store.store_set("prefix_state", serialized_state);  // Save metadata to persistent key-value store
      co_return;
    };
    e.block_on(first(e));
    auto later = [&](Engine<Tiny>& e) -> Task<void> {
      auto ctx = Context<Tiny>::from_imported(e, store, "my-prefix");  // Restore from cache (no re-prefill needed!)
      imported_tokens = ctx.token_ids();
      CHECK(ctx.seq_len() == 48);  // the three full pages; the tail of 5 was a working page
      std::size_t const before = e.stats().tokens;
      ctx.fill(std::span(long_system_prompt).subspan(48));
      ctx.fill(question);  // Only this needs prefill
      from_import = co_await ctx.generate(samplers::greedy(), max_len(8));
      imported_prefill = e.stats().tokens - before;
    };
    e.block_on(later(e));
    CHECK(store.store_get("prefix_state") == std::vector<std::uint8_t>{1, 2, 3});
  }
  CHECK(imported_tokens == std::vector<std::uint32_t>(long_system_prompt.begin(), long_system_prompt.begin() + 48));
  CHECK(imported_prefill == 5 + question.size() + 7);  // the tail, the question, then one token per step
  // The same continuation as a context that computed everything itself.
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto whole = [&](Engine<Tiny>& e) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.fill(long_system_prompt);
    ctx.fill(question);
    co_return co_await ctx.generate(samplers::greedy(), max_len(8));
  };
  CHECK(e.block_on(whole(e)).tokens == from_import.tokens);
}

TEST_CASE("Masking / Eviction: mask the middle, drop its pages, keep the sink and the window", "[seeds][window]") {
  Engine<Tiny> e(testing::tiny_model(), opts(12));
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    std::size_t const sink_size = 4, window_size = 32;
    ctx.fill(prompt(45, 8));
    std::size_t max_pages = 0, dropped_total = 0;
    for (int round = 0; round < 30; ++round) {
      Generation const g = co_await ctx.generate(samplers::greedy(), max_len(8));
      REQUIRE(g.tokens.size() == 8);
      // Sliding window: keep initial sink tokens + recent window, evict the rest
      std::size_t const committed_len = ctx.seq_len();
      if (committed_len > sink_size + window_size) {
        std::size_t const evict_start = sink_size;
        std::size_t const evict_end = committed_len - window_size;
        ctx.mask_token_range(evict_start, evict_end, true);  // Mask old tokens
        std::size_t const free_before = e.pool().free_count();
        std::size_t const dropped = ctx.drop_masked_kv_pages();  // Free their memory
        CHECK(e.pool().free_count() == free_before + dropped);
        dropped_total += dropped;
      }
      max_pages = std::max(max_pages, e.pool().num_pages() - e.pool().free_count());
      // The sink's slots survive every drop, at their positions.
      auto const pos = testing::positions_of(ctx);
      for (std::uint32_t i = 0; i < sink_size; ++i) CHECK(pos[i] == i);
    }
    CHECK(dropped_total > 5);
    CHECK(max_pages <= 5);  // bounded memory: sink page + window pages + the page being written
    CHECK(ctx.page_table().tokens().back().position >= 8 + 30 * 8 - 2);  // positions keep growing
  };
  e.block_on(prog(e));
}

TEST_CASE("Built-in Samplers: Pie's argument order, typed so that no value can be swapped", "[seeds][sampler]") {
  // Sampler::top_p(temperature, top_p) and friends, in Pie's order; piecrust's order (temperature last) names
  // the same sampler, and plain numbers do not compile (tests/compile_fail/swapped_sampler_args.cpp).
  SamplingParams const p = samplers::top_p(Temperature{0.7f}, TopP{0.9f}).params();
  CHECK(p.kind == SamplingKind::top_p);
  CHECK(p.temperature == 0.7f);
  CHECK(p.top_p == 0.9f);
  CHECK(samplers::top_p(TopP{0.9f}, Temperature{0.7f}).params().temperature == 0.7f);
  SamplingParams const k = samplers::top_k(Temperature{0.5f}, TopK{40}).params();
  CHECK((k.kind == SamplingKind::top_k && k.temperature == 0.5f && k.top_k == 40));
  SamplingParams const m = samplers::min_p(Temperature{1.2f}, MinP{0.05f}).params();
  CHECK((m.kind == SamplingKind::min_p && m.temperature == 1.2f && m.min_p == 0.05f));
  SamplingParams const kp = samplers::top_k_top_p(Temperature{0.6f}, TopK{20}, TopP{0.95f}).params();
  CHECK((kp.kind == SamplingKind::top_k_top_p && kp.temperature == 0.6f && kp.top_k == 20 && kp.top_p == 0.95f));
  SamplingParams const r = samplers::reasoning().params();  // Preset: top_k_top_p(0.6, 20, 0.95)
  CHECK((r.kind == kp.kind && r.temperature == kp.temperature && r.top_k == kp.top_k && r.top_p == kp.top_p));

  // greedy() always picks the highest probability; each sampler draws inside its own cut.
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(46, 12);
    auto ctx = e.create_context();
    auto const logits = co_await testing::logits_after(ctx, p);
    auto const probs = testing::softmax(logits, 0.6);
    std::vector<std::uint32_t> order(probs.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return probs[a] > probs[b]; });
    for (SamplerSpec const& s : {samplers::greedy(), samplers::top_k(Temperature{0.6f}, TopK{3}), samplers::reasoning()}) {
      for (int draw = 0; draw < 20; ++draw) {
        auto probe = e.create_context();
        auto fwd = probe.forward();
        fwd.input(p);
        auto const h = fwd.sample({p.size() - 1}, s);
        ForwardOutput const out = co_await fwd.execute();
        auto const rank = std::find(order.begin(), order.end(), out.token(h)) - order.begin();
        if (s.params().kind == SamplingKind::greedy) CHECK(rank == 0);
        if (s.params().kind == SamplingKind::top_k) CHECK(rank < 3);
        if (s.params().kind == SamplingKind::top_k_top_p) CHECK(rank < 20);
      }
    }
  };
  e.block_on(prog(e));
}

TEST_CASE("Custom Sampler: Sampler::Custom { temperature, sampler } is SamplerSpec::custom(Temperature, sampler)",
          "[seeds][sampler]") {
  struct MySampler {
    std::vector<std::size_t>* sizes;
    std::vector<float>* first_probs;
    std::uint32_t sample(std::span<std::uint32_t const> ids, std::span<float const> probs) {
      sizes->push_back(ids.size());
      first_probs->push_back(probs[0]);
      return ids[0];  // placeholder
    }
  };
  std::vector<std::size_t> sizes;
  std::vector<float> firsts;
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(47, 10);
    auto ref = e.create_context();
    auto const logits = co_await testing::logits_after(ref, p);
    for (float const t : {0.0f, 1.0f, 10.0f}) {
      auto const sampler = SamplerSpec::custom(Temperature{t}, MySampler{&sizes, &firsts});
      auto ctx = e.create_context();
      auto fwd = ctx.forward();
      fwd.input(p);
      auto const h = fwd.sample({p.size() - 1}, sampler);
      ForwardOutput const out = co_await fwd.execute();
      CHECK(out.token(h) == testing::argmax(logits));  // ids[0] is the most likely id at every temperature
      if (t == 0.0f) {
        CHECK(sizes.back() == 1);  // the T -> 0 limit: the most likely id alone, certain
        CHECK(firsts.back() == 1.0f);
        CHECK(out.sampled_logprobs(h)[0] == 0.0f);
      } else {
        CHECK(sizes.back() == 512);
        CHECK(firsts.back() == Approx(testing::softmax(logits, t)[out.token(h)]).margin(1e-6));
        CHECK(out.sampled_logprobs(h)[0] == Approx(std::log(firsts.back())).margin(1e-5));
      }
    }
  };
  e.block_on(prog(e));
  REQUIRE(firsts.size() == 3);
  CHECK(firsts[2] < firsts[1] - 1e-3f);  // a higher temperature flattens the distribution the sampler is handed
  CHECK_THROWS_WITH(SamplerSpec::custom(Temperature{-1.0f}, MySampler{&sizes, &firsts}),
                    Catch::Contains("temperature = -1"));
  CHECK_THROWS_AS(SamplerSpec::custom(Temperature{NAN}, MySampler{&sizes, &firsts}), InvalidArgument);
}

TEST_CASE("Stop Conditions: max_len(n).or(ends_with_any(eos)) is max_len(n) || ends_with_any(eos)", "[seeds][stop]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(48, 9);
    auto free_run = e.create_context();
    free_run.fill(p);
    Generation const ten = co_await free_run.generate(samplers::greedy(), max_len(10));
    REQUIRE(ten.tokens.size() == 10);
    std::uint32_t const eos = ten.tokens[3];
    std::size_t const first_eos = std::find(ten.tokens.begin(), ten.tokens.end(), eos) - ten.tokens.begin();
    std::vector<std::uint32_t> const eos_tokens{eos};
    auto ctx = e.create_context();
    ctx.fill(p);
    auto const stop = max_len(256) || ends_with_any(eos_tokens);
    Generation const g = co_await ctx.generate(samplers::greedy(), stop);
    CHECK(g.tokens.size() == first_eos + 1);  // the stop token is part of the output, as in Pie
    CHECK(g.tokens.back() == eos);
    auto capped = e.create_context();
    capped.fill(p);
    auto const cap = max_len(2) || ends_with_any(eos_tokens);
    std::size_t const capped_size = (co_await capped.generate(samplers::greedy(), cap)).tokens.size();
    CHECK(capped_size == std::min<std::size_t>(2, first_eos + 1));
  };
  e.block_on(prog(e));
}

TEST_CASE("Low-Level Decode: decode_step_dist returns the full distribution before sampling", "[seeds][decode]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(49, 14);
    auto ref = e.create_context();
    auto const logits = co_await testing::logits_after(ref, p);
    auto ctx = e.create_context();
    ctx.fill(p);
    auto const dist = co_await ctx.decode_step_dist();
    auto const& [ids, probs] = dist;  // dist.ids, dist.probs
    REQUIRE(ids.size() == 512);
    CHECK(ids[0] == testing::argmax(logits));
    CHECK(std::is_sorted(probs.begin(), probs.end(), std::greater<>()));
    CHECK(std::accumulate(probs.begin(), probs.end(), 0.0) == Approx(1.0).margin(1e-4));
    auto const want = testing::softmax(logits);
    for (std::size_t i = 0; i < 8; ++i) CHECK(probs[i] == Approx(want[ids[i]]).margin(1e-6));
    // The pending tokens were prefilled; the call kept their next-token logits, so it can be asked again and
    // generate() continues from them.
    CHECK(ctx.seq_len() == p.size());
    CHECK(ctx.pending_tokens().empty());
    auto const again = co_await ctx.decode_step_dist(1.0f, 8);
    CHECK(again.first == std::vector<std::uint32_t>(ids.begin(), ids.begin() + 8));
    CHECK(again.second == std::vector<float>(probs.begin(), probs.begin() + 8));
    Generation const g = co_await ctx.generate(samplers::greedy(), max_len(3));
    REQUIRE(g.tokens.size() == 3);
    CHECK(g.tokens[0] == ids[0]);
    // Best-of-N style: pick from the distribution by hand, feed it, and continue.
    auto other = e.create_context();
    other.fill(p);
    auto const first = co_await other.decode_step_dist(1.0f, 2);
    other.fill({first.first[1]});
    Generation const second_best = co_await other.generate(samplers::greedy(), max_len(2));
    CHECK(other.token_ids()[p.size()] == first.first[1]);
    CHECK(second_best.tokens.size() == 2);
  };
  e.block_on(prog(e));
}

TEST_CASE("Speculative Decoding: generate_with_drafter verifies drafts and equals greedy", "[seeds][draft]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e, bool flush) -> Task<std::pair<Generation, Generation>> {
    // A repetitive prompt, so that prompt lookup has something to propose.
    std::vector<std::uint32_t> p;
    for (int i = 0; i < 6; ++i) {
      for (std::uint32_t const t : {11u, 22u, 33u, 44u, 55u}) p.push_back(t);
    }
    auto plain = e.create_context();
    plain.fill(p);
    Generation const greedy = co_await plain.generate(samplers::greedy(), max_len(24));
    auto ctx = e.create_context();
    ctx.fill(p);
    if (flush) co_await ctx.flush();  // nothing pending: the first token comes from the kept logits
    NgramDrafter drafter(3, 6);
    Generation const spec = co_await ctx.generate_with_drafter(drafter, max_len(24));
    co_return std::pair{greedy, spec};
  };
  for (bool const flush : {false, true}) {
    auto const [greedy, spec] = e.block_on(prog(e, flush));
    CHECK(spec.tokens == greedy.tokens);
    CHECK(spec.passes <= greedy.passes - (flush ? 1 : 0));  // after a flush the first token costs no pass
  }
}
