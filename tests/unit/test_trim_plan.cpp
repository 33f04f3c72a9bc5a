// TrimPlan against a naive per-position implementation of Pie's page-trim rules, on random rows.
#include <catch2/catch.hpp>

#include <piecrust/core/trim_plan.hpp>

#include <random>
#include <vector>

using piecrust::AttentionMask;
using piecrust::Brle;
using piecrust::TrimPlan;

namespace {

// The rules, position by position: O(rows * kv_len).
TrimPlan naive_plan(std::uint32_t ps, std::size_t kv_before, std::size_t n_input, std::vector<AttentionMask> const& rows) {
  std::size_t const kv_len = kv_before + n_input;
  TrimPlan plan;
  plan.num_pages = (kv_len + ps - 1) / ps;
  for (std::size_t p = 0; p < plan.num_pages; ++p) {
    bool dead = !rows.empty() && p < kv_before / ps && p + 1 < plan.num_pages;
    for (auto const& row : rows) {
      for (std::size_t pos = p * ps; dead && pos < std::min((p + 1) * ps, kv_len); ++pos) dead = row.masked(pos);
    }
    if (!dead) plan.kept_pages.push_back(static_cast<std::uint32_t>(p));
  }
  for (auto const& row : rows) {
    if (plan.kept_pages.size() == plan.num_pages) {
      plan.rows.push_back(row);
      continue;
    }
    std::vector<std::uint8_t> bits;
    for (std::uint32_t const p : plan.kept_pages) {
      for (std::size_t pos = p * ps; pos < std::min<std::size_t>((p + 1) * ps, row.size()); ++pos) {
        bits.push_back(row.masked(pos) ? 1 : 0);
      }
    }
    plan.rows.emplace_back(Brle::from_bits(bits));
  }
  return plan;
}

std::vector<std::uint32_t> runs_of(AttentionMask const& m) { return {m.bits().runs().begin(), m.bits().runs().end()}; }

}  // namespace

TEST_CASE("TrimPlan matches the naive rules on random page-aligned and ragged rows", "[trim]") {
  auto const seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 400; ++trial) {
    std::uint32_t const ps = 1u + rng() % 8;
    std::size_t const kv_before = rng() % 80;
    std::size_t const n_input = 1 + rng() % 4;
    std::size_t const kv_len = kv_before + n_input;
    // Rows share a masked middle (so trims happen) plus per-row noise.
    std::size_t const sink = rng() % 6;
    std::size_t const window = 1 + rng() % 20;
    std::vector<AttentionMask> rows;
    for (std::size_t r = 0; r < n_input; ++r) {
      std::size_t const len = kv_len - (rng() % 3 == 0 ? rng() % (kv_len + 1) : 0);  // some rows end early
      Brle bits;
      for (std::size_t pos = 0; pos < len; ++pos) {
        bool masked = pos >= sink && pos + window < len;
        if (rng() % 40 == 0) masked = !masked;
        bits.append(masked);
      }
      rows.emplace_back(bits);
    }
    TrimPlan const got = TrimPlan::compute(ps, kv_before, n_input, rows);
    TrimPlan const want = naive_plan(ps, kv_before, n_input, rows);
    REQUIRE(got.num_pages == want.num_pages);
    REQUIRE(got.kept_pages == want.kept_pages);
    REQUIRE(got.rows.size() == want.rows.size());
    for (std::size_t r = 0; r < rows.size(); ++r) {
      REQUIRE(got.rows[r].bits().to_bits() == want.rows[r].bits().to_bits());
      if (!got.trims_anything()) REQUIRE(runs_of(got.rows[r]) == runs_of(rows[r]));  // unchanged when nothing drops
    }
  }
}

TEST_CASE("TrimPlan keeps written pages and the last page", "[trim]") {
  // Every row masks everything, yet page 2 (written) and the last page stay.
  std::vector<AttentionMask> rows(2, AttentionMask::from_runs({0, 42}));
  TrimPlan const plan = TrimPlan::compute(16, 40, 2, rows);
  CHECK(plan.kept_pages == std::vector<std::uint32_t>{2});
  TrimPlan const no_rows = TrimPlan::compute(16, 319, 1, {});
  CHECK(no_rows.kept_pages.size() == 20);
  CHECK_FALSE(no_rows.trims_anything());
}

TEST_CASE("TrimPlan rejects malformed requests with typed errors", "[trim][errors]") {
  std::vector<AttentionMask> rows(2, AttentionMask::causal(10));
  CHECK_THROWS_WITH(TrimPlan::compute(0, 8, 2, rows), Catch::Contains("page_size = 0"));
  CHECK_THROWS_WITH(TrimPlan::compute(4, 8, 3, rows), Catch::Contains("rows.size() = 2 but n_input = 3"));
  CHECK_THROWS_WITH(TrimPlan::compute(4, 7, 2, rows), Catch::Contains("rows[0].size() = 10 > kv length 9"));
  CHECK_THROWS_AS(TrimPlan::compute(4, 7, 2, rows), piecrust::InvalidArgument);
}
