// The selection of sliding-window layers (model/detail/sliding_window.hpp) against a naive per-position
// model of the window: every row of the plan, read back over the request's KV positions, is the step's own
// row with the positions before the token's window masked; and the step's rows given as masks or as
// trims give the same plan.
#include <catch2/catch.hpp>

#include <piecrust/model/detail/sliding_window.hpp>

#include <random>
#include <vector>

using namespace piecrust;

namespace {

/// A random row of `len` positions: runs of 1..5 attended / masked positions.
AttentionMask random_row(std::mt19937_64& rng, std::size_t len) {
  std::vector<std::uint8_t> bits;  // [len] 1 = masked
  std::uniform_int_distribution<std::size_t> run(1, 5);
  bool masked = rng() % 2 == 0;
  while (bits.size() < len) {
    for (std::size_t n = run(rng); n > 0 && bits.size() < len; --n) bits.push_back(masked ? 1 : 0);
    masked = !masked;
  }
  return AttentionMask(Brle::from_bits(bits));
}

/// The rows of a plan over the request's own KV positions (dropped pages read as masked).
std::vector<AttentionMask> full_rows(TrimPlan const& plan, std::size_t page_size) {
  std::vector<AttentionMask> out;
  for (auto const& r : plan.rows) out.push_back(detail::untrimmed_row(plan, r, page_size));
  return out;
}

}  // namespace

TEST_CASE("sliding window: plans drop the pages before every window and keep each row's own bits inside it",
          "[sliding_window]") {
  auto const seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 200; ++round) {
    std::size_t const page_size = 1 + rng() % 8, window = 1 + rng() % 40;
    // one request: kv_before cached positions, q new tokens, on pages 0..n-1 (their ids do not matter here)
    std::size_t const kv_before = rng() % 80, q = 1 + rng() % 6, kv_len = kv_before + q;
    std::size_t const pages = (kv_len + page_size - 1) / page_size;
    std::vector<std::uint32_t> qo{0, static_cast<std::uint32_t>(q)}, kvp{0, static_cast<std::uint32_t>(pages)};
    std::vector<std::uint32_t> idx(pages), last{static_cast<std::uint32_t>(kv_len - (pages - 1) * page_size)};
    for (std::size_t p = 0; p < pages; ++p) idx[p] = static_cast<std::uint32_t>(p);
    PagedBatch const pb{qo, kvp, idx, last};
    INFO("page_size " << page_size << " window " << window << " kv_before " << kv_before << " q " << q);

    std::vector<AttentionMask> masks;  // [q] the step's own rows; token i sees at most kv_before + i + 1 positions
    for (std::size_t i = 0; i < q; ++i) masks.push_back(random_row(rng, kv_before + i + 1 - rng() % 2));
    std::vector<TrimPlan> const user_trims{TrimPlan::compute(static_cast<std::uint32_t>(page_size), kv_before, q, masks)};

    auto const from_masks = detail::sliding_window_trims(window, page_size, pb, {masks, {}});
    auto const from_trims = detail::sliding_window_trims(window, page_size, pb, {{}, user_trims});
    auto const causal = detail::sliding_window_trims(window, page_size, pb, {});
    REQUIRE(from_masks.size() == 1);
    CHECK(from_masks[0].kept_pages == from_trims[0].kept_pages);
    auto const rows_m = full_rows(from_masks[0], page_size), rows_t = full_rows(from_trims[0], page_size);
    auto const rows_c = full_rows(causal[0], page_size);
    for (std::size_t i = 0; i < q; ++i) {
      std::size_t const p = kv_before + i, cut = p + 1 > window ? p + 1 - window : 0;
      INFO("token " << i);
      CHECK(rows_m[i] == rows_t[i]);
      for (std::size_t pos = 0; pos < kv_len; ++pos) {
        bool const want = pos < cut || masks[i].masked(pos);  // the naive window
        REQUIRE(rows_m[i].masked(pos) == want);
        REQUIRE(rows_c[i].masked(pos) == (pos < cut || pos > p));
      }
    }
    // A page is dropped exactly when every row masks it and TrimPlan's other rules allow it.
    std::size_t const first_write = kv_before / page_size;
    for (std::size_t pg = 0, k = 0; pg < pages; ++pg) {
      bool dead = pg < first_write && pg + 1 < pages;
      for (std::size_t i = 0; i < q && dead; ++i) {
        std::size_t const p = kv_before + i, cut = p + 1 > window ? p + 1 - window : 0;
        for (std::size_t pos = pg * page_size; pos < std::min((pg + 1) * page_size, kv_len) && dead; ++pos) {
          dead = pos < cut || masks[i].masked(pos);
        }
      }
      bool const kept = k < from_masks[0].kept_pages.size() && from_masks[0].kept_pages[k] == pg;
      CHECK(kept == !dead);
      if (kept) ++k;
    }
  }
}

TEST_CASE("sliding window: a decode step of a long sequence reads only the pages its window touches", "[sliding_window]") {
  // 8192 cached positions on pages of 16, window 512: the new token at 8192 sees 7681..8192, pages 480..512.
  std::size_t const ps = 16, kv_before = 8192, kv_len = kv_before + 1, pages = (kv_len + ps - 1) / ps;
  std::vector<std::uint32_t> qo{0, 1}, kvp{0, static_cast<std::uint32_t>(pages)}, idx(pages), last{1};
  for (std::size_t p = 0; p < pages; ++p) idx[p] = static_cast<std::uint32_t>(pages - 1 - p);
  auto const plan = detail::sliding_window_trims(512, ps, PagedBatch{qo, kvp, idx, last}, {});
  REQUIRE(plan.size() == 1);
  REQUIRE(plan[0].kept_pages.size() == 33);
  CHECK(plan[0].kept_pages.front() == (kv_len - 512) / ps);
  CHECK(plan[0].kept_pages.back() == pages - 1);
  REQUIRE(plan[0].rows.size() == 1);
  CHECK(plan[0].rows[0].attended_count() == 512);
}
