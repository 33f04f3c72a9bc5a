// Runtime building blocks that need no model: Task coroutines, stop conditions, drafts and the n-gram drafter.
#include <catch2/catch.hpp>

#include <piecrust/runtime/drafter.hpp>
#include <piecrust/runtime/stop_condition.hpp>
#include <piecrust/runtime/task.hpp>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using piecrust::Draft;
using piecrust::NgramDrafter;
using piecrust::Task;

namespace {

Task<int> leaf(int x) { co_return x * 2; }
Task<int> middle(int x) {
  int const a = co_await leaf(x);
  int const b = co_await leaf(a);
  co_return a + b;
}
Task<void> failing() {
  co_await leaf(1);
  throw std::runtime_error("boom");
}
Task<std::string> catches() {
  try {
    co_await failing();
  } catch (std::runtime_error const& e) {
    co_return std::string("caught ") + e.what();
  }
  co_return "nothing";
}
Task<int> deep(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await deep(n - 1);
}

struct Suspend {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};
Task<int> suspends() {
  co_await Suspend{};
  co_return 1;
}

}  // namespace

TEST_CASE("Task chains values and exceptions through co_await", "[runtime][task]") {
  CHECK(piecrust::run_detached(middle(3)) == 6 + 12);
  CHECK(piecrust::run_detached(catches()) == "caught boom");
  CHECK_THROWS_WITH(piecrust::run_detached(failing()), "boom");
  // A deep chain of awaits (symmetric transfer; unoptimized builds may still use stack per level).
  CHECK(piecrust::run_detached(deep(2000)) == 2000);
}

TEST_CASE("Task is lazy and move-only; a suspended task cannot run detached", "[runtime][task]") {
  Task<int> t = leaf(5);
  CHECK_FALSE(t.done());
  Task<int> moved = std::move(t);
  CHECK_FALSE(t.valid());
  CHECK(piecrust::run_detached(std::move(moved)) == 10);
  CHECK_THROWS_AS(piecrust::run_detached(suspends()), piecrust::InvalidState);
}

TEST_CASE("stop conditions: max_len, ends_with, ends_with_any and ||", "[runtime][stop]") {
  std::vector<std::uint32_t> g;
  auto const stop = piecrust::max_len(5) || piecrust::ends_with({7, 8}) || piecrust::ends_with_any({2, 3});
  g = {1, 7};
  CHECK_FALSE(stop.should_stop(g));
  g = {1, 7, 8};
  CHECK(stop.should_stop(g));
  g = {1, 3};
  CHECK(stop.should_stop(g));
  g = {1, 1, 1, 1};
  CHECK_FALSE(stop.should_stop(g));
  g.push_back(1);
  CHECK(stop.should_stop(g));
  CHECK(stop.clauses().size() == 3);
  CHECK_FALSE(piecrust::StopCondition().should_stop(g));
  CHECK_THROWS_AS(piecrust::max_len(0), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(piecrust::ends_with({}), Catch::Contains("suffix is empty"));
  CHECK_THROWS_AS(piecrust::ends_with_any({}), piecrust::InvalidArgument);
}

TEST_CASE("Draft depths and verification rows follow the tree", "[runtime][draft]") {
  // Tree: a(-1) -> b(0), a -> c(0), b -> d(1)
  Draft const d{{10, 11, 12, 13}, {-1, 0, 0, 1}};
  CHECK(d.depth(0) == 1);
  CHECK(d.depth(1) == 2);
  CHECK(d.depth(2) == 2);
  CHECK(d.depth(3) == 3);
  auto const rows = d.verification_rows(5);  // 5 cached tokens + the last accepted token
  REQUIRE(rows.size() == 5);
  CHECK(rows[0].size() == 6);
  CHECK(rows[0].attended_count() == 6);
  // Draft token 3 (d) sees context (6), a (slot 6), b (slot 7), not c (slot 8), itself (slot 9).
  auto const& r3 = rows[4];
  CHECK(r3.size() == 10);
  for (std::size_t pos = 0; pos < 8; ++pos) CHECK(r3.attends(pos));
  CHECK(r3.masked(8));
  CHECK(r3.attends(9));
  // c sees a and itself but not b.
  CHECK(rows[3].attends(6));
  CHECK(rows[3].masked(7));
  CHECK(rows[3].attends(8));

  Draft const chain = Draft::chain({1, 2, 3});
  CHECK(chain.parents == std::vector<std::int32_t>{-1, 0, 1});
  for (auto const& row : chain.verification_rows(4)) CHECK(row.attended_count() == row.size());

  Draft const bad{{1, 2}, {-1, 1}};
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("parents[1] = 1"));
  Draft const ragged{{1, 2}, {-1}};
  CHECK_THROWS_AS(ragged.verification_rows(0), piecrust::InvalidArgument);
}

TEST_CASE("NgramDrafter proposes what followed the latest earlier occurrence", "[runtime][draft]") {
  NgramDrafter drafter(3, 4);
  std::vector<std::uint32_t> const prompt{5, 6, 7, 8, 9, 1, 2, 5, 6, 7};
  drafter.update(prompt);
  Draft const d = drafter.draft();
  CHECK(d.tokens == std::vector<std::uint32_t>{8, 9, 1, 2});
  CHECK(d.parents == std::vector<std::int32_t>{-1, 0, 1, 2});

  NgramDrafter none(2, 4);
  std::vector<std::uint32_t> const fresh{1, 2, 3, 4};
  none.update(fresh);
  CHECK(none.draft().empty());

  CHECK_THROWS_AS(NgramDrafter(2, 4, 3), piecrust::InvalidArgument);
  CHECK_THROWS_AS(NgramDrafter(2, 0), piecrust::InvalidArgument);
}

TEST_CASE("NgramDrafter adapts its draft length: +2 after a whole accept, -1 after a rejection", "[runtime][draft]") {
  NgramDrafter drafter(2, 6);
  std::vector<std::uint32_t> seq{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2};
  drafter.update(seq);
  CHECK(drafter.draft_limit() == 6);
  Draft d = drafter.draft();  // 3 .. 8
  REQUIRE(d.tokens.size() == 6);
  std::vector<std::uint32_t> const reject_all{40};  // no draft token accepted, the model's own token 40
  drafter.update(reject_all);
  CHECK(drafter.draft_limit() == 5);
  // tokens that arrive without a draft (a plain pass) change nothing
  drafter.update(std::vector<std::uint32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2});
  CHECK(drafter.draft_limit() == 5);
  d = drafter.draft();
  REQUIRE(d.tokens.size() == 5);  // 3 4 5 6 7: 12 tokens follow the match, the limit keeps 5
  CHECK(d.tokens.front() == 3);
  std::vector<std::uint32_t> accept_all{3, 4, 5, 6, 7, 8};  // all 5 accepted plus the model's next token
  drafter.update(accept_all);
  CHECK(drafter.draft_limit() == 6);  // 5 + 2, capped at max_draft
  for (int i = 0; i < 10; ++i) {
    (void)drafter.draft();
    drafter.update(reject_all);
  }
  CHECK(drafter.draft_limit() == 1);  // never below 1
}

TEST_CASE("NgramDrafter drafts agree with a brute-force search on random sequences", "[runtime][draft]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::uint32_t> seq(2 + rng() % 40);
    for (auto& t : seq) t = rng() % 4;
    NgramDrafter drafter(3, 5);
    drafter.update(seq);
    Draft const d = drafter.draft();
    // Brute force: longest n in 3..1 whose suffix occurs earlier; latest such occurrence.
    std::vector<std::uint32_t> want;
    for (std::size_t n = std::min<std::size_t>(3, seq.size() - 1); n >= 1 && want.empty(); --n) {
      for (std::size_t s = seq.size() - n; s-- > 0 && want.empty();) {
        bool match = true;
        for (std::size_t k = 0; k < n; ++k) match = match && seq[s + k] == seq[seq.size() - n + k];
        if (match) {
          for (std::size_t k = s + n; k < seq.size() && want.size() < 5; ++k) want.push_back(seq[k]);
        }
      }
    }
    REQUIRE(d.tokens == want);
  }
}
