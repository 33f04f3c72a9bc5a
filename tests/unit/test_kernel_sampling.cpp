// sample and the probes on the host: chi-square tests of every sampler against the exact filtered
// distribution of the double-precision reference, determinism per (seed, row, step) and across thread
// counts, LogitMask always respected, deterministic ties, probes cross-checked with each other.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/sampling.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::test::random_floats;

namespace {

/// Upper critical value of chi-square with df degrees of freedom at p = 1e-4 (Wilson-Hilferty).
double chi_square_critical(double df) {
  double const z = 3.719;
  double const a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
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

std::vector<std::uint32_t> draw(Host const& host, std::vector<float> const& row, SamplingParams const& p, LogitMask const& mask,
                                std::uint64_t seed, std::size_t n, std::uint64_t stream = 7) {
  std::size_t const vocab = row.size();
  std::vector<float> logits(n * vocab);  // [n][vocab] the same row n times
  for (std::size_t i = 0; i < n; ++i) std::copy(row.begin(), row.end(), logits.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  std::vector<SamplingParams> params(n, p);
  std::vector<LogitMask> masks(mask.empty() ? 0 : n, mask);  // empty: allow all
  std::vector<SampleKey> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = {seed, stream, i};
  std::vector<std::uint32_t> out(n);
  sample(host, ShapedView<float const, 2>(logits.data(), n, vocab), params, masks, keys, out);
  return out;
}

std::vector<SamplingParams> all_samplers() {
  return {SamplingParams::multinomial(),       SamplingParams::with_temperature(0.7f), SamplingParams::top_k_of(7, 0.8f),
          SamplingParams::top_p_of(0.8f, 1.3f), SamplingParams::min_p_of(0.1f, 1.0f),  SamplingParams::top_k_top_p_of(12, 0.7f, 1.1f),
          SamplingParams::top_p_of(0.999f)};
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
  Host const host;
  std::size_t const vocab = 48, draws = 8000;
  auto const row = random_floats(rng, vocab, -3.0f, 3.0f);
  for (bool masked : {false, true}) {
    LogitMask const mask = masked ? random_mask(rng, vocab, 0.7) : LogitMask{};
    for (SamplingParams const& p : all_samplers()) {
      INFO("sampler " << sampling_kind_name(p.kind) << " masked " << masked);
      auto const dist = reference::filtered_distribution(row, p, mask);
      auto const got = draw(host, row, p, mask, rng(), draws);
      std::vector<double> counts(vocab, 0.0);
      for (auto id : got) counts[id] += 1;
      double chi = 0;
      double df = -1;
      for (std::size_t i = 0; i < vocab; ++i) {
        if (dist[i] == 0.0) {
          REQUIRE(counts[i] == 0.0);  // outside the filtered support: never drawn
          continue;
        }
        double const e = dist[i] * draws;
        chi += (counts[i] - e) * (counts[i] - e) / e;
        df += 1;
      }
      if (df >= 1) CHECK(chi < chi_square_critical(df));
    }
  }
}

TEST_CASE("sampling is reproducible from (seed, row, step) and independent of threads and batch position", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::size_t const vocab = 1000;
  auto const row = random_floats(rng, vocab, -4.0f, 4.0f);
  for (SamplingParams const& p : all_samplers()) {
    auto const a = draw(Host(1), row, p, {}, 42, 60);
    auto const b = draw(Host(3), row, p, {}, 42, 60);
    CHECK(a == b);
    auto const c = draw(Host(2), row, p, {}, 43, 60);
    CHECK(a != c);
    auto const d = draw(Host(2), row, p, {}, 42, 60, 8);
    CHECK(a != d);
  }
  // Same key at a different batch position gives the same token.
  Host const host;
  std::vector<float> logits(3 * vocab);
  auto const other = random_floats(rng, vocab);
  std::copy(other.begin(), other.end(), logits.begin());
  std::copy(row.begin(), row.end(), logits.begin() + vocab);
  std::copy(other.begin(), other.end(), logits.begin() + 2 * vocab);
  std::vector<SamplingParams> params(3, SamplingParams::top_p_of(0.9f));
  std::vector<SampleKey> keys{{1, 5, 0}, {9, 9, 9}, {1, 6, 0}};
  std::vector<std::uint32_t> out(3);
  sample(host, ShapedView<float const, 2>(logits.data(), 3, vocab), params, {}, keys, out);
  std::vector<std::uint32_t> single(1);
  std::vector<SampleKey> key1{{9, 9, 9}};
  std::vector<SamplingParams> p1(1, SamplingParams::top_p_of(0.9f));
  sample(host, ShapedView<float const, 2>(logits.data() + vocab, 1, vocab), p1, {}, key1, single);
  CHECK(single[0] == out[1]);
}

TEST_CASE("a LogitMask is always respected and ties break toward the lower id", "[kernel][sample]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const vocab = 300;
  auto samplers = all_samplers();
  samplers.push_back(SamplingParams::greedy());
  for (int trial = 0; trial < 20; ++trial) {
    auto row = random_floats(rng, vocab, -5.0f, 5.0f);
    LogitMask const mask = random_mask(rng, vocab, trial % 2 == 0 ? 0.05 : 0.5);
    row[0] = 100.0f;  // the most likely token is often forbidden
    for (SamplingParams const& p : samplers) {
      for (auto id : draw(host, row, p, mask, rng(), 50)) REQUIRE(mask.allows(id));
    }
  }
  std::vector<float> row(10, 0.5f);
  row[5] = 2.0f;
  row[9] = 2.0f;
  CHECK(draw(host, row, SamplingParams::greedy(), {}, 1, 1)[0] == 5);
  CHECK(draw(host, row, SamplingParams::top_k_of(1), {}, 1, 1)[0] == 5);
  CHECK(draw(host, row, SamplingParams::greedy(), LogitMask::forbid({5}, 10), 1, 1)[0] == 9);
  // Only one allowed id: every sampler returns it.
  for (SamplingParams const& p : samplers) CHECK(draw(host, row, p, LogitMask::allow({3}, 10), 3, 5) == std::vector<std::uint32_t>(5, 3));
}

TEST_CASE("sample rejects bad params and masks, naming the row", "[kernel][sample]") {
  Host const host;
  std::vector<float> logits(2 * 8, 1.0f);
  std::vector<SampleKey> keys(2);
  std::vector<std::uint32_t> out(2, 99);
  auto call = [&](std::vector<SamplingParams> const& params, std::vector<LogitMask> const& masks = {}) {
    sample(host, ShapedView<float const, 2>(logits.data(), 2, 8), params, masks, keys, out);
  };
  SamplingParams const ok = SamplingParams::multinomial();
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::with_temperature(0.0f)}), Catch::Contains("params[1].temperature = 0"));
  REQUIRE_THROWS_WITH(call({SamplingParams::top_k_of(0), ok}), Catch::Contains("params[0].top_k = 0"));
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::top_p_of(1.5f)}), Catch::Contains("params[1].top_p = 1.5"));
  REQUIRE_THROWS_WITH(call({ok, SamplingParams::min_p_of(-0.1f)}), Catch::Contains("params[1].min_p = -0.1"));
  REQUIRE_THROWS_WITH(call({ok}), Catch::Contains("params.size() (rows) = 1"));
  REQUIRE_THROWS_WITH(call({ok, ok}, {LogitMask{}, LogitMask::allow({1}, 9)}), Catch::Contains("masks[1].size() = 9"));
  Brle none;
  none.append(false, 8);
  REQUIRE_THROWS_WITH(call({ok, ok}, {LogitMask(none), LogitMask{}}), Catch::Contains("masks[0] allows no token"));
  CHECK(out == std::vector<std::uint32_t>{99, 99});  // nothing written
}

TEST_CASE("probes match the reference and agree with each other and with greedy", "[kernel][probe]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const rows = 4, vocab = 500;
  auto logits = random_floats(rng, rows * vocab, -6.0f, 6.0f);  // [rows][vocab]
  std::vector<LogitMask> masks{LogitMask{}, random_mask(rng, vocab, 0.3), LogitMask{}, random_mask(rng, vocab, 0.02)};
  for (float t : {1.0f, 0.6f, 2.5f}) {
    INFO("temperature " << t);
    std::vector<std::uint32_t> ids(rows * vocab);
    std::vector<float> probs(rows * vocab);
    probe_distribution(host, ShapedView<float const, 2>(logits.data(), rows, vocab), 0, t, masks,
                       ShapedView<std::uint32_t, 2>(ids.data(), rows, vocab), ShapedView<float, 2>(probs.data(), rows, vocab));
    std::vector<std::uint32_t> ids5(rows * 5);
    std::vector<float> probs5(rows * 5);
    probe_distribution(host, ShapedView<float const, 2>(logits.data(), rows, vocab), 5, t, masks,
                       ShapedView<std::uint32_t, 2>(ids5.data(), rows, 5), ShapedView<float, 2>(probs5.data(), rows, 5));
    std::vector<float> entropy(rows);
    probe_entropy(host, ShapedView<float const, 2>(logits.data(), rows, vocab), t, masks, entropy);
    std::vector<float> lp(rows * vocab);
    std::vector<std::uint32_t> all_ids(rows * vocab);
    for (std::size_t i = 0; i < all_ids.size(); ++i) all_ids[i] = static_cast<std::uint32_t>(i % vocab);
    probe_logprobs(host, ShapedView<float const, 2>(logits.data(), rows, vocab),
                   ShapedView<std::uint32_t const, 2>(all_ids.data(), rows, vocab), t, masks,
                   ShapedView<float, 2>(lp.data(), rows, vocab));
    std::vector<std::uint32_t> greedy(rows);
    std::vector<SamplingParams> gp(rows, SamplingParams::greedy());
    std::vector<SampleKey> keys(rows);
    sample(host, ShapedView<float const, 2>(logits.data(), rows, vocab), gp, masks, keys, greedy);
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
  std::vector<float> flat(vocab, 0.25f);
  std::vector<float> h(1);
  probe_entropy(host, ShapedView<float const, 2>(flat.data(), 1, vocab), 1.0f, {}, h);
  CHECK(h[0] == Approx(std::log(vocab)).epsilon(1e-6));
  // Bad input.
  std::vector<std::uint32_t> bad_ids{0, static_cast<std::uint32_t>(vocab)};
  std::vector<float> out(2);
  REQUIRE_THROWS_WITH(probe_logprobs(host, ShapedView<float const, 2>(logits.data(), 1, vocab),
                                     ShapedView<std::uint32_t const, 2>(bad_ids.data(), 1, 2), 1.0f, {},
                                     ShapedView<float, 2>(out.data(), 1, 2)),
                      Catch::Contains("ids[0][1] = 500 >= vocab = 500"));
  std::vector<std::uint32_t> ids(vocab + 1);
  std::vector<float> probs(vocab + 1);
  REQUIRE_THROWS_WITH(probe_distribution(host, ShapedView<float const, 2>(logits.data(), 1, vocab), vocab + 1, 1.0f, {},
                                         ShapedView<std::uint32_t, 2>(ids.data(), 1, vocab + 1),
                                         ShapedView<float, 2>(probs.data(), 1, vocab + 1)),
                      Catch::Contains("k = 501 > vocab = 500"));
  REQUIRE_THROWS_WITH(probe_entropy(host, ShapedView<float const, 2>(logits.data(), 1, vocab), 0.0f, {}, h),
                      Catch::Contains("temperature = 0"));
}
