// AttentionMask (0 = attend, 1 = masked) and LogitMask (1 = allowed): builders, polarity, errors.
#include <catch2/catch.hpp>

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/logit_mask.hpp>

#include <random>
#include <set>
#include <type_traits>
#include <vector>

using piecrust::AttentionMask;
using piecrust::Brle;
using piecrust::LogitMask;

static_assert(!std::is_convertible_v<AttentionMask, LogitMask>, "the two polarities must not convert");
static_assert(!std::is_convertible_v<LogitMask, AttentionMask>, "the two polarities must not convert");
static_assert(!std::is_convertible_v<Brle, AttentionMask>, "a raw Brle has no polarity");
static_assert(!std::is_convertible_v<Brle, LogitMask>, "a raw Brle has no polarity");

namespace {
std::vector<std::uint32_t> runs_of(AttentionMask const& m) {
  return {m.bits().runs().begin(), m.bits().runs().end()};
}
}  // namespace

TEST_CASE("AttentionMask builders follow 0 = attend", "[masks]") {
  CHECK(runs_of(AttentionMask::causal(48)) == std::vector<std::uint32_t>{48});
  // The seeds' sliding window [evict, window] is written in the other polarity; in piecrust it is [0, evict, window].
  CHECK(runs_of(AttentionMask::window(320, 80)) == std::vector<std::uint32_t>{0, 240, 80});
  CHECK(runs_of(AttentionMask::sink_window(320, 4, 64)) == std::vector<std::uint32_t>{4, 252, 64});
  CHECK(AttentionMask::window(10, 20) == AttentionMask::causal(10));
  // The same rows copied from Pie's code (1 = attend): [evict, window] and [0, sink, middle, window].
  CHECK(AttentionMask::from_pie_code_runs({240, 80}) == AttentionMask::window(320, 80));
  CHECK(AttentionMask::from_pie_code_runs({0, 4, 252, 64}) == AttentionMask::sink_window(320, 4, 64));
  CHECK(AttentionMask::from_pie_code_runs({0, 10}) == AttentionMask::causal(10));
  CHECK_FALSE(AttentionMask::from_pie_code_runs({240, 80}) == AttentionMask::from_runs({240, 80}));
  CHECK(AttentionMask::sink_window(10, 4, 8) == AttentionMask::causal(10));

  auto const w = AttentionMask::window(320, 80);
  CHECK(w.masked(0));
  CHECK(w.masked(239));
  CHECK(w.attends(240));
  CHECK(w.attends(319));
  CHECK(w.masked(320));  // past the row's end
  CHECK(w.attended_count() == 80);
}

TEST_CASE("AttentionMask causal_rows give each new token one more position", "[masks]") {
  auto const rows = AttentionMask::causal_rows(5, 3);
  REQUIRE(rows.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(rows[i].size() == 6 + i);
    CHECK(rows[i].attended_count() == 6 + i);
  }
}

TEST_CASE("AttentionMask masks_all treats positions past the end as masked", "[masks]") {
  auto const m = AttentionMask::from_runs({2, 3, 1});  // 00 111 0
  CHECK(m.masks_all(2, 5));
  CHECK_FALSE(m.masks_all(1, 5));
  CHECK(m.masks_all(6, 100));
  CHECK_FALSE(m.masks_all(5, 100));
  CHECK(m.masks_all(4, 4));
  // Equality pads the shorter row with masked positions.
  CHECK(AttentionMask::from_runs({2, 3}) == AttentionMask::from_runs({2}));
  CHECK_FALSE(AttentionMask::from_runs({2, 3, 1}) == AttentionMask::from_runs({2}));
}

TEST_CASE("LogitMask allow / forbid / ranges agree with a set", "[masks]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 100; ++trial) {
    std::size_t const vocab = 1 + rng() % 300;
    std::vector<std::uint32_t> ids;
    for (int k = 0, n = static_cast<int>(rng() % 20); k < n; ++k) ids.push_back(rng() % vocab);
    std::set<std::uint32_t> const listed(ids.begin(), ids.end());
    auto const allow = LogitMask::allow(ids, vocab);
    auto const forbid = LogitMask::forbid(ids, vocab);
    REQUIRE(allow.size() == vocab);
    for (std::uint32_t id = 0; id < vocab; ++id) {
      REQUIRE(allow.allows(id) == listed.contains(id));
      REQUIRE(forbid.allows(id) == !listed.contains(id));
    }
    REQUIRE(allow.allowed_count(vocab) == listed.size());
    REQUIRE((allow & forbid).allowed_count(vocab) == 0);
  }
}

TEST_CASE("LogitMask seeds example: allow 100..150 of the vocabulary", "[masks]") {
  LogitMask::IdRange const r[] = {{100, 150}};
  auto const m = LogitMask::allow_ranges(r, 49152);
  CHECK(std::vector<std::uint32_t>(m.bits().runs().begin(), m.bits().runs().end()) ==
        std::vector<std::uint32_t>{100, 50, 49152 - 150});
  CHECK(m.allows(100));
  CHECK(m.allows(149));
  CHECK_FALSE(m.allows(150));
  CHECK_FALSE(m.allows(99));
  LogitMask::IdRange const overlapping[] = {{10, 20}, {0, 5}, {15, 30}};
  auto const o = LogitMask::allow_ranges(overlapping, 40);
  CHECK(o.allowed_count(40) == 25);
}

TEST_CASE("LogitMask empty allows all and is the identity of AND", "[masks]") {
  LogitMask const all;
  CHECK(all.empty());
  CHECK(all.allows(123456));
  auto const some = LogitMask::allow({1, 2, 3}, 10);
  CHECK((all & some) == some);
  CHECK((some & all) == some);
  auto const other = LogitMask::allow({2, 3, 4}, 10);
  auto const both = some & other;
  CHECK(both.allows(2));
  CHECK(both.allows(3));
  CHECK_FALSE(both.allows(1));
  CHECK_FALSE(both.allows(4));
}

TEST_CASE("LogitMask bad input throws typed errors naming the value", "[masks][errors]") {
  CHECK_THROWS_AS(LogitMask::allow({10}, 10), piecrust::OutOfRange);
  CHECK_THROWS_WITH(LogitMask::allow({3, 12}, 10), Catch::Contains("ids[1] = 12"));
  CHECK_THROWS_WITH(LogitMask::forbid({1}, 0), Catch::Contains("vocab = 0"));
  LogitMask::IdRange const backwards[] = {{5, 2}};
  CHECK_THROWS_AS(LogitMask::allow_ranges(backwards, 10), piecrust::InvalidArgument);
  LogitMask::IdRange const past[] = {{5, 11}};
  CHECK_THROWS_WITH(LogitMask::allow_ranges(past, 10), Catch::Contains("ends at 11"));
  auto a = LogitMask::allow({1}, 10);
  auto const b = LogitMask::allow({1}, 11);
  CHECK_THROWS_AS(a &= b, piecrust::InvalidArgument);
  CHECK(a == LogitMask::allow({1}, 10));  // unchanged by the failed AND
}

TEST_CASE("Mask builders refuse sizes no mask can address, before allocating", "[masks][errors]") {
  using Catch::Contains;
  // A vocabulary past 2^32 ids cannot be indexed by a token id.
  std::size_t const too_big = LogitMask::max_vocab + 1;
  CHECK_THROWS_AS(LogitMask::allow({1}, too_big), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(LogitMask::forbid({1}, too_big), Contains("vocab = 4294967297") && Contains("[1, 4294967296]"));
  LogitMask::IdRange const r[] = {{0, 2}};
  CHECK_THROWS_WITH(LogitMask::allow_ranges(r, too_big), Contains("LogitMask::allow_ranges: vocab = 4294967297"));
  CHECK(LogitMask::allow({7}, LogitMask::max_vocab).allowed_count(LogitMask::max_vocab) == 1);
  // An attention row of 2^60 positions would need 2^29 runs; the Brle cap refuses it at once.
  CHECK_THROWS_AS(AttentionMask::causal(std::size_t{1} << 60), piecrust::LimitExceeded);
  CHECK_THROWS_AS(AttentionMask::window(std::size_t{1} << 60, 16), piecrust::LimitExceeded);
  CHECK_THROWS_WITH(AttentionMask::sink_window(std::size_t{1} << 62, 4, 16), Contains("max_size"));
  CHECK(AttentionMask::causal(Brle::max_size).attended_count() == Brle::max_size);
}
