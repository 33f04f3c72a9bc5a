// The example programs of examples/ on the tiny random Llama: each example's reusable coroutine, with its
// claimed behaviour checked against an independent computation (greedy equality, probe recomputation,
// page accounting through the pool's free count). The command lines: every number strict and bounded, the
// error naming the option and the value, and the chat's context budget ending a conversation that cannot fit.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include "attention_sink/attention_sink.hpp"
#include "beam_search/beam_search.hpp"
#include "best_of_n/best_of_n.hpp"
#include "chat/chat_options.hpp"
#include "common/cli.hpp"
#include "common/scoring.hpp"
#include "constrained/constrained.hpp"
#include "custom_sampler/typical_sampler.hpp"
#include "jacobi/jacobi.hpp"
#include "logprob_validation/logprob_validation.hpp"
#include "lora_adapter/lora_variants.hpp"
#include "packed_prompts/packed_prompts.hpp"
#include "parallel_generation/parallel_generation.hpp"
#include "prefix_cache/prefix_cache.hpp"
#include "speculative/speculative.hpp"
#include "tree_of_thought/tree_of_thought.hpp"
#include "windowed_attention/windowed_attention.hpp"

#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace piecrust;
using namespace piecrust::examples;
using Tiny = testing::Tiny;

namespace {

EngineOptions opts(std::size_t pages = 256, std::uint64_t seed = 7) { return testing::engine_options(pages, 16, seed); }
Tiny& tiny() { return testing::tiny_model(); }
std::vector<std::uint32_t> prompt(std::uint32_t seed, std::size_t n) { return testing::random_prompt(seed, n); }

Task<Generation> plain_greedy(Engine<Tiny>& e, std::vector<std::uint32_t> p, std::size_t n) {
  auto ctx = e.create_context();
  ctx.fill(p);
  co_return co_await ctx.generate(samplers::greedy(), max_len(n));
}

bool all_pages_free(Engine<Tiny>& e) { return e.pool().free_count() == e.pool().num_pages(); }

}  // namespace

TEST_CASE("parallel_generation: N forks decode in the same steps; the root keeps the prompt", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto const p = prompt(1, 37);
  auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<void> {
    auto root = e.create_context();
    // The tiny random model's distributions are sharply peaked: sample the top 8 nearly uniformly so that the
    // branches' independent random streams show.
    auto const gens = co_await parallel_generation(e, root, std::span(p), 6, samplers::top_k(TopK{8}, Temperature{100.0f}), max_len(10));
    REQUIRE(gens.size() == 6);
    std::set<std::vector<std::uint32_t>> distinct;
    for (auto const& g : gens) {
      CHECK(g.tokens.size() == 10);
      distinct.insert(g.tokens);
    }
    CHECK(distinct.size() > 1);       // independent random streams per branch
    CHECK(root.token_ids() == p);     // the root is untouched: the prompt, its last token still pending
    CHECK(root.seq_len() == p.size() - 1);
    // One prefill step, then the 6 branches share each of their 10 decode steps.
    CHECK(e.stats().steps == 1 + 10);
    CHECK(e.stats().passes == 1 + 6 * 10);
  };
  e.block_on(prog(e, p));
  CHECK(all_pages_free(e));
}

TEST_CASE("tree_of_thought: levels expand in batched steps, pruning keeps the best paths by mean log-prob", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto root = e.create_context();
    auto const p = prompt(2, 21);
    TreeOfThoughtOptions t;
    t.breadth = 3;
    t.keep = 2;
    t.depth = 3;
    t.thought_len = 4;
    t.sampler = samplers::multinomial();
    auto const r = co_await tree_of_thought(e, root, std::span(p), t);
    CHECK(r.nodes_expanded == 3 + 6 + 6);
    CHECK(e.stats().steps == 1 + 3 * 4);  // the prompt's prefill, then each level's thoughts side by side
    REQUIRE(r.leaves.size() == 2);
    CHECK(r.leaves[0].score() >= r.leaves[1].score());
    for (Thought const& leaf : r.leaves) {
      REQUIRE(leaf.steps.size() == 3);
      for (auto const& s : leaf.steps) CHECK(s.size() == 4);
      // The recorded log-probs are the model's: recompute the whole path in one probe pass.
      auto const tokens = leaf.tokens();
      auto const lp = co_await score_continuation(root, std::span(tokens));
      REQUIRE(lp.size() == leaf.logprobs.size());
      for (std::size_t i = 0; i < lp.size(); ++i) CHECK(lp[i] == Approx(leaf.logprobs[i]).margin(1e-3));
    }
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("tree_of_thought: a path that ends with an eos id is complete and not expanded again", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto const p = prompt(16, 14);
    // Make the most likely first token the eos: with the tiny model's peaked distributions most first thoughts
    // end right there.
    auto probe_ctx = e.create_context();
    probe_ctx.fill(p);
    auto const [ids, probs] = co_await probe_ctx.decode_step_dist(1.0f, 1);
    auto root = e.create_context();
    TreeOfThoughtOptions t;
    t.breadth = 3;
    t.keep = 3;
    t.depth = 3;
    t.thought_len = 4;
    t.sampler = samplers::multinomial();
    t.eos = {ids[0]};
    auto const r = co_await tree_of_thought(e, root, std::span(p), t);
    std::size_t complete = 0;
    for (Thought const& leaf : r.leaves) {
      if (leaf.complete) {
        ++complete;
        CHECK(leaf.steps.back().back() == ids[0]);
      } else {
        CHECK(leaf.steps.size() == 3);
      }
    }
    CHECK(complete > 0);
    CHECK(r.nodes_expanded < 3 + 9 + 9);  // complete nodes were not expanded
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("beam_search: beams sorted by score, each score the sum of its tokens' log-probs", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto root = e.create_context();
    auto const p = prompt(3, 30);
    std::size_t const steps = 6;
    auto const beams = co_await beam_search(e, root, std::span(p), 3, steps);
    CHECK(e.stats().steps == 1 + steps);  // one prefill, then one batched step per search step
    REQUIRE(beams.size() == 3);
    std::set<std::vector<std::uint32_t>> distinct;
    for (std::size_t i = 0; i < beams.size(); ++i) {
      CHECK(beams[i].tokens.size() == steps);
      if (i > 0) CHECK(beams[i - 1].score >= beams[i].score);
      distinct.insert(beams[i].tokens);
      auto const lp = co_await score_continuation(root, std::span(beams[i].tokens));
      double sum = 0;
      for (double const l : lp) sum += l;
      CHECK(beams[i].score == Approx(sum).margin(2e-3));
    }
    CHECK(distinct.size() == 3);
    // Greedy is a width-1 beam search.
    auto greedy_root = e.create_context();
    auto const one = co_await beam_search(e, greedy_root, std::span(p), 1, steps);
    auto const g = co_await plain_greedy(e, p, steps);
    CHECK(one.at(0).tokens == g.tokens);
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("beam_search: a beam that emits an end id is finished and keeps competing on its score", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto root = e.create_context();
    auto const p = prompt(4, 12);
    // The most likely first token is made an "end" id: the best beam after step one is finished.
    auto probe_ctx = e.create_context();
    probe_ctx.fill(p);
    auto const [ids, probs] = co_await probe_ctx.decode_step_dist(1.0f, 1);
    std::vector<std::uint32_t> const end{ids[0]};
    auto const beams = co_await beam_search(e, root, std::span(p), 4, 5, end);
    bool saw_finished = false;
    for (Beam const& b : beams) {
      if (!b.finished) continue;
      saw_finished = true;
      CHECK(b.tokens.back() == end[0]);
    }
    CHECK(saw_finished);
    for (std::size_t i = 1; i < beams.size(); ++i) CHECK(beams[i - 1].score >= beams[i].score);
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("best_of_n: candidates sorted by mean log-prob, scores recomputed by a probe pass", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto root = e.create_context();
    auto const p = prompt(5, 25);
    auto const cands = co_await best_of_n(e, root, std::span(p), 5, samplers::multinomial(), max_len(8));
    REQUIRE(cands.size() == 5);
    CHECK(e.stats().steps == 1 + 8);
    std::set<std::size_t> indices;
    for (std::size_t i = 0; i < cands.size(); ++i) {
      indices.insert(cands[i].index);
      if (i > 0) CHECK(cands[i - 1].score() >= cands[i].score());
      auto const lp = co_await score_continuation(root, std::span(cands[i].generation.tokens));
      double sum = 0;
      for (double const l : lp) sum += l;
      CHECK(cands[i].score() == Approx(sum / 8).margin(1e-3));
    }
    CHECK(indices.size() == 5);
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("windowed_attention: pages are really freed, memory stays bounded, positions keep growing", "[examples]") {
  Engine<Tiny> e(tiny(), opts(16));
  auto prog = [](Engine<Tiny>& e) -> Task<WindowStats> {
    auto ctx = e.create_context();
    auto const p = prompt(6, 8);
    WindowOptions w;
    w.window = 32;
    w.steps = 150;
    w.sampler = samplers::multinomial();
    std::size_t min_free = e.pool().num_pages();
    auto on_step = [&](std::size_t, Context<Tiny> const& c) {
      min_free = std::min(min_free, e.pool().free_count());
      CHECK(c.seq_len() <= 32 + 16);  // the window plus at most one partly dead page
    };
    WindowStats const st = co_await windowed_generate<Tiny>(e, ctx, std::span(p), w, on_step);
    CHECK(min_free >= e.pool().num_pages() - 4);
    co_return st;
  };
  WindowStats const st = e.block_on(prog(e));
  CHECK(st.tokens.size() == 150);
  CHECK(st.max_pages_in_use <= 4);  // 158 tokens would need 10 pages without dropping
  CHECK(st.pages_dropped >= 6);
  CHECK(st.last_position == 8 + 149 - 1);  // the last sampled token is still pending
  CHECK(all_pages_free(e));
}

TEST_CASE("windowed_attention: a window wider than the text is plain greedy decoding", "[examples]") {
  auto const p = prompt(7, 20);
  Engine<Tiny> a(tiny(), opts());
  auto const want = a.block_on(plain_greedy(a, p, 40));
  Engine<Tiny> b(tiny(), opts());
  auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<WindowStats> {
    auto ctx = e.create_context();
    WindowOptions w;
    w.window = 100;
    w.steps = 40;
    co_return co_await windowed_generate<Tiny>(e, ctx, std::span(p), w);
  };
  auto const st = b.block_on(prog(b, p));
  CHECK(st.tokens == want.tokens);
  CHECK(st.pages_dropped == 0);
}

TEST_CASE("attention_sink: the sink's slots survive while the middle is dropped", "[examples]") {
  Engine<Tiny> e(tiny(), opts(16));
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto const p = prompt(8, 10);
    auto const st = co_await sink_generate<Tiny>(e, ctx, std::span(p), 4, 28, 150, samplers::multinomial());
    CHECK(st.max_pages_in_use <= 5);  // the sink's page + the window's pages
    CHECK(st.pages_dropped >= 6);
    // Slots 0..3 are still the prompt's first four tokens at positions 0..3.
    for (std::uint32_t i = 0; i < 4; ++i) {
      CHECK(ctx.page_table().token(i).position == i);
      CHECK(ctx.page_table().token(i).token == p[i]);
    }
    CHECK(ctx.page_table().token(ctx.seq_len() - 1).position == 10 + 149 - 1);
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));

  // With sink + window covering everything, it is plain greedy decoding.
  auto const p = prompt(9, 12);
  Engine<Tiny> a(tiny(), opts());
  auto const want = a.block_on(plain_greedy(a, p, 30));
  Engine<Tiny> b(tiny(), opts());
  auto wide = [](Engine<Tiny>& e, std::vector<std::uint32_t> p) -> Task<WindowStats> {
    auto ctx = e.create_context();
    co_return co_await sink_generate<Tiny>(e, ctx, std::span(p), 4, 60, 30, samplers::greedy());
  };
  CHECK(b.block_on(wide(b, p)).tokens == want.tokens);
}

TEST_CASE("prefix_cache: the second process imports the prefix and computes no prefill for it", "[examples]") {
  auto const db = (std::filesystem::temp_directory_path() / ("piecrust-examples-" + std::to_string(std::random_device{}()) + ".db")).string();
  auto const prefix = prompt(10, 100);
  std::vector<std::uint32_t> const q{5, 6, 7};
  std::size_t const gen = 6;
  PrefixCacheResult first;
  {
    Engine<Tiny> e(tiny(), opts());
    SqliteStore store(db);
    first = e.block_on(answer_with_prefix_cache(e, store, prefix, q, samplers::greedy(), max_len(gen)));
    CHECK_FALSE(first.imported);
    CHECK(first.computed_tokens == prefix.size() + q.size() + gen - 1);
    CHECK(all_pages_free(e));
  }
  {
    Engine<Tiny> e(tiny(), opts());  // a "restarted process": a new engine, the file reopened
    SqliteStore store(db);
    auto const second = e.block_on(answer_with_prefix_cache(e, store, prefix, q, samplers::greedy(), max_len(gen)));
    CHECK(second.imported);
    CHECK(second.reused_tokens == 96);  // whole pages only
    CHECK(second.computed_tokens == (100 - 96) + q.size() + gen - 1);
    CHECK(e.stats().tokens == second.computed_tokens);
    CHECK(second.answer.tokens == first.answer.tokens);
    CHECK(all_pages_free(e));
  }
  std::filesystem::remove(db);
}

TEST_CASE("speculative: the n-gram drafter gives plain greedy's tokens in fewer passes", "[examples]") {
  std::vector<std::uint32_t> p;
  for (int r = 0; r < 6; ++r) {
    for (std::uint32_t t : {11u, 22u, 33u, 44u, 55u}) p.push_back(t);
  }
  Engine<Tiny> e(tiny(), opts());
  auto const c = e.block_on(compare_speculative(e, std::span(p), max_len(40), 3, 6));
  CHECK(c.identical());
  CHECK(c.plain.passes == 40);
  CHECK(c.speculative.tokens.size() == 40);
  CHECK(c.speculative.passes <= c.plain.passes);
  CHECK(all_pages_free(e));
}

TEST_CASE("logprob_validation: the model's own answer passes, a tampered token is flagged", "[examples]") {
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto const p = prompt(11, 15);
    co_await prefill_all_but_last(ctx, std::span(p));
    auto gen_ctx = ctx.fork();
    ScoredGeneration const g = co_await generate_scored(gen_ctx, samplers::greedy(), max_len(10));
    double const worst = *std::min_element(g.logprobs.begin(), g.logprobs.end());
    ValidationThresholds const th{g.mean() - 0.01, worst - 0.01};
    Validation const ok = co_await validate_output(ctx, std::span(g.tokens), th);
    CHECK(ok.accepted);
    CHECK(ok.flagged.empty());
    REQUIRE(ok.logprobs.size() == 10);
    for (std::size_t i = 0; i < 10; ++i) CHECK(ok.logprobs[i] == Approx(g.logprobs[i]).margin(1e-3));
    CHECK(ok.mean == Approx(g.mean()).margin(1e-3));

    // Replace token 4 with the least likely token at that point.
    auto at4 = ctx.fork();
    at4.fill(std::span(g.tokens).first(4));
    auto const [ids, probs] = co_await at4.decode_step_dist(1.0f, 0);
    auto bad = g.tokens;
    bad[4] = ids.back();
    Validation const v = co_await validate_output(ctx, std::span(bad), th);
    CHECK_FALSE(v.accepted);
    REQUIRE_FALSE(v.flagged.empty());
    CHECK(v.flagged.front() == 4);  // nothing before the tampered token (later ones may suffer from it too)
    for (std::size_t i = 0; i < 4; ++i) CHECK(v.logprobs[i] == Approx(ok.logprobs[i]).margin(1e-4));
    CHECK(v.logprobs[4] == Approx(std::log(static_cast<double>(probs.back()))).margin(1e-3));
    CHECK(ctx.token_ids() == p);  // validation never changes the context
  };
  e.block_on(prog(e));
  CHECK(all_pages_free(e));
}

TEST_CASE("custom_sampler: the typical sampler models Sampler and picks from the typical set", "[examples]") {
  STATIC_REQUIRE(Sampler<TypicalSampler>);
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e) -> Task<void> {
    auto ctx = e.create_context();
    auto f = ctx.forward();
    f.input(prompt(12, 9));
    // With a tiny mass the typical set is the single most typical token: |-log p - H| smallest.
    auto const s = f.sample({8}, SamplerSpec::custom(TypicalSampler(1e-9f)));
    auto const d = f.probe(8, Distribution{1.0f, 0});
    auto const h = f.probe(8, Entropy{});
    ForwardOutput out = co_await f.execute();
    auto const [ids, probs] = out.distribution(d);
    double const entropy = out.entropy(h);
    std::size_t best = 0;
    for (std::size_t i = 1; i < ids.size(); ++i) {
      if (std::abs(-std::log(probs[i]) - entropy) < std::abs(-std::log(probs[best]) - entropy)) best = i;
    }
    CHECK(out.token(s) == ids[best]);
  };
  e.block_on(prog(e));

  // A generation with it is reproducible for a seed.
  auto run = [](std::uint64_t seed) {
    Engine<Tiny> e(tiny(), opts());
    auto gen = [](Engine<Tiny>& e, std::uint64_t seed) -> Task<Generation> {
      auto ctx = e.create_context();
      ctx.fill(prompt(13, 7));
      co_return co_await ctx.generate(SamplerSpec::custom(TypicalSampler(0.9f, seed)), max_len(12));
    };
    return e.block_on(gen(e, seed)).tokens;
  };
  auto const a = run(1);
  CHECK(a.size() == 12);
  CHECK(run(1) == a);
}

TEST_CASE("constrained: every sampler's output stays in the regular language", "[examples]") {
  // Token i spells "a", "b", "-" or "c" by i % 4; id 0 is the end of sequence.
  std::vector<std::string> spell(512);
  for (std::size_t i = 1; i < spell.size(); ++i) spell[i] = std::string(1, "ab-c"[i % 4]);
  std::string const pattern = "(ab-)+c";
  std::vector<std::uint32_t> const eos{0};
  std::size_t complete = 0;
  std::vector<SamplerSpec> const kinds{samplers::multinomial(), samplers::top_k(TopK{5}, Temperature{2.0f}), samplers::top_p(TopP{0.9f}),
                                       samplers::greedy(), SamplerSpec::custom(TypicalSampler(0.9f, 3))};
  for (std::size_t k = 0; k < kinds.size(); ++k) {
    Engine<Tiny> e(tiny(), opts(256, k));
    auto const p = prompt(14, 10);
    auto const r = e.block_on(constrained_generate(e, std::span(p), pattern, spell, eos, kinds[k], 40));
    INFO("sampler " << k << " produced " << r.text);
    if (r.complete) {
      ++complete;
      CHECK(r.generation.tokens.back() == 0);
      CHECK(std::regex_match(r.text, std::regex(pattern)));
    } else {
      CHECK(r.generation.tokens.size() == 40);
      CHECK(std::regex_match(r.text, std::regex("(ab-)*(ab?)?")));  // a prefix of a match
    }
    CHECK(all_pages_free(e));
  }
  CHECK(complete > 0);
}

TEST_CASE("jacobi: the fixed point is plain greedy decoding, in no more passes", "[examples]") {
  auto const p = prompt(15, 19);
  Engine<Tiny> a(tiny(), opts());
  auto const want = a.block_on(plain_greedy(a, p, 40));
  for (std::size_t const n : {1u, 4u, 8u}) {
    Engine<Tiny> e(tiny(), opts());
    auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> p, std::size_t n) -> Task<JacobiResult> {
      auto ctx = e.create_context();
      ctx.fill(p);
      auto r = co_await jacobi_generate(e, ctx, max_len(40), n);
      // The context holds exactly the greedy sequence: prompt, tokens, the last one pending.
      auto ids = p;
      ids.insert(ids.end(), r.generation.tokens.begin(), r.generation.tokens.end());
      CHECK(ctx.token_ids() == ids);
      CHECK(ctx.pending_tokens().size() == 1);
      co_return r;
    };
    auto const r = e.block_on(prog(e, p, n));
    INFO("n = " << n);
    CHECK(r.generation.tokens == want.tokens);
    CHECK(r.generation.passes <= want.passes);
    CHECK(r.generation.passes + r.accepted_guesses == 40);
    CHECK(all_pages_free(e));
  }
}

TEST_CASE("packed_prompts: prompts packed by segment ids decode as each alone, one pass per token for all", "[examples]") {
  std::vector<std::vector<std::uint32_t>> const ps{prompt(71, 3), prompt(72, 9), prompt(73, 5), prompt(74, 14)};
  Engine<Tiny> e(tiny(), opts());
  auto prog = [](Engine<Tiny>& e, std::vector<std::vector<std::uint32_t>> ps) -> Task<PackedResult> {
    auto ctx = e.create_context();
    co_return co_await packed_greedy(ctx, std::move(ps), 6);
  };
  auto const r = e.block_on(prog(e, ps));
  CHECK(r.passes == 6);
  CHECK(e.stats().steps == 6);
  REQUIRE(r.tokens.size() == ps.size());
  std::set<std::vector<std::uint32_t>> distinct;
  for (std::size_t p = 0; p < ps.size(); ++p) {
    Engine<Tiny> a(tiny(), opts());
    INFO("prompt " << p);
    CHECK(r.tokens[p] == a.block_on(plain_greedy(a, ps[p], 6)).tokens);
    distinct.insert(r.tokens[p]);
  }
  CHECK(distinct.size() > 1);  // the prompts answer differently, so the equalities above compare real answers
  CHECK(all_pages_free(e));
}

TEST_CASE("lora_adapter: base and adapters answer in the same steps, each as it would alone; GGUF round trip", "[examples][lora]") {
  auto const seed = std::random_device{}();
  INFO("seed " << seed);
  LoraShape const shape = LoraShape::of(tiny().config());
  LoraAdapter const a = LoraAdapter::random(shape, 4, 16.0f, seed, {LoraTarget::q, LoraTarget::v});
  LoraAdapter const b = LoraAdapter::random(shape, 2, 8.0f, seed + 1);
  auto const p = prompt(seed, 21);
  std::size_t const n = 8;

  Engine<Tiny> e(tiny(), opts());
  auto const path = std::filesystem::temp_directory_path() / ("piecrust-example-lora-" + std::to_string(seed) + ".gguf");
  {
    auto const bytes = lora_adapter_gguf(a, tiny().config().arch);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<char const*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  std::vector<LoraVariant> const variants{{"base", std::nullopt}, {"a", e.load_adapter("a", path)}, {"b", e.load_adapter("b", b)}};
  std::filesystem::remove(path);
  // The tiny random model is so peaked that greedy log-probabilities are 0: sample at a high temperature, where
  // they show the adapters' effect.
  SamplerSpec const hot = samplers::temperature(Temperature{50.0f});
  auto const answers = e.block_on(answer_with_adapters(e, std::span(p), variants, hot, max_len(n)));
  REQUIRE(answers.size() == 3);
  CHECK(e.stats().steps == n);  // the three prefills share step 1, every decode step holds all three

  // Each variant alone, with its adapter loaded from memory: the same tokens; log-probs to the last bits of
  // the host GEMM (a 63-row prefill against a 21-row one).
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("variant " << answers[i].name);
    Engine<Tiny> alone(tiny(), opts());
    for (std::size_t k = 0; k < i; ++k) (void)alone.create_context();  // the same context id: the same random stream
    std::optional<AdapterId> id;
    if (i == 1) id = alone.load_adapter("a", LoraAdapter(a));
    if (i == 2) id = alone.load_adapter("b", LoraAdapter(b));
    auto const one = alone.block_on(answer_with_adapters(alone, std::span(p), {{answers[i].name, id}}, hot, max_len(n)));
    CHECK(one[0].generation.tokens == answers[i].generation.tokens);
    REQUIRE(one[0].generation.logprobs.size() == n);
    for (std::size_t k = 0; k < n; ++k) CHECK(one[0].generation.logprobs[k] == Approx(answers[i].generation.logprobs[k]).margin(1e-4));
    if (i == 0) continue;
    // The adapter changes the model: the base model on the same random stream gives another first log-prob.
    Engine<Tiny> base(tiny(), opts());
    for (std::size_t k = 0; k < i; ++k) (void)base.create_context();
    auto const plain = base.block_on(answer_with_adapters(base, std::span(p), {{"base", std::nullopt}}, hot, max_len(n)));
    CHECK(std::abs(plain[0].generation.logprobs[0] - answers[i].generation.logprobs[0]) > 1e-4f);
  }
  CHECK(all_pages_free(e));
}

TEST_CASE("cli: integers are the whole argument, in range, or a typed error naming the option and the value", "[examples][cli]") {
  using Catch::Contains;
  CHECK(parse_integer<std::size_t>("--n", "12", 1, 64) == 12);
  CHECK(parse_integer<std::uint64_t>("--seed", "18446744073709551615", 0, UINT64_MAX) == UINT64_MAX);
  CHECK(parse_integer<int>("--x", "-5", -10, 10) == -5);
  for (char const* bad : {"12abc", "", " 5", "5 ", "+5", "0x10", "1.5", "abc", "-", "--3"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_integer<std::size_t>("--max-tokens", bad, 1, 100), InvalidArgument);
  }
  CHECK_THROWS_WITH(parse_integer<std::size_t>("--max-tokens", "12abc", 1, 100),
                    Contains("--max-tokens") && Contains("\"12abc\" is not a whole number"));
  // Negative counts, values past the type and values past the bounds are out of range, not wrapped or cut.
  CHECK_THROWS_AS(parse_integer<std::size_t>("--max-tokens", "-1", 1, 100), OutOfRange);
  CHECK_THROWS_WITH(parse_integer<std::size_t>("--max-tokens", "-1", 1, 100), Contains("--max-tokens = -1 is out of range") && Contains("[1, 100]"));
  CHECK_THROWS_WITH(parse_integer<std::uint32_t>("--top-k", "4294967297", 0, UINT32_MAX), Contains("--top-k = 4294967297") && Contains("[0, 4294967295]"));
  CHECK_THROWS_AS(parse_integer<std::uint64_t>("--seed", "18446744073709551616", 0, UINT64_MAX), OutOfRange);
  CHECK_THROWS_WITH(parse_integer<std::size_t>("--n", "65", 1, 64), Contains("--n = 65 is out of range"));
  CHECK_THROWS_AS(parse_integer<std::size_t>("--n", "0", 1, 64), OutOfRange);

  // A setter leaves its variable alone when the value is refused.
  std::size_t n = 7;
  auto const set = integer(n, 1, 64);
  CHECK_THROWS_AS(set("--n", "99"), OutOfRange);
  CHECK_THROWS_AS(set("--n", "9x"), InvalidArgument);
  CHECK(n == 7);
  set("--n", "9");
  CHECK(n == 9);
}

TEST_CASE("cli: reals are finite, whole-argument and in range", "[examples][cli]") {
  using Catch::Contains;
  CHECK(parse_real("--top-p", "0.5", 0.0, 1.0, Lower::open) == 0.5);
  CHECK(parse_real("--temperature", "0", 0.0, 100.0) == 0.0);
  CHECK(parse_real("--min-mean", "-2.5e0", -1e6, 0.0) == -2.5);
  for (char const* bad : {"nan", "inf", "-inf", "1.5x", "", " 1", "+1", "0,5"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_real("--temperature", bad, 0.0, 100.0), InvalidArgument);
  }
  CHECK_THROWS_WITH(parse_real("--temperature", "nan", 0.0, 100.0), Contains("--temperature = \"nan\" is not a finite number"));
  CHECK_THROWS_WITH(parse_real("--top-p", "0", 0.0, 1.0, Lower::open), Contains("--top-p = 0 is out of range: it must be in (0, 1]"));
  CHECK_THROWS_AS(parse_real("--top-p", "1.0001", 0.0, 1.0, Lower::open), OutOfRange);
  CHECK_THROWS_AS(parse_real("--temperature", "-0.1", 0.0, 100.0), OutOfRange);
  CHECK_THROWS_AS(parse_real("--temperature", "1e999", 0.0, 100.0), OutOfRange);
  float t = 0.7f;
  CHECK_THROWS_AS(real(t, 0.0, 100.0)("--temperature", "101"), OutOfRange);
  CHECK(t == 0.7f);
}

TEST_CASE("cli: the common options refuse what they cannot use", "[examples][cli]") {
  using Catch::Contains;
  auto parse = [](std::vector<char const*> args, std::size_t* steps = nullptr) {
    std::size_t unused = 0;
    std::map<std::string, OptionSetter> extra{{"--steps", integer(steps ? *steps : unused, 1, max_generation)}};
    return parse_common_args(args, extra, {{"--clear", [] {}}});
  };
  std::size_t steps = 5;
  auto const o = parse({"--tiny", "--seed", "42", "--threads", "2", "--steps", "64", "--clear"}, &steps);
  CHECK(o.tiny);
  CHECK(o.seed == 42);
  CHECK(o.threads == 2);
  CHECK(steps == 64);
  CHECK(parse({"-h"}).help);
  // The prompt style: from the file unless --raw or --chat forces it; the two contradict each other.
  CHECK(parse({"--tiny"}).style == PromptStyle::automatic);
  CHECK(parse({"--raw"}).style == PromptStyle::completion);
  CHECK(parse({"--chat", "--chat"}).style == PromptStyle::chat);
  CHECK_THROWS_WITH(parse({"--raw", "--chat"}), Contains("--raw and --chat exclude each other"));
  CHECK_THROWS_WITH(parse({"--threads", "100000"}), Contains("--threads = 100000 is out of range") &&
                                                        Contains("[1, " + std::to_string(max_threads()) + "]"));
  CHECK_THROWS_AS(parse({"--threads", "0"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--seed", "-1"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--steps", "12abc"}), InvalidArgument);
  CHECK_THROWS_WITH(parse({"--steps"}), Contains("--steps needs a value"));
  CHECK_THROWS_WITH(parse({"--bogus", "1"}), Contains("unknown option --bogus"));
  CHECK(max_threads() >= 4);
}

TEST_CASE("cli: a prompt is a chat turn or BOS and plain text; a line end ends an answer only after the latter", "[examples][cli]") {
  // A byte-level vocabulary with Gemma's markup as control tokens: 256 = <bos>, 257 = <eos>.
  TokenizerSpec s;
  s.model = TokenizerModel::gpt2;
  s.pre = "gpt2";
  for (int b = 0; b < 256; ++b) s.tokens.push_back(piecrust::detail::ByteLevel::get().byte_to_text[b]);
  s.types.assign(256, TokenType::normal);
  for (char const* t : {"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"}) {
    s.tokens.push_back(t);
    s.types.push_back(TokenType::control);
  }
  s.bos = 256;
  s.eos = 257;
  s.add_bos = true;
  LoadedModel m;
  m.tokenizer.emplace(std::move(s));
  m.chat.emplace(ChatFamily::gemma);
  auto decode = [&](std::vector<std::uint32_t> const& ids) {
    return m.tokenizer->decode(std::vector<TokenId>(ids.begin(), ids.end()), {.special = true});
  };
  std::mt19937 rng(Catch::rngSeed() + 17);
  auto words = [&](std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += std::string(i ? " " : "") + static_cast<char>('a' + rng() % 26) + "xy";
    return out;
  };
  Prompt const p{words(5) + "?", words(4) + ":"};
  std::string const system = words(3);

  m.completion = true;
  auto const plain = m.prompt(p, system);
  REQUIRE(plain.size() > 1);
  CHECK(plain.front() == 256);  // BOS, then the text with no markup
  CHECK(decode(plain) == "<bos>" + system + "\n\n" + p.completion);
  CHECK(decode(m.prompt(p)) == "<bos>" + p.completion);
  auto const ends = m.answer_end_ids();
  CHECK(std::count(ends.begin(), ends.end(), 257u) == 1);
  CHECK(std::count(ends.begin(), ends.end(), std::uint32_t{'\n'}) == 1);  // the byte token of a line end
  CHECK(std::count(ends.begin(), ends.end(), std::uint32_t{'a'}) == 0);

  m.completion = false;
  CHECK(decode(m.prompt(p)) == "<bos><start_of_turn>user\n" + p.message + "<end_of_turn>\n<start_of_turn>model\n");
  auto const eos = m.eos_ids();
  CHECK(m.answer_end_ids() == eos);  // a chat turn ends with its end-of-turn, not at a line end
  CHECK(std::count(eos.begin(), eos.end(), std::uint32_t{'\n'}) == 0);
  CHECK(std::count(eos.begin(), eos.end(), 257u) == 1);
}

TEST_CASE("cli: the chat's command line is strict and bounded", "[examples][cli]") {
  using Catch::Contains;
  using namespace piecrust::examples::chat;
  auto parse = [](std::vector<char const*> args) { return parse_chat_args(args); };
  auto const o = parse({"--prompt", "hi", "--system", "be brief", "-n", "32", "--temperature", "0.8", "--top-k", "40",
                        "--top-p", "0.9", "--seed", "3", "-t", "2", "--context", "512", "--raw"});
  CHECK(o.prompt == std::optional<std::string>("hi"));
  CHECK(o.system == std::optional<std::string>("be brief"));
  CHECK(o.max_tokens == 32);
  CHECK(o.temperature == 0.8f);
  CHECK(o.top_k == 40);
  CHECK(o.top_p == 0.9f);
  CHECK(o.seed == 3);
  CHECK(o.threads == 2);
  CHECK(o.context == 512);
  CHECK(o.raw);
  ChatOptions const defaults = parse({});
  CHECK(defaults.max_tokens == 256);
  CHECK(defaults.context == 2048);
  CHECK(defaults.threads == 0);

  // The reported cases, each refused with the option and the value.
  CHECK_THROWS_WITH(parse({"--max-tokens", "-1"}), Contains("--max-tokens = -1 is out of range"));
  CHECK_THROWS_WITH(parse({"--max-tokens", "12abc"}), Contains("--max-tokens = \"12abc\" is not a whole number"));
  CHECK_THROWS_WITH(parse({"--top-k", "4294967297"}), Contains("--top-k = 4294967297 is out of range"));
  CHECK_THROWS_WITH(parse({"--threads", "100000"}), Contains("--threads = 100000 is out of range"));
  CHECK_THROWS_WITH(parse({"--context", "0"}), Contains("--context = 0 is out of range: it must be in [2, 1048576]"));
  CHECK_THROWS_AS(parse({"--context", "1"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--max-tokens", "0"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--temperature", "-1"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--top-p", "0"}), OutOfRange);
  CHECK_THROWS_AS(parse({"--seed", "1e3"}), InvalidArgument);
  CHECK_THROWS_AS(parse({"--prompt"}), InvalidArgument);
  CHECK_THROWS_AS(parse({"--frobnicate"}), InvalidArgument);
  CHECK(parse({"--context", "10"}).context == 10);  // small but valid: plan_turn ends such a chat (below)

  // Bounds that depend on the model: its context length and its vocabulary.
  ChatOptions big = defaults;
  big.context = 9000;
  CHECK_THROWS_WITH(check_against_model(big, 8192, 49152), Contains("--context = 9000") && Contains("context length 8192"));
  ChatOptions many = defaults;
  many.top_k = 50000;
  CHECK_THROWS_WITH(check_against_model(many, 8192, 49152), Contains("--top-k = 50000") && Contains("vocabulary size 49152"));
  CHECK_NOTHROW(check_against_model(defaults, 8192, 49152));
}

TEST_CASE("cli: the chat's context budget ends a conversation that cannot fit instead of looping", "[examples][cli]") {
  using namespace piecrust::examples::chat;
  using Kind = TurnPlan::Kind;
  // --context 10 with a 30-token prompt: a new conversation cannot hold it, so the chat ends.
  CHECK(plan_turn(30, true, 10, 256).kind == Kind::too_long);
  CHECK(plan_turn(10, true, 10, 256).kind == Kind::too_long);  // no room for one token
  // An old conversation with too little room starts over once; the new one then fits or ends.
  CHECK(plan_turn(1900, false, 2048, 256).kind == Kind::restart);
  CHECK(plan_turn(1700, false, 2048, 256).kind == Kind::generate);
  // A new conversation replies with the room it has, at least one token.
  TurnPlan const p = plan_turn(40, true, 64, 256);
  CHECK(p.kind == Kind::generate);
  CHECK(p.budget == 24);
  CHECK(plan_turn(63, true, 64, 256).budget == 1);
  CHECK(plan_turn(40, true, 2048, 256).budget == 256);
  // The loop that used to run for ever: a new conversation is never told to start over, whatever the sizes.
  for (std::size_t context : {2u, 10u, 64u, 2048u}) {
    for (std::size_t used = 0; used < 3000; used += 7) {
      for (std::size_t max_tokens : {1u, 256u, 65536u}) {
        TurnPlan const q = plan_turn(used, true, context, max_tokens);
        REQUIRE(q.kind != Kind::restart);
        if (q.kind == Kind::generate) REQUIRE((q.budget >= 1 && used + q.budget <= context && q.budget <= max_tokens));
      }
    }
  }
}
