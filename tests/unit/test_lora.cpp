// LoRA adapters (Forward::adapter / Context::set_adapter) on the tiny random Llama: B = 0 is exactly the base
// model, an adapter equals merging W + scale * B A into f32 weights, requests with different adapters share a
// step without changing each other's results, the GGUF layout of llama.cpp round-trips, and every bad input
// throws a typed error with the engine and the context unchanged.
#include <catch2/catch.hpp>

#include "tiny_runtime.hpp"

#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using namespace piecrust;
using Tiny = testing::Tiny;

namespace {

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

LlamaConfig const& cfg() { return testing::tiny_model().config(); }
LoraShape shape() { return LoraShape::of(cfg()); }

// Logits at the last input of one pass over `prompt` in a fresh context (adapter: the context's adapter).
Task<std::vector<float>> last_logits(Engine<Tiny>& e, std::vector<std::uint32_t> prompt, std::optional<AdapterId> adapter) {
  auto ctx = e.create_context();
  ctx.set_adapter(adapter);
  auto f = ctx.forward();
  f.input(prompt);
  auto const h = f.probe(prompt.size() - 1, Logits{});
  ForwardOutput const out = co_await f.execute();
  co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
}

float max_abs_diff(std::vector<float> const& a, std::vector<float> const& b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// W' = W + scale * B A for every adapted projection, written into f32 buffers that `storage` owns.
LlamaWeights merged_weights(std::uint64_t seed, LoraAdapter const& ad, std::vector<std::vector<float>>& storage) {
  LlamaWeights w = LlamaWeights::random(cfg(), seed, GgmlType::f32);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    auto& L = w.layers[l];
    WeightMatrix* mats[] = {&L.wq, &L.wk, &L.wv, &L.wo};
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      LoraPair const* p = ad.pair(l, static_cast<LoraTarget>(t));
      if (p == nullptr) continue;
      WeightMatrix& m = *mats[t];
      REQUIRE(m.type == WeightType::f32);
      auto const* src = static_cast<float const*>(m.data);
      std::vector<float> out(src, src + m.rows * m.cols);  // [rows][cols]
      for (std::size_t o = 0; o < m.rows; ++o) {
        for (std::size_t i = 0; i < m.cols; ++i) {
          double s = 0.0;
          for (std::size_t r = 0; r < p->rank; ++r) s += double{p->b[o * p->rank + r]} * double{p->a[r * p->in + i]};
          out[o * m.cols + i] += static_cast<float>(p->scale * s);
        }
      }
      storage.push_back(std::move(out));
      m.data = storage.back().data();
    }
  }
  return w;
}

}  // namespace

TEST_CASE("an adapter whose B is zero gives logits bit-identical to no adapter", "[lora]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
  AdapterId const zero = e.load_adapter("zero", LoraAdapter::random(shape(), 4, 8.0f, seed, {LoraTarget::q, LoraTarget::k,
                                                                                             LoraTarget::v, LoraTarget::o},
                                                                    0.0f));
  auto const prompt = testing::random_prompt(seed, 21);
  auto const base = e.block_on(last_logits(e, prompt, std::nullopt));
  auto const with = e.block_on(last_logits(e, prompt, zero));
  CHECK(base == with);  // y + scale * (x A^T) 0^T == y exactly
}

TEST_CASE("an adapter equals the model with merged weights W + scale * B A", "[lora]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::uint64_t const wseed = 5;
  Tiny base(LlamaWeights::random(cfg(), wseed, GgmlType::f32));
  // Rank 4, alpha 16 (scale 4): q and v in layer 0 and all four projections in layer 1.
  LoraAdapter ad(shape(), 16.0f);
  {
    LoraAdapter const r = LoraAdapter::random(shape(), 4, 16.0f, seed);
    for (std::size_t l = 0; l < 2; ++l) {
      for (LoraTarget const t : {LoraTarget::q, LoraTarget::k, LoraTarget::v, LoraTarget::o}) {
        if (l == 0 && (t == LoraTarget::k || t == LoraTarget::o)) continue;
        LoraPair const& p = *r.pair(l, t);
        ad.set(l, t, p.rank, p.a, p.b);
      }
    }
  }
  REQUIRE(ad.num_pairs() == 6);
  REQUIRE(ad.pair(0, LoraTarget::q)->scale == 4.0f);
  std::vector<std::vector<float>> storage;
  Tiny merged(merged_weights(wseed, ad, storage));

  Engine<Tiny> e_base(base, testing::engine_options());
  Engine<Tiny> e_merged(merged, testing::engine_options());
  AdapterId const id = e_base.load_adapter("x", std::move(ad));
  auto const prompt = testing::random_prompt(seed, 30);
  auto const adapted = e_base.block_on(last_logits(e_base, prompt, id));
  auto const want = e_merged.block_on(last_logits(e_merged, prompt, std::nullopt));
  auto const plain = e_base.block_on(last_logits(e_base, prompt, std::nullopt));
  // f32 weights both ways; the merged product rounds W + scale B A once, the adapter adds a rounded low-rank
  // term: relative differences ~1e-6 per projection, amplified by two layers and the LM head.
  float const scale = *std::max_element(want.begin(), want.end());
  CHECK(max_abs_diff(adapted, want) <= 1e-4f * std::max(1.0f, scale));
  CHECK(max_abs_diff(plain, want) > 1e-2f * std::max(1.0f, scale));  // the adapter does change the model

  // Decoding continues under the adapter: greedy tokens equal the merged model's.
  auto gen = [](Engine<Tiny>& e, std::vector<std::uint32_t> p, std::optional<AdapterId> a) -> Task<Generation> {
    auto ctx = e.create_context();
    ctx.set_adapter(a);
    ctx.fill(p);
    co_return co_await ctx.generate(samplers::greedy(), max_len(12));
  };
  auto const g_adapted = e_base.block_on(gen(e_base, prompt, id));
  auto const g_merged = e_merged.block_on(gen(e_merged, prompt, std::nullopt));
  CHECK(g_adapted.tokens == g_merged.tokens);
  for (std::size_t i = 0; i < g_adapted.logprobs.size(); ++i) CHECK(g_adapted.logprobs[i] == Approx(g_merged.logprobs[i]).margin(1e-4));
}

TEST_CASE("a batch mixing adapter X, adapter Y and no adapter equals each run alone", "[lora][batching]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  LoraAdapter const x = LoraAdapter::random(shape(), 4, 8.0f, seed + 1);
  LoraAdapter const y = LoraAdapter::random(shape(), 2, 0.0f, seed + 2, {LoraTarget::v, LoraTarget::o});

  struct Result {
    std::vector<float> logits;
    Generation generation;
  };
  auto run = [](Engine<Tiny>& e, std::vector<std::uint32_t> p, std::optional<AdapterId> a) -> Task<Result> {
    auto ctx = e.create_context();
    ctx.set_adapter(a);
    auto f = ctx.forward();
    f.input(p);
    auto const h = f.probe(p.size() - 1, Logits{});
    ForwardOutput const out = co_await f.execute();
    Result r{{out.logits(h).begin(), out.logits(h).end()}, {}};
    ctx.fill({static_cast<std::uint32_t>(std::max_element(r.logits.begin(), r.logits.end()) - r.logits.begin())});
    r.generation = co_await ctx.generate(samplers::top_k(TopK{4}, Temperature{1.0f}), max_len(10));
    co_return r;
  };
  std::vector<std::vector<std::uint32_t>> const prompts{testing::random_prompt(seed, 19), testing::random_prompt(seed + 7, 8),
                                                        testing::random_prompt(seed, 19)};
  auto load = [&](Engine<Tiny>& e) {
    std::vector<std::optional<AdapterId>> ids{e.load_adapter("x", LoraAdapter(x)), e.load_adapter("y", LoraAdapter(y)),
                                              std::nullopt};
    return ids;
  };

  // Together: the three programs' passes share every step.
  Engine<Tiny> together(testing::tiny_model(), testing::engine_options());
  auto const ids = load(together);
  auto all = [&](Engine<Tiny>& e) -> Task<std::vector<Result>> {
    std::vector<Task<Result>> work;
    for (std::size_t i = 0; i < 3; ++i) work.push_back(run(e, prompts[i], ids[i]));
    co_return co_await e.when_all(std::move(work));
  };
  auto const batched = together.block_on(all(together));
  CHECK(together.stats().steps == 1 + 10);

  for (std::size_t i = 0; i < 3; ++i) {
    INFO("request " << i);
    Engine<Tiny> alone(testing::tiny_model(), testing::engine_options());
    auto const alone_ids = load(alone);
    // Context ids decide the random streams: create the same number of contexts first.
    for (std::size_t k = 0; k < i; ++k) (void)alone.create_context();
    Result const r = alone.block_on(run(alone, prompts[i], alone_ids[i]));
    // The host GEMM may block a 46-row product differently from a 19-row one: last-bit differences only.
    CHECK(max_abs_diff(r.logits, batched[i].logits) <= 1e-4f);
    CHECK(r.generation.tokens == batched[i].generation.tokens);
  }
  // Requests 0 and 2 share a prompt; only the adapter differs.
  CHECK(max_abs_diff(batched[0].logits, batched[2].logits) > 1e-3f);
}

TEST_CASE("K/V computed under an adapter is shared only with contexts that computed it under the same adapter",
          "[lora][pages]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
  AdapterId const x = e.load_adapter("x", LoraAdapter::random(shape(), 4, 8.0f, seed));
  AdapterId const y = e.load_adapter("y", LoraAdapter::random(shape(), 4, 8.0f, seed + 1));
  auto const prompt = testing::random_prompt(seed, 40);  // two full pages and 8 tokens
  using Pages = std::vector<PageId>;
  auto committed = [](Context<Tiny> const& c) {
    return Pages(c.page_table().committed_pages().begin(), c.page_table().committed_pages().end());
  };
  auto disjoint = [](Pages const& a, Pages const& b) {
    return std::none_of(a.begin(), a.end(), [&](PageId p) { return std::find(b.begin(), b.end(), p) != b.end(); });
  };
  auto next = [](Context<Tiny>& c) -> Task<std::vector<float>> {
    auto f = c.forward();
    f.input({9});
    auto const h = f.probe(0, Logits{});
    ForwardOutput const out = co_await f.execute();
    co_return std::vector<float>(out.logits(h).begin(), out.logits(h).end());
  };
  std::vector<float> shared_next;
  auto prog = [&](Engine<Tiny>& e) -> Task<void> {
    auto prefill = [&](std::optional<AdapterId> a) -> Task<Context<Tiny>> {
      auto c = e.create_context();
      c.set_adapter(a);
      c.fill(prompt);
      co_await c.flush();
      co_return c;
    };
    auto adapted = co_await prefill(x);
    Pages const adapted_pages = committed(adapted);
    CHECK(adapted_pages.size() == 2);  // full pages under an adapter commit like any other
    auto again = co_await prefill(x);  // the same tokens under the same adapter: the same pages
    CHECK(committed(again) == adapted_pages);
    auto plain = co_await prefill(std::nullopt);
    auto other = co_await prefill(y);
    REQUIRE(committed(plain).size() == 2);
    REQUIRE(committed(other).size() == 2);
    CHECK(disjoint(committed(plain), adapted_pages));
    CHECK(disjoint(committed(other), adapted_pages));
    CHECK(disjoint(committed(other), committed(plain)));

    // A prefix computed without an adapter, continued under one: the first page is the base model's, the
    // second is nobody else's (its tokens ran under x after base-model K/V).
    auto mixed = e.create_context();
    mixed.fill(std::span(prompt).first(20));
    co_await mixed.flush();
    mixed.set_adapter(x);
    mixed.fill(std::span(prompt).subspan(20));
    co_await mixed.flush();
    REQUIRE(committed(mixed).size() == 2);
    CHECK(committed(mixed)[0] == committed(plain)[0]);
    CHECK(committed(mixed)[1] != committed(plain)[1]);
    CHECK(committed(mixed)[1] != adapted_pages[1]);

    // Committing by hand is allowed too (nothing full is left here), and export is refused, nothing stored.
    CHECK(adapted.inner().commit_full_working_pages().empty());
    MemoryStore store;
    CHECK_THROWS_AS(adapted.export_kv_pages(store, "a"), InvalidState);
    CHECK_FALSE(store.get("a").has_value());
    plain.export_kv_pages(store, "p");
    CHECK(store.get("p").has_value());

    // A fork shares the adapter's pages and keeps the adapter.
    auto child = again.fork();
    CHECK(child.adapter() == std::optional<AdapterId>(x));
    CHECK(committed(child) == adapted_pages);
    shared_next = co_await next(again);
    CHECK(shared_next != co_await next(plain));
  };
  e.block_on(prog(e));
  CHECK(e.pool().free_count() == e.pool().num_pages());

  // The shared pages hold what the adapter computes: a fresh engine that prefills the prompt under the same
  // adapter weights gives the same next-token logits, bit for bit.
  Engine<Tiny> fresh(testing::tiny_model(), testing::engine_options());
  AdapterId const fx = fresh.load_adapter("x", LoraAdapter::random(shape(), 4, 8.0f, seed));
  std::vector<float> fresh_next;
  auto alone = [&](Engine<Tiny>& e) -> Task<void> {
    auto c = e.create_context();
    c.set_adapter(fx);
    c.fill(prompt);
    co_await c.flush();
    fresh_next = co_await next(c);
  };
  fresh.block_on(alone(fresh));
  REQUIRE(!shared_next.empty());
  CHECK(fresh_next == shared_next);
}

namespace {

// A GGUF LoRA adapter in llama.cpp's layout, written with GgufWriter. `type`: storage type of A and B.
std::vector<std::byte> adapter_gguf(LoraAdapter const& ad, std::string const& arch, GgmlType type = GgmlType::f32) {
  GgufWriter w;
  w.set("general.architecture", {arch});
  w.set("general.type", {std::string("adapter")});
  w.set("adapter.type", {std::string("lora")});
  w.set("adapter.lora.alpha", {ad.alpha()});
  for (std::size_t l = 0; l < ad.shape().num_layers; ++l) {
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      LoraPair const* p = ad.pair(l, static_cast<LoraTarget>(t));
      if (p == nullptr) continue;
      std::string const base = LoraAdapter::tensor_name(l, static_cast<LoraTarget>(t));
      auto put = [&](std::string const& name, std::vector<std::uint64_t> dims, std::vector<float> const& v) {
        std::vector<std::byte> bytes(ggml_row_bytes(type, v.size()));
        quantize_row(type, v, bytes);
        w.add_tensor(name, std::move(dims), type, bytes);
      };
      put(base + ".lora_a", {p->in, p->rank}, p->a);
      put(base + ".lora_b", {p->rank, p->out}, p->b);
    }
  }
  return w.bytes();
}

// Where the dims of tensor `name` start in a file GgufWriter wrote (just past its name and n_dims).
std::size_t dims_of(std::vector<std::byte> const& b, std::string const& name) {
  std::string needle(8, '\0');
  std::uint64_t const len = name.size();
  std::memcpy(needle.data(), &len, 8);
  needle += name;
  auto const at = std::string_view(reinterpret_cast<char const*>(b.data()), b.size()).rfind(needle);
  REQUIRE(at != std::string_view::npos);
  return at + needle.size() + 4;
}

}  // namespace

TEST_CASE("GGUF round trip: an adapter written in llama.cpp's layout loads with the same values", "[lora][gguf]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  LoraAdapter const ad = LoraAdapter::random(shape(), 3, 6.0f, seed, {LoraTarget::q, LoraTarget::v, LoraTarget::o});
  LoraAdapter const back = LoraAdapter::from_gguf(GgufFile::parse(adapter_gguf(ad, "llama")), cfg());
  CHECK(back.alpha() == 6.0f);
  CHECK(back.num_pairs() == ad.num_pairs());
  for (std::size_t l = 0; l < 2; ++l) {
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      LoraPair const* p = ad.pair(l, static_cast<LoraTarget>(t));
      LoraPair const* q = back.pair(l, static_cast<LoraTarget>(t));
      REQUIRE((p == nullptr) == (q == nullptr));
      if (p == nullptr) continue;
      CHECK(q->rank == p->rank);
      CHECK(q->a == p->a);  // f32: exact
      CHECK(q->b == p->b);
      CHECK(q->scale == 2.0f);
    }
  }

  // F16 storage: every value is the f16 rounding of the original (relative error <= 2^-11).
  LoraAdapter const half = LoraAdapter::from_gguf(GgufFile::parse(adapter_gguf(ad, "llama", GgmlType::f16)), cfg());
  LoraPair const& p = *ad.pair(1, LoraTarget::o);
  LoraPair const& h = *half.pair(1, LoraTarget::o);
  for (std::size_t i = 0; i < p.a.size(); ++i) CHECK(h.a[i] == Approx(p.a[i]).epsilon(1.0 / 2048).margin(1e-7));

  // From a file, through the engine: same logits as the adapter loaded from memory.
  auto const path = std::filesystem::temp_directory_path() / ("piecrust-lora-" + std::to_string(seed) + ".gguf");
  {
    auto const bytes = adapter_gguf(ad, "llama");
    std::FILE* f = std::fopen(path.string().c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
  AdapterId const from_file = e.load_adapter("file", path);
  AdapterId const from_memory = e.load_adapter("memory", LoraAdapter(ad));
  std::filesystem::remove(path);
  CHECK(e.find_adapter("file") == std::optional<AdapterId>(from_file));
  auto const prompt = testing::random_prompt(seed, 12);
  CHECK(e.block_on(last_logits(e, prompt, from_file)) == e.block_on(last_logits(e, prompt, from_memory)));
}

TEST_CASE("bad adapters and bad handles throw typed errors and change nothing", "[lora][errors]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  LoraShape const s = shape();
  LoraAdapter ad(s, 8.0f);

  SECTION("LoraAdapter::set: wrong shapes, rank 0, a layer the shape lacks") {
    CHECK_THROWS_WITH(ad.set(0, LoraTarget::q, 4, std::vector<float>(4 * 100), std::vector<float>(128 * 4)),
                      Catch::Contains("blk.0.attn_q.weight.lora_a has 400 values, [rank 4][in 128] needs 512"));
    CHECK_THROWS_AS(ad.set(0, LoraTarget::k, 4, std::vector<float>(4 * 128), std::vector<float>(128 * 4)), InvalidArgument);
    CHECK_THROWS_WITH(ad.set(1, LoraTarget::v, 0, {}, {}), Catch::Contains("blk.1.attn_v.weight has rank 0"));
    CHECK_THROWS_AS(ad.set(2, LoraTarget::v, 1, std::vector<float>(128), std::vector<float>(64)), InvalidArgument);
    CHECK(ad.num_pairs() == 0);
  }

  SECTION("GGUF: unknown names, missing halves, wrong shapes, other architectures, non-attention targets") {
    LoraAdapter const good = LoraAdapter::random(s, 2, 4.0f, seed, {LoraTarget::k});
    auto with = [&](auto&& edit) {
      GgufWriter w;
      w.set("general.architecture", {std::string("llama")});
      w.set("general.type", {std::string("adapter")});
      w.set("adapter.type", {std::string("lora")});
      w.set("adapter.lora.alpha", {4.0f});
      edit(w);
      return GgufFile::parse(w.bytes());
    };
    std::vector<float> const a(2 * 128), b(64 * 2), b_bad(65 * 2);
    auto const pair = [&](GgufWriter& w, std::string const& base, std::vector<float> const& bv, std::uint64_t out) {
      w.add_f32(base + ".lora_a", {128, 2}, a);
      w.add_f32(base + ".lora_b", {2, out}, bv);
    };
    CHECK(LoraAdapter::from_gguf(with([&](GgufWriter& w) { pair(w, "blk.0.attn_k.weight", b, 64); }), cfg()).num_pairs() == 1);
    CHECK_THROWS_WITH(LoraAdapter::from_gguf(with([&](GgufWriter& w) { pair(w, "blk.0.attn_k.weight", b_bad, 65); }), cfg()),
                      Catch::Contains("'blk.0.attn_k.weight.lora_b' has shape [1][1][65][2], expected [64][rank]"));
    CHECK_THROWS_AS(LoraAdapter::from_gguf(with([&](GgufWriter& w) { pair(w, "blk.0.attn_k.weight", b_bad, 65); }), cfg()),
                    InvalidArgument);
    CHECK_THROWS_WITH(LoraAdapter::from_gguf(with([&](GgufWriter& w) { pair(w, "blk.0.attn_z.weight", b, 64); }), cfg()),
                      Catch::Contains("'blk.0.attn_z.weight.lora_a' is not a LoRA tensor"));
    CHECK_THROWS_AS(LoraAdapter::from_gguf(with([&](GgufWriter& w) { w.add_f32("blk.0.attn_k.weight.lora_c", {128, 2}, a); }), cfg()),
                    FormatError);
    CHECK_THROWS_AS(LoraAdapter::from_gguf(with([&](GgufWriter& w) { w.add_f32("blk.0.attn_k.weight.lora_a", {128, 2}, a); }), cfg()),
                    FormatError);  // lora_b missing
    CHECK_THROWS_WITH(LoraAdapter::from_gguf(with([&](GgufWriter& w) {
                                               w.add_f32("blk.0.attn_k.weight.lora_a", {128, 2}, a);
                                               w.add_f32("blk.0.attn_k.weight.lora_b", {1, 64}, std::vector<float>(64));
                                             }),
                                             cfg()),
                      Catch::Contains("has rank 2 but"));
    CHECK_THROWS_AS(LoraAdapter::from_gguf(with([&](GgufWriter& w) { pair(w, "blk.2.attn_k.weight", b, 64); }), cfg()), InvalidArgument);
    CHECK_THROWS_AS(LoraAdapter::from_gguf(with([&](GgufWriter& w) {
                                             w.add_f32("blk.0.ffn_up.weight.lora_a", {128, 2}, a);
                                             w.add_f32("blk.0.ffn_up.weight.lora_b", {2, 256}, std::vector<float>(512));
                                           }),
                                           cfg()),
                    Unsupported);
    auto meta = [&](char const* key, std::string const& value) {
      GgufWriter w;
      w.set("general.architecture", {key == std::string("general.architecture") ? value : std::string("llama")});
      w.set("general.type", {key == std::string("general.type") ? value : std::string("adapter")});
      w.set("adapter.type", {key == std::string("adapter.type") ? value : std::string("lora")});
      pair(w, "blk.0.attn_k.weight", b, 64);
      return GgufFile::parse(w.bytes());
    };
    CHECK_THROWS_AS(LoraAdapter::from_gguf(meta("general.type", "model"), cfg()), FormatError);
    CHECK_THROWS_AS(LoraAdapter::from_gguf(meta("adapter.type", "control_vector"), cfg()), FormatError);
    CHECK_THROWS_WITH(LoraAdapter::from_gguf(meta("general.architecture", "qwen2"), cfg()),
                      Catch::Contains("architecture 'qwen2', the model is 'llama'"));
    (void)good;
  }

  SECTION("GGUF: sizes that overflow or do not fit the file, types with no decoder (typed errors, not std::length_error)") {
    LoraAdapter const one = LoraAdapter::random(s, 2, 4.0f, seed, {LoraTarget::q});
    auto const good = adapter_gguf(one, "llama");
    CHECK(LoraAdapter::from_gguf(GgufFile::parse(good), cfg()).num_pairs() == 2);  // q of both layers
    auto patched = [&](std::uint64_t a_rank, std::uint64_t b_rank) {
      auto b = good;
      std::memcpy(b.data() + dims_of(b, "blk.0.attn_q.weight.lora_a") + 8, &a_rank, 8);
      std::memcpy(b.data() + dims_of(b, "blk.0.attn_q.weight.lora_b"), &b_rank, 8);
      return b;
    };
    // lora_a {128, 2^56} F32: 2^63 values of 4 bytes wrapped before and sized a vector of 2^63 floats.
    std::uint64_t const huge = std::uint64_t{1} << 56;
    CHECK_THROWS_AS(GgufFile::parse(patched(huge, 2)), FormatError);
    CHECK_THROWS_WITH(GgufFile::parse(patched(huge, 2)),
                      Catch::Contains("tensor 'blk.0.attn_q.weight.lora_a' dims {128, 72057594037927936} of type F32"));
    // A consistent rank of 2^40: the sizes fit 64 bits but not the file.
    CHECK_THROWS_WITH(GgufFile::parse(patched(std::uint64_t{1} << 40, std::uint64_t{1} << 40)),
                      Catch::Contains("tensor 'blk.0.attn_q.weight.lora_a' data [0, +562949953421312) runs past"));
    auto typed = [&](GgmlType type) {
      GgufWriter w;
      w.set("general.type", {std::string("adapter")});
      w.set("adapter.type", {std::string("lora")});
      w.add_tensor("blk.0.attn_k.weight.lora_a", {128, 2}, type, std::vector<std::byte>(ggml_row_bytes(type, 256)));
      w.add_f32("blk.0.attn_k.weight.lora_b", {2, 64}, std::vector<float>(128));
      return GgufFile::parse(w.bytes());
    };
    CHECK_THROWS_AS(LoraAdapter::from_gguf(typed(GgmlType::i8), cfg()), Unsupported);
    CHECK_THROWS_WITH(LoraAdapter::from_gguf(typed(GgmlType::i8), cfg()),
                      Catch::Contains("tensor 'blk.0.attn_k.weight.lora_a' has type I8"));
    CHECK(LoraAdapter::from_gguf(typed(GgmlType::q8_0), cfg()).num_pairs() == 1);
    // set: a rank whose value count overflows is refused before any size is computed from it.
    CHECK_THROWS_AS(ad.set(0, LoraTarget::q, std::size_t{1} << 63, {}, {}), InvalidArgument);
    CHECK_THROWS_WITH(ad.set(0, LoraTarget::q, std::size_t{1} << 63, {}, {}),
                      Catch::Contains("blk.0.attn_q.weight rank = 9223372036854775808 x 128 values overflows"));
    CHECK(ad.num_pairs() == 0);
  }

  SECTION("Engine: an adapter of a model with other dims, a taken name; the registry is unchanged") {
    Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
    LoraShape other = s;
    other.hidden = 64;
    CHECK_THROWS_WITH(e.load_adapter("other", LoraAdapter::random(other, 2, 1.0f, seed)),
                      Catch::Contains("'blk.0.attn_q.weight.lora_a' has shape [2][64], the model needs [2][128]"));
    LoraShape deeper = s;
    deeper.num_layers = 3;
    CHECK_THROWS_WITH(e.load_adapter("deeper", LoraAdapter::random(deeper, 2, 1.0f, seed)), Catch::Contains("has 3 layers"));
    CHECK_FALSE(e.find_adapter("other"));
    AdapterId const x = e.load_adapter("x", LoraAdapter::random(s, 2, 1.0f, seed));
    CHECK_THROWS_AS(e.load_adapter("x", LoraAdapter::random(s, 2, 1.0f, seed)), InvalidArgument);
    CHECK_THROWS_AS(e.load_adapter("", LoraAdapter::random(s, 2, 1.0f, seed)), InvalidArgument);
    CHECK(e.find_adapter("x") == std::optional<AdapterId>(x));
    CHECK_THROWS_AS(e.load_adapter("missing", std::filesystem::path("/nonexistent/piecrust-lora.gguf")), InvalidArgument);
    CHECK_FALSE(e.find_adapter("missing"));
  }

  SECTION("unknown handles: Forward::adapter, Context::set_adapter, an adapter unloaded before the step") {
    Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
    Engine<Tiny> other(testing::tiny_model(), testing::engine_options());
    AdapterId const foreign = other.load_adapter("f", LoraAdapter::random(s, 2, 1.0f, seed));
    AdapterId const x = e.load_adapter("x", LoraAdapter::random(s, 2, 1.0f, seed));
    auto prog = [](Engine<Tiny>& e, AdapterId foreign, AdapterId x) -> Task<void> {
      auto ctx = e.create_context();
      ctx.fill(testing::random_prompt(3, 20));
      co_await ctx.flush();
      ctx.fill({5});
      auto const ids = ctx.token_ids();
      std::size_t const len = ctx.seq_len(), free = e.pool().free_count();
      auto unchanged = [&] { return ctx.token_ids() == ids && ctx.seq_len() == len && e.pool().free_count() == free; };
      {
        auto f = ctx.forward();
        f.input({7});
        CHECK_THROWS_WITH(f.adapter(foreign), Catch::Contains("adapter id " + std::to_string(foreign.value) + " is not loaded"));
        CHECK_THROWS_AS(f.adapter(AdapterId{0}), InvalidArgument);
        CHECK_THROWS_AS(ctx.set_adapter(foreign), InvalidArgument);
        CHECK_FALSE(ctx.adapter());
        f.adapter(x);
        e.unload_adapter(x);
        CHECK_THROWS_WITH(co_await f.execute(), Catch::Contains("no longer loaded"));
        CHECK(unchanged());
        CHECK_THROWS_AS(e.unload_adapter(x), OutOfRange);
      }
      co_await ctx.flush();  // still usable
      CHECK(ctx.seq_len() == len + 1);
    };
    e.block_on(prog(e, foreign, x));
  }
}

TEST_CASE("a pass whose adapter is unloaded while it waits for the step fails alone, changing nothing", "[lora][errors]") {
  Engine<Tiny> e(testing::tiny_model(), testing::engine_options());
  AdapterId const x = e.load_adapter("x", LoraAdapter::random(shape(), 2, 1.0f, fresh_seed()));
  auto waiting = [](Engine<Tiny>& e, AdapterId x) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(testing::random_prompt(4, 9));
    ctx.set_adapter(x);
    CHECK_THROWS_WITH(co_await ctx.flush(), Catch::Contains("was unloaded before the pass ran"));
    CHECK(ctx.seq_len() == 0);
    CHECK(ctx.pending_tokens().size() == 9);
    CHECK(ctx.page_table().working_pages().empty());  // its reservation was never made
  };
  auto other = [](Engine<Tiny>& e, AdapterId x) -> Task<void> {
    e.unload_adapter(x);  // runs after `waiting` has queued its pass, before the step
    auto ctx = e.create_context();
    ctx.fill(testing::random_prompt(5, 9));
    co_await ctx.flush();  // shares the step, unaffected
    CHECK(ctx.seq_len() == 9);
  };
  e.spawn(waiting(e, x));
  e.spawn(other(e, x));
  e.run();
  CHECK(e.stats().steps == 1);
  CHECK(e.pool().free_count() == e.pool().num_pages());
}
