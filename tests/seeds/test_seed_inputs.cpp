// Seed 000, Pie's "Inputs: tokens, positions, masks" page: every code snippet, transcribed into piecrust, with
// what its text documents asserted. Where the page contradicts itself (the sliding-window row's polarity) or
// where piecrust chose differently (automatic positions after explicit ones, the sliding-window recipe's
// release_working_pages), the test pins piecrust's documented choice: docs/runtime.md, "The seeds, snippet by
// snippet".
#include <catch2/catch.hpp>

#include "seed_support.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

using namespace piecrust;
using testing::Tiny;

namespace {

EngineOptions opts(std::size_t pages = 256) { return testing::engine_options(pages, 16); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }
constexpr std::size_t vocab_size = 512;

// Token ids and rows built outside co_await expressions (GCC 12 cannot keep a braced list's array alive across
// a suspension in one full-expression).
template <class... T>
std::vector<std::uint32_t> ids(T... t) {
  return {static_cast<std::uint32_t>(t)...};
}
std::vector<AttentionMask> one_row(AttentionMask row) {
  std::vector<AttentionMask> rows;
  rows.push_back(std::move(row));
  return rows;
}

float max_abs_diff(std::vector<float> const& a, std::vector<float> const& b) {
  float d = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

// The logits at one explicit-position input of a pass over `ctx` (rows: its attention rows, or none).
Task<std::vector<std::vector<float>>> logits_at(Context<Tiny>& ctx, std::vector<std::uint32_t> tokens,
                                                std::vector<std::uint32_t> positions, std::vector<AttentionMask> rows) {
  auto fwd = ctx.forward();
  fwd.input_at(tokens, positions);
  if (!rows.empty()) fwd.attention_mask(std::move(rows));
  std::vector<ProbeHandle<Logits>> hs;
  for (std::size_t i = 0; i < tokens.size(); ++i) hs.push_back(fwd.probe(i, Logits{}));
  ForwardOutput const out = co_await fwd.execute();
  std::vector<std::vector<float>> rows_out;
  for (auto const h : hs) rows_out.emplace_back(out.logits(h).begin(), out.logits(h).end());
  co_return rows_out;
}

}  // namespace

TEST_CASE("Tokens with auto-positions: 100 tokens, then input(&[a, b, c]) lands at 100, 101, 102", "[seeds][positions]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(1, 100));
    co_await ctx.flush();
    REQUIRE(ctx.seq_len() == 100);
    std::vector<std::uint32_t> const token_ids{7, 8, 9};
    auto fwd = ctx.forward();
    fwd.input(token_ids);
    auto const h = fwd.sample({0}, samplers::greedy());  // Sampler::Argmax at input 0
    auto const logits = fwd.probe(0, Logits{});
    ForwardOutput const out = co_await fwd.execute();
    auto const pos = testing::positions_of(ctx);
    CHECK(std::vector<std::uint32_t>(pos.end() - 3, pos.end()) == std::vector<std::uint32_t>{100, 101, 102});
    CHECK(out.token(h) == testing::argmax(out.logits(logits)));

    // Pending tokens are "existing tokens" too: they are prefilled first, the inputs follow them, and the
    // pass's indices (sample, probe, attention rows) count its own inputs only.
    ctx.fill({1, 2});
    auto next = ctx.forward();
    next.input({3});
    auto const at0 = next.probe(0, Logits{});
    ForwardOutput const o = co_await next.execute();
    auto const after = testing::positions_of(ctx);
    CHECK(std::vector<std::uint32_t>(after.end() - 3, after.end()) == std::vector<std::uint32_t>{103, 104, 105});
    CHECK(ctx.token_ids().back() == 3u);
    CHECK(o.logits(at0).size() == vocab_size);
  };
  e.block_on(prog(e));
}

TEST_CASE("Tokens with explicit positions: sequential, a gap, the same position twice", "[seeds][positions]") {
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto const tokens = prompt(2, 6);
    // Standard: sequential positions from where the (empty) context left off: the automatic positions.
    std::vector<std::uint32_t> positions(tokens.size());
    for (std::uint32_t i = 0; i < positions.size(); ++i) positions[i] = i;
    auto explicit_ctx = e.create_context(), auto_ctx = e.create_context();
    auto const by_position = co_await logits_at(explicit_ctx, tokens, positions, {});
    auto const automatic = co_await testing::logits_after(auto_ctx, tokens);
    CHECK(max_abs_diff(by_position.back(), automatic) < 1e-4f);  // (6 logits rows against 1: the GEMM's rounding)
    CHECK(testing::positions_of(explicit_ctx) == testing::positions_of(auto_ctx));

    // Custom: gap in the middle. The positions are recorded as given and change what the model computes.
    std::vector<std::uint32_t> const custom_positions{0, 1, 2, 10, 11, 12};
    auto gap = e.create_context();
    auto const with_gap = co_await logits_at(gap, tokens, custom_positions, {});
    CHECK(testing::positions_of(gap) == custom_positions);
    CHECK(max_abs_diff(with_gap.back(), automatic) > 1e-2f);

    // Custom: same position twice (two competing draft tokens at one slot). With rows that hide the drafts
    // from each other, each one's logits are what it gives alone at that position.
    auto base = e.create_context();
    base.fill(prompt(3, 5));
    co_await base.flush();
    auto alone = base.fork();
    std::uint32_t const draft_a = 40, draft_b = 41;
    std::vector<std::uint32_t> const competing{5, 5};
    std::vector<AttentionMask> rows{AttentionMask::causal(6), AttentionMask::from_runs({5, 1, 1})};  // b skips a
    auto const both = co_await logits_at(base, ids(draft_a, draft_b), competing, std::move(rows));
    CHECK(testing::positions_of(base) == std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 5});
    auto const b_alone = co_await logits_at(alone, ids(draft_b), ids(5), {});
    CHECK(max_abs_diff(both[1], b_alone[0]) < 1e-4f);
    CHECK(max_abs_diff(both[0], both[1]) > 1e-2f);
  };
  e.block_on(prog(e));
}

TEST_CASE("Tokens with auto-positions: after explicit positions, one past the largest position held",
          "[seeds][positions]") {
  // piecrust's rule for "the engine assigns positions sequentially after the context's existing tokens":
  // the next automatic position is one past the largest position the context holds (committed ever, or in its
  // working pages now). It is the docs' "100 tokens -> 100, 101, 102" whenever the positions are 0 .. n-1;
  // after gaps, repeats or dropped pages it never reuses a position, where counting tokens would.
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto next_auto = [](Context<Tiny>& ctx) -> Task<std::uint32_t> {
      auto fwd = ctx.forward();
      fwd.input({1});
      co_await fwd.execute();
      co_return ctx.page_table().tokens().back().position;
    };
    auto gap = e.create_context();
    co_await logits_at(gap, prompt(4, 6), ids(0, 1, 2, 10, 11, 12), {});
    std::uint32_t const gap_next = co_await next_auto(gap);  // (never co_await inside CHECK)
    CHECK(gap_next == 13u);  // counting tokens would give 6

    auto repeat = e.create_context();
    repeat.fill(prompt(5, 5));
    co_await repeat.flush();
    co_await logits_at(repeat, ids(40, 41), ids(5, 5), {});
    std::uint32_t const repeat_next = co_await next_auto(repeat);  // (never co_await inside CHECK)
    CHECK(repeat_next == 6u);  // counting tokens would give 7

    auto reorder = e.create_context();
    co_await logits_at(reorder, ids(1, 2, 3, 4), ids(3, 2, 1, 0), {});
    std::uint32_t const reorder_next = co_await next_auto(reorder);  // (never co_await inside CHECK)
    CHECK(reorder_next == 4u);  // one past the last token's position would give 1

    // A rollback takes the largest position away with its token.
    auto rollback = e.create_context();
    co_await logits_at(rollback, ids(1, 2, 3), ids(0, 1, 9), {});
    rollback.inner().truncate_working_page_tokens(1);
    std::uint32_t const rollback_next = co_await next_auto(rollback);  // (never co_await inside CHECK)
    CHECK(rollback_next == 2u);

    // Dropped pages keep their positions counted: the window moves on, no position is used twice.
    auto window = e.create_context();
    window.fill(prompt(6, 48));
    co_await window.flush();
    window.mask_token_range(0, 32);
    CHECK(window.drop_masked_kv_pages() == 2);
    CHECK(window.seq_len() == 16);
    std::uint32_t const window_next = co_await next_auto(window);  // (never co_await inside CHECK)
    CHECK(window_next == 48u);  // counting tokens would give 16
  };
  e.block_on(prog(e));
}

TEST_CASE("BRLE in one paragraph: [3, 2, 4, 1] is 0 0 0 | 1 1 | 0 0 0 0 | 1, read in each mask's polarity",
          "[seeds][masks]") {
  Brle const runs = Brle::from_runs({3, 2, 4, 1});
  std::vector<bool> bits;
  for (std::size_t i = 0; i < runs.size(); ++i) bits.push_back(runs.bit(i));
  CHECK(bits == std::vector<bool>{false, false, false, true, true, false, false, false, false, true});
  // Attention masks: 0 = attend, 1 = mask out.
  AttentionMask const row(runs);
  for (std::size_t i : {0, 1, 2, 5, 6, 7, 8}) CHECK(row.attends(i));
  for (std::size_t i : {3, 4, 9}) CHECK(row.masked(i));
  // Logit masks: 1 = allowed, 0 = forbidden (opposite polarity).
  LogitMask const logits(runs);
  for (std::uint32_t i : {3u, 4u, 9u}) CHECK(logits.allows(i));
  for (std::uint32_t i : {0u, 1u, 2u, 5u, 8u}) CHECK_FALSE(logits.allows(i));

  // Each input token gets one row, no longer than the positions it can see.
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(7, 9));
    co_await ctx.flush();
    auto fwd = ctx.forward();
    fwd.input({5});
    fwd.attention_mask({AttentionMask::from_runs({3, 2, 4, 2})});  // 11 > the 10 positions the token sees
    CHECK_THROWS_WITH(co_await fwd.execute(), Catch::Contains("row 0 has length 11 > KV length after the pass 10"));
    CHECK(ctx.seq_len() == 9);
    auto masked = ctx.fork(), causal = ctx.fork();
    auto row = one_row(AttentionMask::from_runs({3, 2, 4, 1}));
    auto const with_row = co_await logits_at(masked, ids(5), ids(9), std::move(row));
    auto const without = co_await logits_at(causal, ids(5), ids(9), {});
    CHECK(max_abs_diff(with_row[0], without[0]) > 1e-2f);  // positions 3, 4 and 9 (itself) are masked out
  };
  e.block_on(prog(e));
}

TEST_CASE("Sliding window: evict the oldest pages, attend to the last window, memory stays bounded", "[seeds][window]") {
  // The page's row `[evict_count, window_size]` ("mask out evicted, attend to window") is written in the
  // opposite polarity to its own convention (0 = attend): read as piecrust reads every row, it attends to the
  // evicted tokens and masks the window. piecrust's row is [0, evict_count, window_size] (AttentionMask::window).
  std::size_t const total = 40, window_size = 16, evict_count = total - window_size;
  AttentionMask const as_written = AttentionMask::from_runs({evict_count, window_size});
  CHECK(as_written.attends(0));
  CHECK(as_written.masked(total - 1));
  AttentionMask const piecrust_row = AttentionMask::from_runs({0, evict_count, window_size});
  AttentionMask const named = AttentionMask::window(total, window_size);
  for (std::size_t i = 0; i < total; ++i) CHECK(piecrust_row.attends(i) == named.attends(i));
  CHECK(named.attended_count() == window_size);

  // The recipe's raw.release_working_pages(evict_count / psize) frees the *newest* working pages, in Pie as
  // in piecrust: the oldest (evicted) tokens sit in committed pages, which it never reaches.
  Engine<Tiny> e(testing::tiny_model(), opts(64));
  auto literal = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(8, 40));
    co_await ctx.flush();  // pages: 2 committed (slots 0..31), 1 working (32..39)
    auto raw = ctx.inner();
    std::size_t const total_len = ctx.seq_len();
    std::size_t const psize = ctx.page_size();
    std::size_t const evict = total_len > 16 ? total_len - 16 : 0;
    std::size_t const pages_to_release = evict / psize;
    REQUIRE(pages_to_release == 1);
    auto const oldest = ctx.page_table().committed_pages()[0];
    raw.release_working_pages(pages_to_release);
    CHECK(ctx.seq_len() == 32);                                  // the 8 newest tokens are gone ...
    CHECK(ctx.page_table().committed_pages()[0] == oldest);      // ... the evicted oldest ones are all still there
    auto const p = prompt(8, 40);
    CHECK(ctx.token_ids() == std::vector<std::uint32_t>(p.begin(), p.begin() + 32));
  };
  e.block_on(literal(e));

  // The recipe's intent in piecrust: mask the evicted slots, drop the pages they fill wholly (the oldest), and
  // give the pass the window row. Its output equals the masked computation over every page kept.
  auto recipe = [](Engine<Tiny>& e) -> Task<void> {
    std::size_t const window = 32;
    auto evicting = e.create_context();
    evicting.fill(prompt(9, 20));
    co_await evicting.flush();
    auto keeping = evicting.fork();  // the reference: the same tokens, every page kept, the same rows' effect
    std::uint32_t tok = 3;
    std::size_t max_pages = 0;
    for (int step = 0; step < 120; ++step) {
      // The reference: one row over all of its slots, [0, evict_count, window_size].
      std::size_t const total_len = keeping.seq_len() + 1;
      std::size_t const evict_count = total_len > window ? total_len - window : 0;
      auto const evicted = static_cast<Brle::run_type>(evict_count);
      auto const attended = static_cast<Brle::run_type>(total_len - evict_count);
      std::vector<AttentionMask> ref_rows{AttentionMask::from_runs({0, evicted, attended})};
      auto const want = co_await logits_at(keeping, ids(tok), ids(total_len - 1), std::move(ref_rows));

      // piecrust's spelling of the recipe.
      std::size_t const len = evicting.seq_len() + 1;
      if (len > window) evicting.mask_token_range(0, len - window);
      evicting.drop_masked_kv_pages();
      std::size_t const slots = evicting.seq_len() + 1;
      auto fwd = evicting.forward();
      fwd.input({tok});
      fwd.attention_mask({AttentionMask::window(slots, window)});
      auto const h = fwd.probe(0, Logits{});
      ForwardOutput const out = co_await fwd.execute();
      std::vector<float> const got(out.logits(h).begin(), out.logits(h).end());
      REQUIRE(evicting.page_table().tokens().back().position == total_len - 1);  // positions never shift
      REQUIRE(max_abs_diff(got, want[0]) < 1e-5f);
      tok = testing::argmax(got);
      max_pages = std::max(max_pages, evicting.page_table().committed_pages().size() + evicting.page_table().working_pages().size());
    }
    CHECK(max_pages <= window / 16 + 2);  // the window's pages, a partly masked one, the one being written
    CHECK(keeping.page_table().committed_pages().size() >= 8);  // the reference kept every page
  };
  e.block_on(recipe(e));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}

TEST_CASE("Attention sink: [sink_size, evict_count - sink_size, window_size] keeps the sink and the window",
          "[seeds][masks]") {
  std::size_t const sink_size = 4, window_size = 16, total = 48, evict_count = total - window_size;
  AttentionMask const mask = AttentionMask::from_runs({sink_size, evict_count - sink_size, window_size});
  AttentionMask const named = AttentionMask::sink_window(total, sink_size, window_size);
  for (std::size_t i = 0; i < total; ++i) {
    CHECK(mask.attends(i) == named.attends(i));
    CHECK(mask.attends(i) == (i < sink_size || i >= evict_count));  // this row follows 0 = attend as stated
  }
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(10, total - 1));
    co_await ctx.flush();
    auto flagged = ctx.fork(), plain = ctx.fork();
    auto const with_row = co_await logits_at(ctx, ids(5), ids(total - 1), one_row(mask));
    // The same attention through the context's masked slots (no rows of its own).
    flagged.mask_token_range(sink_size, evict_count);
    auto const with_flags = co_await logits_at(flagged, ids(5), ids(total - 1), {});
    auto const causal = co_await logits_at(plain, ids(5), ids(total - 1), {});
    CHECK(max_abs_diff(with_row[0], with_flags[0]) < 1e-6f);
    CHECK(max_abs_diff(with_row[0], causal[0]) > 1e-2f);
  };
  e.block_on(prog(e));
}

TEST_CASE("Logit masks: [100, 50, vocab_size - 150] allows only tokens 100..150", "[seeds][masks]") {
  LogitMask const mask(Brle::from_runs({100, 50, vocab_size - 150}));  // forbid 0..100, allow 100..150, forbid rest
  CHECK(mask.allowed_count(vocab_size) == 50);
  CHECK_FALSE(mask.allows(99));
  CHECK(mask.allows(100));
  CHECK(mask.allows(149));
  CHECK_FALSE(mask.allows(150));
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [&](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(11, 8);
    for (int draw = 0; draw < 24; ++draw) {
      auto ctx = e.create_context();
      auto fwd = ctx.forward();
      fwd.input(p);
      fwd.mask(mask);
      auto const s = fwd.sample({p.size() - 1}, draw % 2 ? samplers::greedy() : samplers::temperature(Temperature{5.0f}));
      auto const raw = fwd.probe(p.size() - 1, Logits{});
      ForwardOutput const out = co_await fwd.execute();
      std::uint32_t const t = out.token(s);
      CHECK((t >= 100 && t < 150));
      auto const logits = out.logits(raw);  // probes read the model's logits: the mask is for samplers only
      if (draw % 2) CHECK(t == 100 + testing::argmax(logits.subspan(100, 50)));
    }
  };
  e.block_on(prog(e));
}

TEST_CASE("Page-trim: whole pages, the same on every row, never a page that receives new K/V", "[seeds][trim]") {
  std::uint32_t const ps = 16;
  auto kept = [&](std::size_t kv_before, std::vector<AttentionMask> rows) {
    return TrimPlan::compute(ps, kv_before, rows.size(), rows).kept_pages;
  };
  using Pages = std::vector<std::uint32_t>;
  // 47 cached slots and one new token: pages 0, 1, 2 (the new K/V lands in page 2).
  CHECK(kept(47, {AttentionMask::from_runs({5, 5, 38})}) == Pages{0, 1, 2});  // 5..10 inside a page: no trim
  CHECK(kept(47, {AttentionMask::from_runs({0, 16, 32})}) == Pages{1, 2});    // 0..16: page 0 dropped
  CHECK(kept(46, {AttentionMask::from_runs({0, 16, 31}), AttentionMask::causal(48)}) == Pages{0, 1, 2});  // rows disagree
  CHECK(kept(46, {AttentionMask::from_runs({0, 16, 31}), AttentionMask::from_runs({0, 17, 31})}) == Pages{1, 2});
  // A page that receives new K/V is kept even when every row masks it (the last page always is).
  CHECK(kept(47, {AttentionMask::from_runs({0, 47, 1})}) == Pages{2});
  CHECK(kept(30, {AttentionMask::from_runs({0, 30, 1}), AttentionMask::from_runs({0, 31, 1})}) == Pages{1});
  CHECK(kept(30, {AttentionMask::from_runs({0, 16, 15}), AttentionMask::from_runs({0, 16, 16})}) == Pages{1});
  CHECK(kept(14, {AttentionMask::from_runs({0, 14, 1}), AttentionMask::from_runs({0, 14, 1, 1}),
                  AttentionMask::from_runs({0, 14, 2, 1})}) == Pages{0, 1});  // new K/V in pages 0 and 1

  // Logical positions are preserved: a trimmed pass computes what the masked pass computes.
  Engine<Tiny> e(testing::tiny_model(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(prompt(12, 47));
    co_await ctx.flush();
    auto partial = ctx.fork();
    auto trim_row = one_row(AttentionMask::from_runs({0, 16, 32}));
    auto const trimmed = co_await logits_at(ctx, ids(5), ids(47), std::move(trim_row));
    // The same row beside a second, causal one: the rows disagree on page 0, so nothing is trimmed.
    auto rows = one_row(AttentionMask::from_runs({0, 16, 32}));
    rows.push_back(AttentionMask::causal(49));
    auto const untrimmed = co_await logits_at(partial, ids(5, 6), ids(47, 48), std::move(rows));
    CHECK(max_abs_diff(trimmed[0], untrimmed[0]) < 1e-4f);
    CHECK(testing::positions_of(ctx).back() == 47u);
  };
  e.block_on(prog(e));
}

TEST_CASE("Page-level operations: reserve, commit, release, truncate", "[seeds][pages]") {
  Engine<Tiny> e(testing::tiny_model(), opts(32));
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto raw = ctx.inner();
    std::size_t const free0 = e.pool().free_count();
    raw.reserve_working_pages(3);  // pre-allocate n working pages
    CHECK(ctx.page_table().working_pages().size() == 3);
    CHECK(e.pool().free_count() == free0 - 3);
    CHECK_THROWS_AS(raw.reserve_working_pages(100), OutOfPages);  // all or nothing
    CHECK(e.pool().free_count() == free0 - 3);

    auto fwd = ctx.forward();
    fwd.input(prompt(13, 36)).defer_commit();  // the K/V stays in working pages until committed by hand
    co_await fwd.execute();
    CHECK(ctx.page_table().committed_pages().empty());
    CHECK(ctx.page_table().working_token_count() == 36);
    CHECK(e.pool().free_count() == free0 - 3);  // the reserved pages were used, none added

    CHECK_THROWS_AS(raw.commit_working_pages(3), InvalidState);  // page 3 holds 4 tokens: not full
    CHECK(ctx.page_table().committed_pages().empty());
    auto const committed = raw.commit_working_pages(2);  // promote k full working pages to committed
    CHECK(committed.size() == 2);
    CHECK(ctx.page_table().committed_pages().size() == 2);
    CHECK(ctx.page_table().working_token_count() == 4);
    auto fork = ctx.fork();  // forks share committed pages
    for (PageId const id : committed) CHECK(e.pool().refcount(id) == 2);

    raw.truncate_working_page_tokens(3);  // drop the last n tokens (rollback)
    CHECK(ctx.seq_len() == 33);
    CHECK(ctx.page_table().working_pages().size() == 1);  // the page stays reserved
    CHECK_THROWS_AS(raw.truncate_working_page_tokens(2), InvalidState);  // committed tokens are never truncated
    raw.release_working_pages(1);  // free n working pages: the newest, with their tokens
    CHECK(ctx.seq_len() == 32);
    CHECK(ctx.page_table().working_pages().empty());
    CHECK(fork.seq_len() == 36);  // the fork kept its own copy of the working page
  };
  e.block_on(prog(e));
  CHECK(e.pool().free_count() == e.pool().num_pages());
}
