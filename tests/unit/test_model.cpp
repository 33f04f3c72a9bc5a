// The Llama-family forward pass: a tiny random Llama against the naive double-precision reference,
// incremental decode vs prefill, ragged batches, GQA/bias/NEOX (qwen2), errors, and the real SmolLM2.

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/model/detail/reference_llama.hpp>
#include <piecrust/model/detail/sequence_runner.hpp>

#include <catch2/catch.hpp>

#include <random>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

using namespace piecrust;
using Llama = LlamaModel<Host>;
using Runner = detail::SequenceRunner<Llama>;

static_assert(Model<Llama>);
static_assert(Model<LlamaModel<Host, BFloat16>>);

namespace {

std::vector<TokenId> some_tokens(std::size_t n, std::size_t vocab, unsigned seed) {
  std::vector<TokenId> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<TokenId>((i * 7919 + seed * 104729 + 13) % vocab);
  return t;
}

double max_abs_diff(std::span<float const> a, std::span<float const> b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, double{std::fabs(a[i] - b[i])});
  return m;
}

// All logits of a sequence in one prefill step.
std::vector<float> prefill_all(Llama& m, std::vector<TokenId> const& toks, std::uint32_t page_size = 16) {
  auto kv = m.make_kv_cache(64, page_size);
  std::vector<std::uint32_t> pos(toks.size()), rows(toks.size());
  std::iota(pos.begin(), pos.end(), 0u);
  std::iota(rows.begin(), rows.end(), 0u);
  std::size_t const pages = (toks.size() + page_size - 1) / page_size;
  std::vector<std::uint32_t> qo{0, static_cast<std::uint32_t>(toks.size())}, kvp{0, static_cast<std::uint32_t>(pages)};
  std::vector<std::uint32_t> idx(pages), last{static_cast<std::uint32_t>(toks.size() - (pages - 1) * page_size)};
  for (std::size_t p = 0; p < pages; ++p) idx[p] = static_cast<std::uint32_t>(63 - 2 * p);  // scattered pages
  ForwardBatch b{toks, pos, {qo, kvp, idx, last}, {}, rows};
  std::vector<float> logits(toks.size() * m.shape().vocab_size);
  m.forward(kv, b, logits);
  return logits;
}

}  // namespace

TEST_CASE("model: tiny Llama prefill matches the double-precision reference", "[model]") {
  // 37 tokens: past the tiny Gemma 3 / Mistral window of 7, so their local layers see a moving window.
  for (std::string arch : {"llama", "qwen2", "qwen3", "gemma3", "mistral"}) {
    INFO("arch " << arch);
    auto w = tiny_llama_weights(7, GgmlType::f32, arch);
    auto const toks = some_tokens(37, w.config.vocab_size, 1);
    auto const ref = detail::reference_llama_logits(w, toks);
    Llama m(std::move(w), Host{2}, {.llama_cpp_activation_rounding = false});
    auto const got = prefill_all(m, toks);
    CHECK(max_abs_diff(got, ref) < 2e-3);
  }
}

TEST_CASE("model: quantized tiny Llama stays close to the reference", "[model]") {
  for (auto type : {GgmlType::q4_1, GgmlType::q8_0, GgmlType::f16, GgmlType::bf16}) {
    INFO("type " << ggml_type_name(type));
    auto w = tiny_llama_weights(3, type);
    auto const toks = some_tokens(20, w.config.vocab_size, 2);
    auto const ref = detail::reference_llama_logits(w, toks);  // same (quantized) weights, exact math
    double scale = 0;
    for (float x : ref) scale = std::max(scale, double{std::fabs(x)});
    auto w2 = tiny_llama_weights(3, type);
    Llama exact(std::move(w), Host{2}, {.llama_cpp_activation_rounding = false});
    CHECK(max_abs_diff(prefill_all(exact, toks), ref) < 2e-3);
    // llama.cpp's 8-bit activation rounding: about 1/254 of a block's max per input, a few % of the logit range
    Llama rounded(std::move(w2), Host{2});  // Q4_1 / Q8_0: the interleaved copy of the weights
    CHECK(max_abs_diff(prefill_all(rounded, toks), ref) < 0.03 * scale);
    Llama gguf_order(tiny_llama_weights(3, type), Host{2}, {.interleaved_weights = false});
    CHECK(max_abs_diff(prefill_all(gguf_order, toks), ref) < 0.03 * scale);
  }
}

TEST_CASE("model: quantized weights: a ragged batch gives each request's bits alone", "[model]") {
  // 8-bit activations are rounded per row and every matmul output is its own row's dot product (in
  // both weight layouts), so batching must not change a single bit: what speculative decoding and
  // the engine's batching rely on.
  for (bool interleaved : {true, false}) {
    INFO("interleaved " << interleaved);
    Llama m(tiny_llama_weights(5, GgmlType::q4_1), Host{2}, {.interleaved_weights = interleaved});
    std::size_t const V = m.shape().vocab_size;
    auto const a = some_tokens(21, V, 4), b = some_tokens(5, V, 5);
    Runner alone(m, 32, 16), batched(m, 32, 16);
    std::vector<std::vector<float>> want;
    for (auto const* t : {&a, &b}) {
      auto const s = alone.add_sequence();
      (void)alone.step(s, std::span(*t).first(t->size() - 1));
      want.push_back(alone.step(s, std::span(*t).last(1)));
    }
    std::size_t const s0 = batched.add_sequence(), s1 = batched.add_sequence();
    std::vector<Runner::Append> p{{s0, std::span(a).first(20)}, {s1, std::span(b).first(4)}};
    (void)batched.step(p);
    std::vector<Runner::Append> d{{s0, std::span(a).last(1)}, {s1, std::span(b).last(1)}};
    auto const got = batched.step(d);
    CHECK(std::equal(want[0].begin(), want[0].end(), got.begin()));
    CHECK(std::equal(want[1].begin(), want[1].end(), got.begin() + static_cast<std::ptrdiff_t>(V)));
  }
}

TEST_CASE("model: decoding token by token equals one prefill", "[model]") {
  auto w = tiny_llama_weights(11);
  auto const toks = some_tokens(40, w.config.vocab_size, 3);
  Llama m(std::move(w), Host{2}, {.llama_cpp_activation_rounding = false});
  auto const all = prefill_all(m, toks);
  std::size_t const V = m.shape().vocab_size;
  Runner r(m, 16, 8);  // page size 8: several page boundaries
  auto const s = r.add_sequence();
  auto first = r.step(s, std::span(toks).first(9));
  CHECK(max_abs_diff(first, std::span<float const>(all).subspan(8 * V, V)) < 1e-4);
  for (std::size_t t = 9; t < toks.size(); ++t) {
    auto const lg = r.step(s, std::span(toks).subspan(t, 1));
    INFO("token " << t);
    CHECK(max_abs_diff(lg, std::span<float const>(all).subspan(t * V, V)) < 1e-4);
  }
  CHECK(r.length(s) == toks.size());
}

TEST_CASE("model: sliding-window families decode token by token as one prefill, across page boundaries",
          "[model]") {
  // Page size 4 < window 7: decode steps drop pages wholly before the window (TrimPlan) on local layers.
  for (std::string family : {"gemma3", "mistral", "qwen3"}) {
    INFO("family " << family);
    auto w = tiny_llama_weights(13, GgmlType::f32, family);
    auto const toks = some_tokens(30, w.config.vocab_size, 9);
    auto const ref = detail::reference_llama_logits(w, toks);
    Llama m(std::move(w), Host{2}, {.llama_cpp_activation_rounding = false});
    std::size_t const V = m.shape().vocab_size;
    Runner r(m, 16, 4);
    auto const s = r.add_sequence();
    auto first = r.step(s, std::span(toks).first(5));
    CHECK(max_abs_diff(first, std::span<float const>(ref).subspan(4 * V, V)) < 2e-3);
    for (std::size_t t = 5; t < toks.size(); ++t) {
      auto const lg = r.step(s, std::span(toks).subspan(t, 1));
      INFO("token " << t);
      CHECK(max_abs_diff(lg, std::span<float const>(ref).subspan(t * V, V)) < 2e-3);
    }
  }
}

TEST_CASE("model: a sliding window meets explicit masks and trims as the reference row would", "[model]") {
  // The tiny Gemma 3 with explicit causal masks (and the same masks as trims) equals the default causal pass:
  // the window is applied to whatever rows the step brings.
  auto w = tiny_llama_weights(17, GgmlType::f32, "gemma3");
  Llama m(std::move(w), Host{1});
  auto const toks = some_tokens(20, m.shape().vocab_size, 10);
  auto const want = prefill_all(m, toks, 4);
  std::vector<std::uint32_t> pos(20), rows(20);
  std::iota(pos.begin(), pos.end(), 0u);
  std::iota(rows.begin(), rows.end(), 0u);
  std::vector<AttentionMask> masks;
  for (std::size_t i = 0; i < 20; ++i) masks.push_back(AttentionMask::causal(i + 1));
  std::vector<std::uint32_t> qo{0, 20}, kvp{0, 5}, idx{3, 9, 1, 7, 0}, last{4};
  {
    auto kv = m.make_kv_cache(10, 4);
    ForwardBatch b{toks, pos, {qo, kvp, idx, last}, {.masks = masks, .trims = {}}, rows};
    std::vector<float> got(want.size());
    m.forward(kv, b, got);
    CHECK(max_abs_diff(got, want) < 1e-5);
  }
  {
    auto kv = m.make_kv_cache(10, 4);
    std::vector<TrimPlan> trims{TrimPlan::compute(4, 0, 20, masks)};
    ForwardBatch b{toks, pos, {qo, kvp, idx, last}, {.masks = {}, .trims = trims}, rows};
    std::vector<float> got(want.size());
    m.forward(kv, b, got);
    CHECK(max_abs_diff(got, want) < 1e-5);
  }
}

TEST_CASE("model: a ragged batch equals its requests run alone", "[model]") {
  auto w = tiny_llama_weights(5);
  Llama m(std::move(w), Host{2});
  std::size_t const V = m.shape().vocab_size;
  auto const a = some_tokens(21, V, 4), b = some_tokens(5, V, 5), c = some_tokens(17, V, 6);
  Runner alone(m, 32, 16), batched(m, 32, 16);
  std::vector<std::vector<float>> want;
  for (auto const* t : {&a, &b, &c}) {
    auto const s = alone.add_sequence();
    want.push_back(alone.step(s, std::span(*t).first(t->size() - 1)));
    want.back() = alone.step(s, std::span(*t).last(1));
  }
  std::size_t s[3];
  for (auto& x : s) x = batched.add_sequence();
  // step 1: prefill of all three (ragged); step 2: one decode token each
  std::vector<Runner::Append> p{{s[0], std::span(a).first(20)}, {s[1], std::span(b).first(4)}, {s[2], std::span(c).first(16)}};
  (void)batched.step(p);
  std::vector<Runner::Append> d{{s[0], std::span(a).last(1)}, {s[1], std::span(b).last(1)}, {s[2], std::span(c).last(1)}};
  auto const got = batched.step(d);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("request " << i);
    CHECK(max_abs_diff(std::span<float const>(got).subspan(i * V, V), want[i]) < 1e-4);
  }
}

TEST_CASE("model: an explicit causal mask equals the default causal attention", "[model]") {
  auto w = tiny_llama_weights(9);
  Llama m(std::move(w), Host{1});
  auto const toks = some_tokens(12, m.shape().vocab_size, 8);
  auto const want = prefill_all(m, toks);
  auto kv = m.make_kv_cache(4, 16);
  std::vector<std::uint32_t> pos(12), rows(12);
  std::iota(pos.begin(), pos.end(), 0u);
  std::iota(rows.begin(), rows.end(), 0u);
  std::vector<AttentionMask> masks;
  for (std::size_t i = 0; i < 12; ++i) masks.push_back(AttentionMask::causal(i + 1));
  std::vector<std::uint32_t> qo{0, 12}, kvp{0, 1}, idx{2}, last{12};
  ForwardBatch b{toks, pos, {qo, kvp, idx, last}, {.masks = masks, .trims = {}}, rows};
  std::vector<float> got(want.size());
  m.forward(kv, b, got);
  CHECK(max_abs_diff(got, want) < 1e-5);
}

TEST_CASE("model: bad batches throw before anything changes", "[model]") {
  auto w = tiny_llama_weights(1);
  Llama m(std::move(w), Host{1});
  Runner r(m, 2, 16);
  auto const s = r.add_sequence();
  std::vector<TokenId> bad{1, 2, 100000};
  CHECK_THROWS_AS(r.step(s, bad), OutOfRange);
  CHECK(r.length(s) == 0);
  CHECK(r.pool().free_count() == 2);
  std::vector<TokenId> many(40, 1);
  CHECK_THROWS_AS(r.step(s, many), OutOfPages);
  CHECK(r.length(s) == 0);
  auto kv = m.make_kv_cache(2, 16);
  std::vector<TokenId> t{1, 2};
  std::vector<std::uint32_t> pos{0, 1}, rows{2}, qo{0, 2}, kvp{0, 1}, idx{0}, last{2};
  std::vector<float> logits(m.shape().vocab_size);
  CHECK_THROWS_AS(m.forward(kv, ForwardBatch{t, pos, {qo, kvp, idx, last}, {}, rows}, logits), OutOfRange);
  rows = {1};
  last = {1};  // page table does not cover the two new tokens
  CHECK_THROWS_AS(m.forward(kv, ForwardBatch{t, pos, {qo, kvp, idx, last}, {}, rows}, logits), InvalidArgument);
}

TEST_CASE("model: SmolLM2-135M-Instruct completes a fact", "[model][model-file]") {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const file = std::make_shared<GgufFile const>(GgufFile::open(path));
  auto const tok = Tokenizer::from_gguf(*file);
  auto const tmpl = ChatTemplate::from_gguf(*file);
  Llama m(LlamaWeights::from_gguf(file), Host{});
  CHECK(m.config().num_layers == 30);
  CHECK(m.config().tied_embeddings);
  CHECK(tmpl.family() == ChatFamily::chatml);
  // A raw completion with a wide margin (Paris 17.4 vs 14.9 for the runner-up), robust to rounding.
  auto const prompt = tok.encode("The capital of France is");
  Runner r(m, 8, 16);
  auto const s = r.add_sequence();
  auto logits = r.step(s, prompt);
  std::vector<TokenId> out;
  for (int i = 0; i < 12; ++i) {
    auto const next = static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (tok.is_eog(next)) break;
    out.push_back(next);
    logits = r.step(s, std::span(&out.back(), 1));
  }
  auto const text = tok.decode(out);
  INFO("answer: " << text);
  CHECK(text.find("Paris") != std::string::npos);
}
