// sample and the probes on the space under test (test_kernel_support.hpp: Host, or the space a build names;
// logits and outputs in its memory, params, masks, keys and probe_logprobs' ids in host memory, as the
// interfaces say): chi-square tests of every sampler against the exact filtered distribution of the
// double-precision reference (critical value at p = 1e-4), determinism per (seed, row, step) and (host
// only) across thread counts, LogitMask always respected, deterministic ties, probes against the
// reference (probabilities 1e-6 + 1e-5 relative, log-probabilities and entropy 1e-5 + 1e-5 relative)
// and cross-checked with each other and with greedy sampling.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <vector>

#include "chi_square.hpp"
#include "test_kernel_support.hpp"

#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/sampling.hpp"

using namespace piecrust;
using piecrust::test::download;
using piecrust::test::filled;
using piecrust::test::random_floats;
using piecrust::test::upload;
using Space = piecrust::test::Space;

namespace {

/// `got` (draws of ids < dist.size()) fits the distribution `dist` (chi_square.hpp) at p = 1e-6: each run
/// makes many such checks (samplers x masks x spaces) on fresh seeds, so each one's false-alarm rate must
/// be tiny. An id of probability 0 is never drawn (masked or banned ids included).
void check_draws_fit(std::vector<double> const& dist, std::vector<std::uint32_t> const& got) {
  std::vector<double> counts(dist.size(), 0.0);  // [vocab]
  for (auto id : got) counts[id] += 1;
  test::DrawsFit const f = test::draws_fit(dist, counts, 4.753);
  INFO("chi-square " << f.chi << " (critical " << f.critical << ", df " << f.df << "); ids expected "
                     << f.rare_expected << " times in all drawn " << f.rare_count << " times");
  REQUIRE(!f.outside);
  CHECK(f.fits(1e-6));
}

LogitMask random_mask(std::mt19937_64& rng, std::size_t vocab, double allow_fraction) {
  std::bernoulli_distribution allow(allow_fraction);
  Brle bits;
  for (std::size_t i = 0; i < vocab; ++i) bits.append(allow(rng));
  if (bits.count(true) == 0) {
    Brle one;
    one.append(true).append(false, vocab - 1);
    return LogitMask(one);
  }
  return LogitMask(std::move(bits));
}

/// n draws from `row` on `space` (any space: the host's thread counts too), keys (seed, stream, 0..n-1).
template <ExecutionSpace S>
std::vector<std::uint32_t> draw(S const& space, std::vector<float> const& row, SamplingParams const& p, LogitMask const& mask,
                                std::uint64_t seed, std::size_t n, std::uint64_t stream = 7) {
  std::size_t const vocab = row.size();
  std::vector<float> logits(n * vocab);  // [n][vocab] the same row n times
  for (std::size_t i = 0; i < n; ++i) std::copy(row.begin(), row.end(), logits.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  std::vector<SamplingParams> params(n, p);
  std::vector<LogitMask> masks(mask.empty() ? 0 : n, mask);  // empty: allow all
  std::vector<SampleKey> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = {seed, stream, i};
  auto const ld = upload(space, logits);
  auto out = filled(space, n, std::uint32_t{0xffffffff});  // [n]
  sample(space, ld.view(n, vocab), params, masks, keys, std::span<std::uint32_t>(out.data(), n));
  return download(space, out);
}

/// n draws as `draw`, every row with the same recent tokens and logit bias.
template <ExecutionSpace S>
std::vector<std::uint32_t> draw_with(S const& space, std::vector<float> const& row, SamplingParams const& p, LogitMask const& mask,
                                     SampleRowInputs const& in, std::uint64_t seed, std::size_t n) {
  std::size_t const vocab = row.size();
  std::vector<float> logits(n * vocab);  // [n][vocab] the same row n times
  for (std::size_t i = 0; i < n; ++i) std::copy(row.begin(), row.end(), logits.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  std::vector<SamplingParams> params(n, p);
  std::vector<LogitMask> masks(mask.empty() ? 0 : n, mask);
  std::vector<SampleKey> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = {seed, 7, i};
  std::vector<SampleRowInputs> inputs(n, in);  // [n] host memory
  auto const ld = upload(space, logits);
  auto out = filled(space, n, std::uint32_t{0xffffffff});  // [n]
  sample(space, ld.view(n, vocab), params, masks, keys, inputs, std::span<std::uint32_t>(out.data(), n));
  return download(space, out);
}

/// Random penalties with both signs of logit in play: repeat in [1.2, 2], presence and frequency in [0, 1].
Penalties random_penalties(std::mt19937_64& rng, std::uint32_t last_n) {
  std::uniform_real_distribution<float> rep(1.2f, 2.0f), pf(0.0f, 1.0f);
  return Penalties{rep(rng), pf(rng), pf(rng), last_n};
}

/// `count` distinct ids with random biases in [-2, 2]; the first one -inf (a banned id).
std::vector<LogitBias> random_bias(std::mt19937_64& rng, std::size_t vocab, std::size_t count) {
  std::vector<std::uint32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0u);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::uniform_real_distribution<float> b(-2.0f, 2.0f);
  std::vector<LogitBias> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back({ids[i], i == 0 ? -std::numeric_limits<float>::infinity() : b(rng)});
  return out;
}

std::vector<std::uint32_t> random_tokens(std::mt19937_64& rng, std::size_t n, std::uint32_t below) {
  std::uniform_int_distribution<std::uint32_t> d(0, below - 1);
  std::vector<std::uint32_t> out(n);
  for (auto& t : out) t = d(rng);
  return out;
}

std::vector<SamplingParams> all_samplers() {
  return {SamplingParams::multinomial(),       SamplingParams::with_temperature(Temperature{0.7f}), SamplingParams::top_k_of(TopK{7}, Temperature{0.8f}),
          SamplingParams::top_p_of(TopP{0.8f}, Temperature{1.3f}), SamplingParams::min_p_of(MinP{0.1f}, Temperature{1.0f}),  SamplingParams::top_k_top_p_of(TopK{12}, TopP{0.7f}, Temperature{1.1f}),
          SamplingParams::top_p_of(TopP{0.999f}), SamplingParams::top_k_top_p_of(TopK{20}, TopP{0.9f}, MinP{0.1f}, Temperature{0.8f})};
}

}  // namespace

TEST_CASE("Philox4x32-10 matches Random123's known-answer vectors", "[kernel][sample]") {
  using C = Philox4x32::Counter;
  CHECK(Philox4x32::generate(C{0, 0, 0, 0}, {0, 0}) == C{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(Philox4x32::generate(C{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
        C{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(Philox4x32::generate(C{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        C{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  double const u = uniform_from_key({1, 2, 3});
  CHECK(u >= 0.0);
  CHECK(u < 1.0);
}

TEST_CASE("every sampler draws from the exact filtered distribution (chi-square)", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const vocab = 48, draws = 8000;
  auto const row = random_floats(rng, vocab, -3.0f, 3.0f);
  for (bool masked : {false, true}) {
    LogitMask const mask = masked ? random_mask(rng, vocab, 0.7) : LogitMask{};
    for (SamplingParams const& p : all_samplers()) {
      INFO("sampler " << sampling_kind_name(p.kind) << " masked " << masked);
      auto const dist = reference::filtered_distribution(row, p, mask);
      check_draws_fit(dist, draw(space, row, p, mask, rng(), draws));
    }
  }
}

TEST_CASE("sampling is reproducible from (seed, row, step) and independent of threads and batch position", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const vocab = 1000;
  auto const row = random_floats(rng, vocab, -4.0f, 4.0f);
  for (SamplingParams const& p : all_samplers()) {
    INFO("sampler " << sampling_kind_name(p.kind));
    auto const a = draw(space, row, p, {}, 42, 60);
    CHECK(draw(space, row, p, {}, 42, 60) == a);
    if constexpr (test::space_is_host) {  // the host's thread pool: the same tokens for every thread count
      CHECK(draw(Host(1), row, p, {}, 42, 60) == a);
      CHECK(draw(Host(3), row, p, {}, 42, 60) == a);
    }
    auto const c = draw(space, row, p, {}, 43, 60);
    CHECK(a != c);
    auto const d = draw(space, row, p, {}, 42, 60, 8);
    CHECK(a != d);
  }
  // Same key at a different batch position gives the same token.
  std::vector<float> logits(3 * vocab);
  auto const other = random_floats(rng, vocab);
  std::copy(other.begin(), other.end(), logits.begin());
  std::copy(row.begin(), row.end(), logits.begin() + vocab);
  std::copy(other.begin(), other.end(), logits.begin() + 2 * vocab);
  auto const ld = upload(space, logits);
  std::vector<SamplingParams> params(3, SamplingParams::top_p_of(TopP{0.9f}));
  std::vector<SampleKey> keys{{1, 5, 0}, {9, 9, 9}, {1, 6, 0}};
  auto out = filled(space, 3, std::uint32_t{0xffffffff});
  sample(space, ld.view(3, vocab), params, {}, keys, std::span<std::uint32_t>(out.data(), 3));
  auto single = filled(space, 1, std::uint32_t{0xffffffff});
  std::vector<SampleKey> key1{{9, 9, 9}};
  std::vector<SamplingParams> p1(1, SamplingParams::top_p_of(TopP{0.9f}));
  sample(space, ShapedView<float const, 2>(ld.data() + vocab, 1, vocab), p1, {}, key1,
         std::span<std::uint32_t>(single.data(), 1));
  CHECK(download(space, single)[0] == download(space, out)[1]);
}

TEST_CASE("a LogitMask is always respected and ties break toward the lower id", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const vocab = 300;
  auto samplers = all_samplers();
  samplers.push_back(SamplingParams::greedy());
  for (int trial = 0; trial < 20; ++trial) {
    auto row = random_floats(rng, vocab, -5.0f, 5.0f);
    LogitMask const mask = random_mask(rng, vocab, trial % 2 == 0 ? 0.05 : 0.5);
    row[0] = 100.0f;  // the most likely token is often forbidden
    for (SamplingParams const& p : samplers) {
      for (auto id : draw(space, row, p, mask, rng(), 50)) REQUIRE(mask.allows(id));
    }
  }
  std::vector<float> row(10, 0.5f);
  row[5] = 2.0f;
  row[9] = 2.0f;
  CHECK(draw(space, row, SamplingParams::greedy(), {}, 1, 1)[0] == 5);
  CHECK(draw(space, row, SamplingParams::top_k_of(TopK{1}), {}, 1, 1)[0] == 5);
  CHECK(draw(space, row, SamplingParams::greedy(), LogitMask::forbid({5}, 10), 1, 1)[0] == 9);
  // Only one allowed id: every sampler returns it.
  for (SamplingParams const& p : samplers) CHECK(draw(space, row, p, LogitMask::allow({3}, 10), 3, 5) == std::vector<std::uint32_t>(5, 3));
}

TEST_CASE("sample rejects bad params and masks, naming the row", "[kernel][sample]") {
  Space const space = test::make_space();
  auto const logits = filled(space, 2 * 8, 1.0f);  // [2][8]
  std::vector<SampleKey> keys(2);
  auto out = filled(space, 2, std::uint32_t{99});
  auto call = [&](std::vector<SamplingParams> const& params, std::vector<LogitMask> const& masks = {}) {
    sample(space, logits.view(2, 8), params, masks, keys, std::span<std::uint32_t>(out.data(), 2));
  };
  SamplingParams const ok = SamplingParams::multinomial();
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::with_temperature(Temperature{0.0f})}), Catch::Contains("params[1].temperature = 0"));
  REQUIRE_THROWS_WITH(call({SamplingParams::top_k_of(TopK{0}), ok}), Catch::Contains("params[0].top_k = 0"));
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::top_p_of(TopP{1.5f})}), Catch::Contains("params[1].top_p = 1.5"));
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::min_p_of(MinP{-0.1f})}), Catch::Contains("params[1].min_p = -0.1"));
  REQUIRE_THROWS_WITH(call({ok}), Catch::Contains("params.size() (rows) = 1"));
  REQUIRE_THROWS_WITH(call({ok, ok}, {LogitMask{}, LogitMask::allow({1}, 9)}), Catch::Contains("masks[1].size() = 9"));
  Brle none;
  none.append(false, 8);
  REQUIRE_THROWS_WITH(call({ok, ok}, {LogitMask(none), LogitMask{}}), Catch::Contains("masks[0] allows no token"));
  CHECK(download(space, out) == std::vector<std::uint32_t>{99, 99});  // nothing written
}

TEST_CASE("probes match the reference and agree with each other and with greedy", "[kernel][probe]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const rows = 4, vocab = 500;
  auto const logits = random_floats(rng, rows * vocab, -6.0f, 6.0f);  // [rows][vocab]
  auto const ld = upload(space, logits);
  ShapedView<float const, 2> const lv = ld.view(rows, vocab);
  std::vector<LogitMask> masks{LogitMask{}, random_mask(rng, vocab, 0.3), LogitMask{}, random_mask(rng, vocab, 0.02)};
  for (float t : {1.0f, 0.6f, 2.5f}) {
    INFO("temperature " << t);
    auto ids_d = filled(space, rows * vocab, std::uint32_t{0xffffffff});  // [rows][vocab]
    auto probs_d = filled(space, rows * vocab, -1.0f);
    probe_distribution(space, lv, 0, t, masks, ids_d.view(rows, vocab), probs_d.view(rows, vocab));
    auto ids5_d = filled(space, rows * 5, std::uint32_t{0xffffffff});  // [rows][5]
    auto probs5_d = filled(space, rows * 5, -1.0f);
    probe_distribution(space, lv, 5, t, masks, ids5_d.view(rows, 5), probs5_d.view(rows, 5));
    auto entropy_d = filled(space, rows, -1.0f);
    probe_entropy(space, lv, t, masks, std::span<float>(entropy_d.data(), rows));
    std::vector<std::uint32_t> all_ids(rows * vocab);  // host memory
    for (std::size_t i = 0; i < all_ids.size(); ++i) all_ids[i] = static_cast<std::uint32_t>(i % vocab);
    auto lp_d = filled(space, rows * vocab, 1.0f);
    probe_logprobs(space, lv, ShapedView<std::uint32_t const, 2>(all_ids.data(), rows, vocab), t, masks, lp_d.view(rows, vocab));
    std::vector<SamplingParams> gp(rows, SamplingParams::greedy());
    std::vector<SampleKey> keys(rows);
    auto greedy_d = filled(space, rows, std::uint32_t{0xffffffff});
    sample(space, lv, gp, masks, keys, std::span<std::uint32_t>(greedy_d.data(), rows));
    auto const ids = download(space, ids_d), ids5 = download(space, ids5_d), greedy = download(space, greedy_d);
    auto const probs = download(space, probs_d), probs5 = download(space, probs5_d);
    auto const entropy = download(space, entropy_d), lp = download(space, lp_d);
    for (std::size_t r = 0; r < rows; ++r) {
      std::span<float const> row(logits.data() + r * vocab, vocab);
      auto const ref = reference::softmax(row, t, masks[r]);
      auto const order = reference::token_order(row, masks[r]);
      // argmax of the allowed logits = greedy = first entry of the distribution
      CHECK(greedy[r] == order.front());
      CHECK(ids[r * vocab] == greedy[r]);
      CHECK(ids5[r * 5] == greedy[r]);
      std::set<std::uint32_t> seen;
      double total = 0;
      for (std::size_t j = 0; j < vocab; ++j) {
        std::uint32_t const id = ids[r * vocab + j];
        seen.insert(id);
        total += probs[r * vocab + j];
        CHECK(std::abs(probs[r * vocab + j] - ref[id]) <= 1e-6 + 1e-5 * ref[id]);
        if (j < order.size()) CHECK(id == order[j]);
        if (j < 5) {
          CHECK(ids5[r * 5 + j] == id);
          CHECK(probs5[r * 5 + j] == probs[r * vocab + j]);
        }
        if (j > 0) CHECK(probs[r * vocab + j] <= probs[r * vocab + j - 1]);
      }
      CHECK(seen.size() == vocab);  // k = 0 lists every id once
      CHECK(total == Approx(1.0).epsilon(1e-5));
      for (std::size_t id = 0; id < vocab; ++id) {
        float const l = lp[r * vocab + id];
        if (ref[id] == 0.0) {
          CHECK(std::isinf(l));
        } else {
          CHECK(std::abs(l - std::log(ref[id])) <= 1e-5 + 1e-5 * std::abs(std::log(ref[id])));
        }
      }
      // logprob(t) equals the entry of t in the distribution
      for (std::size_t j = 0; j < 5; ++j) CHECK(std::exp(lp[r * vocab + ids5[r * 5 + j]]) == Approx(probs5[r * 5 + j]).epsilon(1e-5));
      double const h = reference::entropy(row, t, masks[r]);
      CHECK(std::abs(entropy[r] - h) <= 1e-5 + 1e-5 * h);
      CHECK(entropy[r] >= 0.0f);
      CHECK(entropy[r] <= std::log(static_cast<float>(masks[r].allowed_count(vocab))) + 1e-5f);
    }
  }
  // Uniform logits: entropy = ln V exactly up to rounding.
  auto const flat = filled(space, vocab, 0.25f);
  auto h = filled(space, 1, -1.0f);
  probe_entropy(space, flat.view(1, vocab), 1.0f, {}, std::span<float>(h.data(), 1));
  CHECK(download(space, h)[0] == Approx(std::log(vocab)).epsilon(1e-6));
  // Bad input.
  ShapedView<float const, 2> const one_row = ld.view(1, vocab);
  std::vector<std::uint32_t> bad_ids{0, static_cast<std::uint32_t>(vocab)};  // host memory
  auto out = filled(space, 2, 1.0f);
  ShapedView<std::uint32_t const, 2> const bad_view(bad_ids.data(), 1, 2);
  REQUIRE_THROWS_WITH(probe_logprobs(space, one_row, bad_view, 1.0f, {}, out.view(1, 2)),
                      Catch::Contains("ids[0][1] = 500 >= vocab = 500"));
  auto ids = filled(space, vocab + 1, std::uint32_t{0});
  auto probs = filled(space, vocab + 1, 0.0f);
  REQUIRE_THROWS_WITH(probe_distribution(space, one_row, vocab + 1, 1.0f, {}, ids.view(1, vocab + 1), probs.view(1, vocab + 1)),
                      Catch::Contains("k = 501 > vocab = 500"));
  REQUIRE_THROWS_WITH(probe_entropy(space, one_row, 0.0f, {}, std::span<float>(h.data(), 1)), Catch::Contains("temperature = 0"));
}

TEST_CASE("the reference applies logit bias, then repetition, presence and frequency penalties, as llama.cpp", "[kernel][sample]") {
  // Pinned by hand: ids 0..4, recent {3, 1, 3, 4, 0} with last_n = 4 (id 0, the oldest, is outside the window).
  std::vector<float> const logits{2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
  std::vector<std::uint32_t> const recent{0, 3, 1, 3, 4};
  std::vector<LogitBias> const bias{{4, -1.5f}, {2, 0.25f}};
  SamplingParams const p = SamplingParams::greedy().with_penalties(Penalties{2.0f, 0.5f, 0.25f, 4});
  auto const l = reference::penalized_logits(logits, p, SampleRowInputs{recent, bias});
  CHECK(l[0] == 2.0f);                            // outside the window
  CHECK(l[1] == -1.0f * 2.0f - (0.25f + 0.5f));   // negative: multiplied; seen once
  CHECK(l[2] == 0.75f);                           // biased, not seen
  CHECK(l[3] == 3.0f / 2.0f - (2 * 0.25f + 0.5f));  // positive: divided; seen twice
  CHECK(l[4] == (1.0f - 1.5f) * 2.0f - (0.25f + 0.5f));  // bias first, so the sign is the biased logit's
  // The kernel's edits give the same logits (host and every space apply these).
  std::vector<SamplingParams> const params{p};
  std::vector<SampleRowInputs> const in{SampleRowInputs{recent, bias}};
  LogitEdits const e = make_logit_edits("test", params, in, logits.size());
  std::vector<float> applied = logits;
  for (LogitEdit const& x : e.row(0)) applied[x.id] = apply_logit_edit(x, applied[x.id]);
  CHECK(applied == l);
}

TEST_CASE("logit bias and penalties: every sampler draws from the reference's penalized distribution (chi-square)",
          "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const vocab = 48, draws = 8000;
  auto const row = random_floats(rng, vocab, -3.0f, 3.0f);
  auto const recent = random_tokens(rng, 40, 16);  // repeats among the first 16 ids; last_n = 24 cuts the window
  auto const bias = random_bias(rng, vocab, 6);
  SampleRowInputs const in{recent, bias};
  Penalties const pen = random_penalties(rng, 24);
  INFO("repeat " << pen.repeat << " presence " << pen.presence << " frequency " << pen.frequency);
  for (bool masked : {false, true}) {
    LogitMask const mask = masked ? random_mask(rng, vocab, 0.7) : LogitMask{};
    for (SamplingParams const& base : all_samplers()) {
      SamplingParams const p = base.with_penalties(pen);
      INFO("sampler " << sampling_kind_name(p.kind) << " masked " << masked);
      auto const dist = reference::filtered_distribution(row, p, mask, in);
      check_draws_fit(dist, draw_with(space, row, p, mask, in, rng(), draws));
    }
  }
}

TEST_CASE("greedy with penalties is the argmax of the penalized logits, per row of a batch", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const rows = 12, vocab = 700;
  auto logits = random_floats(rng, rows * vocab, -4.0f, 4.0f);  // [rows][vocab]
  std::vector<std::vector<std::uint32_t>> recent(rows);
  std::vector<std::vector<LogitBias>> bias(rows);
  std::vector<SamplingParams> params(rows);
  std::vector<SampleRowInputs> inputs(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    // The row's best ids recur in its window, so the penalties change the argmax on most rows.
    auto const order = reference::token_order(std::span<float const>(logits.data() + r * vocab, vocab), LogitMask{});
    for (std::size_t j = 0; j < 30; ++j) recent[r].push_back(order[j % 5]);
    if (r % 3 == 1) bias[r] = random_bias(rng, vocab, 8);
    params[r] = SamplingParams::greedy().with_penalties(r % 4 == 3 ? Penalties{} : random_penalties(rng, 16 + static_cast<std::uint32_t>(r)));
    inputs[r] = SampleRowInputs{recent[r], bias[r]};
  }
  auto const ld = upload(space, logits);
  auto out = filled(space, rows, std::uint32_t{0xffffffff});
  std::vector<SampleKey> keys(rows);
  sample(space, ld.view(rows, vocab), params, {}, keys, inputs, std::span<std::uint32_t>(out.data(), rows));
  auto const got = download(space, out);
  std::size_t changed = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    std::span<float const> const row(logits.data() + r * vocab, vocab);
    auto const pen = reference::penalized_logits(row, params[r], inputs[r]);
    auto const want = reference::token_order(pen, LogitMask{}).front();
    CHECK(got[r] == want);
    changed += want != reference::token_order(row, LogitMask{}).front() ? 1 : 0;
  }
  CHECK(changed >= rows / 2);  // the check above is not vacuous
  // Only the last last_n tokens count: the best id seen just outside the window is not penalized.
  std::vector<float> const one(logits.begin(), logits.begin() + static_cast<std::ptrdiff_t>(vocab));
  auto const best = reference::token_order(one, LogitMask{}).front();
  std::vector<std::uint32_t> const window{best, (best + 1) % 700, (best + 2) % 700};
  SampleRowInputs const in{window, {}};
  SamplingParams const far = SamplingParams::greedy().with_penalties(Penalties{1.0f, 100.0f, 0.0f, 2});
  SamplingParams const near = SamplingParams::greedy().with_penalties(Penalties{1.0f, 100.0f, 0.0f, 3});
  CHECK(draw_with(space, one, far, {}, in, 1, 1)[0] == best);
  CHECK(draw_with(space, one, near, {}, in, 1, 1)[0] != best);
}

TEST_CASE("sample rejects bad penalties and penalty inputs, naming the row and the entry", "[kernel][sample]") {
  Space const space = test::make_space();
  std::mt19937_64 rng(test::fresh_seed());
  auto const logits = upload(space, random_floats(rng, 2 * 8, -1.0f, 1.0f));  // [2][8]
  std::vector<SampleKey> keys(2);
  auto out = filled(space, 2, std::uint32_t{99});
  std::vector<SamplingParams> params(2, SamplingParams::multinomial().with_penalties(Penalties{1.3f, 0.0f, 0.0f, 8}));
  auto call = [&](std::vector<SampleRowInputs> const& in, std::vector<SamplingParams> const& p) {
    sample(space, logits.view(2, 8), p, {}, keys, in, std::span<std::uint32_t>(out.data(), 2));
  };
  std::vector<std::uint32_t> const ok_recent{1, 2, 2}, bad_recent{1, 8};
  std::vector<LogitBias> const ok_bias{{3, 1.0f}}, bad_id{{8, 1.0f}}, twice{{3, 1.0f}, {3, -1.0f}},
      nan_bias{{2, std::numeric_limits<float>::quiet_NaN()}};
  SampleRowInputs const ok{ok_recent, ok_bias};
  REQUIRE_THROWS_AS(call({ok, {bad_recent, {}}}, params), OutOfRange);
  REQUIRE_THROWS_WITH(call({ok, {bad_recent, {}}}, params), Catch::Contains("inputs[1].recent[1] = 8 >= vocab = 8"));
  REQUIRE_THROWS_WITH(call({{ok_recent, bad_id}, ok}, params), Catch::Contains("inputs[0].logit_bias[0].id = 8"));
  REQUIRE_THROWS_WITH(call({ok, {ok_recent, twice}}, params), Catch::Contains("inputs[1].logit_bias lists id 3 twice"));
  REQUIRE_THROWS_WITH(call({{ok_recent, nan_bias}, ok}, params), Catch::Contains("inputs[0].logit_bias[0].bias = nan"));
  REQUIRE_THROWS_WITH(call({ok}, params), Catch::Contains("inputs.size() (rows) = 1"));
  auto bad = params;
  bad[1].penalties.repeat = 0.0f;
  REQUIRE_THROWS_WITH(call({ok, ok}, bad), Catch::Contains("params[1].penalties.repeat = 0"));
  bad = params;
  bad[0].penalties.frequency = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_WITH(call({ok, ok}, bad), Catch::Contains("params[0].penalties.frequency = inf"));
  CHECK(download(space, out) == std::vector<std::uint32_t>{99, 99});  // nothing written
}
