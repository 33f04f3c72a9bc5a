// The model families on the one forward pass, through Engine: tiny random Gemma 3 (QK-norm, post-norms, GELU,
// scaled embeddings, local / global layers with a window of 7), Qwen3 (QK-norm), Mistral (a window on every
// layer) and Llama 3 (RoPE frequency scaling), on the space under test (testing::TestSpace; this file runs in
// the host, Kokkos and CUDA-emulation builds).
//  * Logits of a 30-token prompt (past every window) against the double-precision reference forward:
//    |a - b| <= 2e-3 (f32 against double over 2 layers; the same bound as test_model).
//  * Greedy generation through Engine equals the reference's argmax, token by token; forks decoded together,
//    speculative decoding (n-gram drafter) and masked passes with page-trim give the greedy tokens of a plain
//    context on the same model.
#include <catch2/catch.hpp>

#include <piecrust/model/detail/reference_llama.hpp>

#include "tiny_runtime.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace piecrust;

namespace {

using FamilyModel = testing::Tiny;
char const* const families[] = {"gemma3", "qwen3", "mistral", "llama3"};

struct Family {
  LlamaWeights reference;  // the same weights, for the double-precision oracle
  std::unique_ptr<FamilyModel> model;
};

Family& family(std::string const& name) {
  // Never destroyed: the models live in the space's memory, and the map is made before the space's runtime
  // (the CUDA emulation's state), so destroying it at exit would free into a runtime already gone.
  static auto& all = *new std::map<std::string, Family>;
  auto it = all.find(name);
  if (it == all.end()) {
    std::uint64_t const seed = 41 + name.size();
    Family f{tiny_llama_weights(seed, GgmlType::f32, name),
             std::make_unique<FamilyModel>(tiny_llama_weights(seed, GgmlType::f32, name), testing::make_test_space())};
    it = all.emplace(name, std::move(f)).first;
  }
  return it->second;
}

std::uint32_t argmax(std::span<float const> v) {
  return static_cast<std::uint32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

/// The reference's greedy continuation: the whole sequence again for every token (tiny model, O(n^2)).
std::vector<std::uint32_t> reference_greedy(LlamaWeights const& w, std::vector<std::uint32_t> seq, std::size_t n) {
  std::size_t const V = w.config.vocab_size;
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::int32_t> ids(seq.begin(), seq.end());
    auto const lg = detail::reference_llama_logits(w, ids);
    out.push_back(argmax(std::span<float const>(lg).subspan((seq.size() - 1) * V, V)));
    seq.push_back(out.back());
  }
  return out;
}

template <class Program>
auto run(Program program, EngineOptions const& o = testing::engine_options(64, 4)) {
  return [=](FamilyModel& m) {
    Engine<FamilyModel> e(m, o);
    auto out = e.block_on(program(e));
    CHECK(e.pool().free_count() == e.pool().num_pages());
    return out;
  };
}

}  // namespace

TEST_CASE("families: a tiny model written as GGUF loads back as the same model", "[families]") {
  // The file path of each family: its architecture keys and tensor names (llama_to_gguf, then from_gguf).
  auto const p = testing::random_prompt(4, 20);
  std::vector<std::int32_t> const ids(p.begin(), p.end());
  for (char const* name : families) {
    INFO("family " << name);
    Family& f = family(name);
    auto const file = std::make_shared<GgufFile const>(GgufFile::parse(llama_to_gguf(f.reference), name));
    auto const loaded = LlamaWeights::from_gguf(file);
    auto const& a = loaded.config;
    auto const& b = f.reference.config;
    CHECK(a.arch == b.arch);
    CHECK(a.qk_norm == b.qk_norm);
    CHECK(a.post_norms == b.post_norms);
    CHECK(a.activation == b.activation);
    CHECK(a.embedding_scale == b.embedding_scale);
    CHECK(a.sliding_window == b.sliding_window);
    CHECK(a.sliding_window_pattern == b.sliding_window_pattern);
    CHECK(a.rope_local_theta == b.rope_local_theta);
    CHECK(a.rope.style == b.rope.style);
    CHECK(a.rope.llama3.enabled() == b.rope.llama3.enabled());
    CHECK(a.tied_embeddings == b.tied_embeddings);
    for (std::size_t l = 0; l < b.num_layers; ++l) CHECK(a.is_local_layer(l) == b.is_local_layer(l));
    CHECK(detail::reference_llama_logits(loaded, ids) == detail::reference_llama_logits(f.reference, ids));
  }
}

TEST_CASE("families: the llama.cpp-arithmetic mode refuses what it does not reproduce", "[families]") {
  if constexpr (has_llama_cpp_arithmetic<testing::TestSpace>) {
    for (char const* name : {"gemma3", "qwen3", "mistral"}) {
      INFO("family " << name);
      REQUIRE_THROWS_AS(FamilyModel(tiny_llama_weights(1, GgmlType::f32, name), testing::make_test_space(),
                                    {.llama_cpp_attention = true}),
                        Unsupported);
    }
  }
}

TEST_CASE("families: logits through Engine match the double-precision reference", "[families]") {
  auto const p = testing::random_prompt(3, 30);
  for (char const* name : families) {
    INFO("family " << name);
    Family& f = family(name);
    std::size_t const V = f.reference.config.vocab_size;
    auto const got = run([&](Engine<FamilyModel>& e) -> Task<std::vector<float>> {
      auto ctx = e.create_context();
      auto fw = ctx.forward();
      fw.input(p);
      auto const h = fw.probe(p.size() - 1, Logits{});
      ForwardOutput const out = co_await fw.execute();
      co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
    })(*f.model);
    std::vector<std::int32_t> const ids(p.begin(), p.end());
    auto const ref = detail::reference_llama_logits(f.reference, ids);
    REQUIRE(got.size() == V);
    double worst = 0;
    for (std::size_t i = 0; i < V; ++i) worst = std::max(worst, double{std::fabs(got[i] - ref[(p.size() - 1) * V + i])});
    CHECK(worst < 2e-3);
  }
}

TEST_CASE("families: greedy, forks, speculative decoding and masked passes give the reference's tokens",
          "[families]") {
  // A repetitive prompt, so the n-gram drafter proposes real drafts.
  std::vector<std::uint32_t> p;
  for (int r = 0; r < 3; ++r) {
    for (std::uint32_t t : {11u, 22u, 33u, 44u, 55u}) p.push_back(t);
  }
  std::size_t const n = 16;
  for (char const* name : families) {
    INFO("family " << name);
    Family& f = family(name);
    auto const want = reference_greedy(f.reference, p, n);
    auto const greedy = run([&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = e.create_context();
      ctx.fill(p);
      Generation const g = co_await ctx.generate(samplers::greedy(), max_len(n));
      co_return g.tokens;
    })(*f.model);
    CHECK(greedy == want);
    auto const forks = run([&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_await ctx.flush(Flush::keep_last);
      auto a = ctx.fork(), b = ctx.fork();
      std::vector<Task<Generation>> branches;
      branches.push_back(a.generate(samplers::greedy(), max_len(n)));
      branches.push_back(b.generate(samplers::greedy(), max_len(n)));
      auto gens = co_await e.when_all(std::move(branches));
      CHECK(gens[0].tokens == gens[1].tokens);
      co_return gens[0].tokens;
    })(*f.model);
    CHECK(forks == want);
    auto const drafted = run([&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = e.create_context();
      ctx.fill(p);
      NgramDrafter drafter(3, 6);
      Generation const g = co_await ctx.generate_with_drafter(drafter, max_len(n));
      co_return g.tokens;
    })(*f.model);
    CHECK(drafted == want);
    // Explicit causal rows on every pass (the runtime turns them into TrimPlans): the same tokens.
    auto const masked = run([&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = e.create_context();
      ctx.fill(p);
      std::vector<std::uint32_t> out;
      for (std::size_t step = 0; step < n; ++step) {
        auto fw = ctx.forward();
        fw.input_pending();
        std::vector<AttentionMask> rows;  // [pending]
        for (std::size_t i = ctx.seq_len(); i < ctx.seq_len() + ctx.pending_tokens().size(); ++i) {
          rows.push_back(AttentionMask::causal(i + 1));
        }
        fw.attention_mask(rows);
        auto const h = fw.sample({ctx.pending_tokens().size() - 1}, samplers::greedy());
        ForwardOutput const o = co_await fw.execute();
        out.push_back(o.token(h));
        ctx.fill({out.back()});
      }
      co_return out;
    })(*f.model);
    CHECK(masked == want);
  }
}

TEST_CASE("families: a small window store holds the local layers' K/V and keeps the reference's tokens",
          "[families][window]") {
  // Window 7, pages of 4: a context needs the window's pages plus the pass's (the 15-token prompt: 4); 8
  // window pages serve one context of any length and a fork beside it, while the main pages keep growing.
  auto const p = testing::random_prompt(5, 15);
  std::size_t const n = 40;
  EngineOptions o = testing::engine_options(64, 4);
  o.window_pages = 8;
  for (char const* name : {"gemma3", "mistral"}) {
    INFO("family " << name);
    Family& f = family(name);
    auto const want = reference_greedy(f.reference, p, n);
    auto const got = run(
        [&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
          REQUIRE(e.pool().has_window_store());
          auto ctx = e.create_context();
          ctx.fill(p);
          std::vector<std::uint32_t> out;
          std::size_t peak = 0;
          for (std::size_t i = 0; i < n; ++i) {
            auto fw = ctx.forward();
            fw.input_pending();
            auto const h = fw.sample({ctx.pending_tokens().size() - 1}, samplers::greedy());
            ForwardOutput const r = co_await fw.execute();
            out.push_back(r.token(h));
            ctx.fill({out.back()});
            peak = std::max(peak, e.pool().stats().window_used);
            if (i == n / 2) {  // a fork in the middle continues exactly like its parent
              auto child = ctx.fork();
              Generation const g = co_await child.generate(samplers::greedy(), max_len(n - i - 1));
              std::vector<std::uint32_t> const tail(want.begin() + static_cast<std::ptrdiff_t>(i + 1), want.end());
              CHECK(g.tokens == tail);
            }
          }
          CHECK(peak <= 8);
          CHECK(ctx.page_table().window_released_pages() > 0);
          CHECK(ctx.page_table().window_released_pages() + 4 >= ctx.page_table().committed_pages().size());
          CHECK(e.pool().stats().used > 8);  // the main pages held the whole context
          co_return out;
        },
        o)(*f.model);
    CHECK(got == want);
  }
}

TEST_CASE("families: exported pages keep what the window layers gave back; the import continues the same",
          "[families][window]") {
  auto const p = testing::random_prompt(6, 26);
  std::size_t const n = 12;
  for (char const* name : {"gemma3", "mistral"}) {
    INFO("family " << name);
    Family& f = family(name);
    auto const want = reference_greedy(f.reference, p, n);
    auto const got = run([&](Engine<FamilyModel>& e) -> Task<std::vector<std::uint32_t>> {
      auto ctx = e.create_context();
      ctx.fill(p);
      co_await ctx.flush(Flush::keep_last);
      REQUIRE(ctx.page_table().window_released_pages() > 0);
      MemoryStore store;
      ctx.export_kv_pages(store, "prompt");
      auto imported = Context<FamilyModel>::from_imported(e, store, "prompt", KvTrust::trusted);
      CHECK(imported.page_table().window_released_pages() == ctx.page_table().window_released_pages());
      // The import holds the committed pages; the rest of the prompt is fed again.
      std::vector<std::uint32_t> const rest(p.begin() + static_cast<std::ptrdiff_t>(imported.seq_len()), p.end());
      imported.fill(rest);
      Generation const g = co_await imported.generate(samplers::greedy(), max_len(n));
      co_return g.tokens;
    })(*f.model);
    CHECK(got == want);
  }
}
