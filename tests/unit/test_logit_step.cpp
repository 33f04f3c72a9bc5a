// logit_step (kernels/logit_step.hpp) on the space under test (Host here; Kokkos' default space in the Kokkos
// build): a step's rows mixed in every order (samplers at several temperatures, raw rows, top-k, log-probs,
// entropy, with and without masks, rows of one group apart in the logits) give each row exactly what the
// same kernel gives that row alone on the same space; bad plans are rejected before any kernel runs, naming
// the row, and leave the arena usable.
#include <catch2/catch.hpp>

#include "test_kernel_support.hpp"
#include "tiny_runtime.hpp"

#include <piecrust/kernels/logit_step.hpp>

#include <cstdint>
#include <random>
#include <span>
#include <variant>
#include <vector>

using namespace piecrust;
using testing::TestSpace;

namespace {

constexpr std::size_t vocab = 301;  // odd, so no kernel path sees a power of two

/// Random peaked logits, [rows][vocab]: standard deviation about 3.
std::vector<float> peaked_logits(std::mt19937_64& rng, std::size_t rows) {
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(rows * vocab);
  for (float& x : v) x = d(rng);
  return v;
}

LogitMask random_mask(std::mt19937_64& rng) {
  std::vector<std::uint32_t> ids;
  std::bernoulli_distribution keep(0.3);
  for (std::uint32_t i = 0; i < vocab; ++i) {
    if (keep(rng)) ids.push_back(i);
  }
  if (ids.empty()) ids.push_back(7);
  return LogitMask::allow(std::span<std::uint32_t const>(ids), vocab);
}

/// What the row's kernel computes for `row` (one row of `logits`, the space's memory) alone.
LogitRowResult alone(TestSpace const& space, float const* row, LogitRowPlan const& p) {
  ShapedView<float const, 2> const view(row, 1, vocab);
  std::vector<LogitMask> masks;  // [1] or empty
  if (p.mask != nullptr) masks.push_back(*p.mask);
  auto const mem = memory_of(space);
  LogitRowResult r;
  std::visit(
      [&](auto const& t) {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, logit_task::Sample>) {
          Buffer<std::uint32_t, typename TestSpace::memory_space> tok(1, mem);
          sample(space, view, std::span(&t.params, 1), masks, std::span(&t.key, 1), std::span<std::uint32_t>(tok.data(), 1));
          r.token = to_host_vector(space, std::span<std::uint32_t>(tok.data(), 1))[0];
          Buffer<float, typename TestSpace::memory_space> lp(1, mem);
          probe_logprobs(space, view, ShapedView<std::uint32_t const, 2>(&r.token, 1, 1), t.params.effective_temperature(), masks,
                         ShapedView<float, 2>(lp.data(), 1, 1));
          r.logprob = to_host_vector(space, std::span<float>(lp.data(), 1))[0];
        } else if constexpr (std::is_same_v<T, logit_task::Raw>) {
          r.values = to_host_vector(space, std::span<float const>(row, vocab));
        } else if constexpr (std::is_same_v<T, logit_task::TopK>) {
          std::size_t const k = t.k == 0 ? vocab : t.k;
          Buffer<std::uint32_t, typename TestSpace::memory_space> ids(k, mem);
          Buffer<float, typename TestSpace::memory_space> probs(k, mem);
          probe_distribution(space, view, t.k, t.temperature, masks, ShapedView<std::uint32_t, 2>(ids.data(), 1, k),
                             ShapedView<float, 2>(probs.data(), 1, k));
          r.ids = to_host_vector(space, std::span<std::uint32_t>(ids.data(), k));
          r.values = to_host_vector(space, std::span<float>(probs.data(), k));
        } else if constexpr (std::is_same_v<T, logit_task::Logprobs>) {
          if (t.ids.empty()) return;
          Buffer<float, typename TestSpace::memory_space> lp(t.ids.size(), mem);
          probe_logprobs(space, view, ShapedView<std::uint32_t const, 2>(t.ids.data(), 1, t.ids.size()), t.temperature, masks,
                         ShapedView<float, 2>(lp.data(), 1, t.ids.size()));
          r.values = to_host_vector(space, std::span<float>(lp.data(), t.ids.size()));
        } else {
          Buffer<float, typename TestSpace::memory_space> h(1, mem);
          probe_entropy(space, view, t.temperature, masks, std::span<float>(h.data(), 1));
          r.values = to_host_vector(space, std::span<float>(h.data(), 1));
        }
      },
      p.task);
  return r;
}

void require_same(LogitRowResult const& got, LogitRowResult const& want, std::size_t row) {
  INFO("row " << row);
  CHECK(got.token == want.token);
  CHECK(got.logprob == want.logprob);
  CHECK(got.ids == want.ids);
  CHECK(got.values == want.values);
}

}  // namespace

TEST_CASE("logit_step gives every row what its kernel gives that row alone", "[kernel][logit_step]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  TestSpace const space = testing::make_test_space();
  std::vector<LogitMask> const masks{random_mask(rng), random_mask(rng), random_mask(rng)};
  namespace lt = logit_task;
  // Groups are interleaved, so most calls gather their rows; two temperatures among the samplers.
  std::vector<LogitRowPlan> const plan{
      {lt::Sample{SamplingParams::multinomial(), {seed, 1, 0}}, nullptr},
      {lt::Raw{}, &masks[0]},  // a raw row ignores its mask
      {lt::TopK{5, 0.8f}, nullptr},
      {lt::Sample{SamplingParams::top_k_of(TopK{7}, Temperature{0.7f}), {seed, 2, 0}}, &masks[1]},
      {lt::Logprobs{{3, 17, 300}, 1.0f}, nullptr},
      {lt::Entropy{1.3f}, &masks[2]},
      {lt::Sample{SamplingParams::greedy(), {seed, 3, 0}}, nullptr},
      {lt::TopK{0, 1.0f}, &masks[0]},
      {lt::Logprobs{{}, 1.0f}, nullptr},
      {lt::Sample{SamplingParams::top_p_of(TopP{0.9f}, Temperature{1.0f}), {seed, 1, 1}}, &masks[2]},
      {lt::Entropy{1.0f}, nullptr},
      {lt::Logprobs{{5}, 2.0f}, &masks[1]},
      {lt::TopK{5, 0.8f}, &masks[1]},
      {lt::Sample{SamplingParams::min_p_of(MinP{0.05f}, Temperature{0.7f}), {seed, 4, 9}}, nullptr},
      {lt::Raw{}, nullptr},
  };
  std::vector<float> const host_logits = peaked_logits(rng, plan.size());
  auto const logits = to_space(space, host_logits);  // [rows][vocab], the space's memory
  ShapedView<float const, 2> const view(logits.data(), plan.size(), vocab);

  LogitStepArena<TestSpace> arena;
  for (int round = 0; round < 2; ++round) {  // the second round reuses the arena
    std::vector<LogitRowResult> const got = logit_step(space, view, plan, arena);
    REQUIRE(got.size() == plan.size());
    for (std::size_t r = 0; r < plan.size(); ++r) require_same(got[r], alone(space, logits.data() + r * vocab, plan[r]), r);
  }
  // Spot checks of the results themselves (beyond agreeing with the kernels).
  std::vector<LogitRowResult> const got = logit_step(space, view, plan);
  CHECK(got[1].values == std::vector<float>(host_logits.begin() + vocab, host_logits.begin() + 2 * vocab));
  CHECK(masks[1].allows(got[3].token));
  CHECK(masks[2].allows(got[9].token));
  auto const* greedy_row = host_logits.data() + 6 * vocab;
  CHECK(got[6].token == static_cast<std::uint32_t>(std::max_element(greedy_row, greedy_row + vocab) - greedy_row));
  CHECK(got[4].values.size() == 3);
  CHECK(got[8].values.empty());
  CHECK(got[7].ids.size() == vocab);
  CHECK(got[6].logprob <= 0.0f);
}

TEST_CASE("logit_step rejects a bad plan before any kernel runs, naming the row", "[kernel][logit_step][errors]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  TestSpace const space = testing::make_test_space();
  std::vector<float> const host_logits = peaked_logits(rng, 3);
  auto const logits = to_space(space, host_logits);
  ShapedView<float const, 2> const view(logits.data(), 3, vocab);
  namespace lt = logit_task;
  LogitMask const short_mask = LogitMask::allow({1, 2}, vocab - 1);
  LogitMask const none = LogitMask::allow(std::span<std::uint32_t const>{}, vocab);
  std::vector<LogitRowPlan> const good{{lt::Sample{SamplingParams::multinomial(), {seed, 1, 0}}, nullptr},
                                       {lt::TopK{4, 1.0f}, nullptr},
                                       {lt::Entropy{1.0f}, nullptr}};
  LogitStepArena<TestSpace> arena;
  std::vector<LogitRowResult> const before = logit_step(space, view, good, arena);

  auto with_row1 = [&](LogitRowPlan p) {
    auto plan = good;
    plan[1] = std::move(p);
    return plan;
  };
  REQUIRE_THROWS_WITH(logit_step(space, view, with_row1({lt::TopK{vocab + 1, 1.0f}, nullptr}), arena),
                      Catch::Contains("plan[1].k = 302"));
  REQUIRE_THROWS_AS(logit_step(space, view, with_row1({lt::Logprobs{{4, 301}, 1.0f}, nullptr}), arena), OutOfRange);
  REQUIRE_THROWS_WITH(logit_step(space, view, with_row1({lt::Logprobs{{4, 301}, 1.0f}, nullptr}), arena),
                      Catch::Contains("plan[1].ids[1] = 301"));
  REQUIRE_THROWS_WITH(logit_step(space, view, with_row1({lt::Entropy{0.0f}, nullptr}), arena), Catch::Contains("plan[1].temperature"));
  REQUIRE_THROWS_AS(logit_step(space, view, with_row1({lt::TopK{4, -1.0f}, nullptr}), arena), InvalidArgument);
  REQUIRE_THROWS_WITH(logit_step(space, view, with_row1({lt::TopK{4, 1.0f}, &short_mask}), arena), Catch::Contains("plan[1].mask"));
  REQUIRE_THROWS_WITH(logit_step(space, view, with_row1({lt::TopK{4, 1.0f}, &none}), arena), Catch::Contains("allows no token"));
  REQUIRE_THROWS_AS(logit_step(space, view, with_row1({lt::Sample{SamplingParams::top_k_of(TopK{0}), {seed, 1, 0}}, nullptr}), arena),
                    InvalidArgument);
  auto const too_short = std::vector<LogitRowPlan>(good.begin(), good.begin() + 2);
  REQUIRE_THROWS_AS(logit_step(space, view, too_short, arena), InvalidArgument);
  // Nothing changed: the same plan gives the same results.
  std::vector<LogitRowResult> const after = logit_step(space, view, good, arena);
  for (std::size_t r = 0; r < good.size(); ++r) require_same(after[r], before[r], r);
}
