// PagePool and PageTable: Pie's page rules, copy-on-write fork, content-addressed sharing, errors that change
// nothing, and a randomized model-based test over thousands of operations.
#include <catch2/catch.hpp>

#include <piecrust/core/page_pool.hpp>
#include <piecrust/core/page_table.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <vector>

using piecrust::PageId;
using piecrust::PagePool;
using piecrust::PageTable;
using piecrust::TokenMeta;

namespace {

std::vector<TokenMeta> make_tokens(std::uint32_t first_position, std::size_t n, std::uint32_t token_base = 100) {
  std::vector<TokenMeta> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(TokenMeta{token_base + static_cast<std::uint32_t>(i), first_position + static_cast<std::uint32_t>(i), false, 0});
  }
  return out;
}

// A snapshot of everything observable about a table, to prove a failed call changed nothing.
struct Snapshot {
  std::vector<PageId> committed, working;
  std::vector<TokenMeta> tokens;
  std::size_t pool_free;
  friend bool operator==(Snapshot const&, Snapshot const&) = default;
};
Snapshot snap(PageTable const& t) {
  return {{t.committed_pages().begin(), t.committed_pages().end()},
          {t.working_pages().begin(), t.working_pages().end()},
          t.tokens(),
          t.pool().free_count()};
}

}  // namespace

TEST_CASE("PagePool allocates, shares and frees with reference counts", "[pages]") {
  PagePool pool(4, 16);
  CHECK(pool.free_count() == 4);
  auto const pages = pool.allocate(3);
  CHECK(pages == std::vector<PageId>{0, 1, 2});
  pool.retain(pages[1]);
  auto s = pool.stats();
  CHECK(s.used == 3);
  CHECK(s.shared == 1);
  CHECK(s.free == 1);
  pool.release(pages[1]);
  CHECK(pool.refcount(pages[1]) == 1);
  for (PageId const p : pages) pool.release(p);
  CHECK(pool.free_count() == 4);
}

TEST_CASE("PagePool errors are typed and change nothing", "[pages][errors]") {
  CHECK_THROWS_AS(PagePool(0, 16), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(PagePool(4, 0), Catch::Contains("page_size = 0"));
  PagePool pool(2, 16);
  auto const a = pool.allocate();
  CHECK_THROWS_AS(pool.allocate(2), piecrust::OutOfPages);
  CHECK_THROWS_WITH(pool.allocate(5), Catch::Contains("n = 5 pages requested, 1 of 2 free"));
  CHECK(pool.free_count() == 1);
  pool.release(a);
  CHECK_THROWS_WITH(pool.release(a), Catch::Contains("double free"));
  CHECK_THROWS_AS(pool.retain(a), piecrust::InvalidState);
  CHECK_THROWS_WITH(pool.release(7), Catch::Contains("page id = 7"));
  CHECK(pool.free_count() == 2);
}

TEST_CASE("PageTable follows Pie's reserve / fill / commit / release / truncate rules", "[pages]") {
  PagePool pool(16, 4);
  PageTable t(pool);
  t.reserve_working_pages(3);
  CHECK(t.working_capacity() == 12);
  t.append_working_tokens(make_tokens(0, 9));
  CHECK(t.seq_len() == 9);
  CHECK(t.kv_indices().size() == 3);
  CHECK(t.kv_last_page_len() == 1);
  CHECK(t.next_position() == 9);

  auto const committed = t.commit_working_pages(2);
  CHECK(committed.size() == 2);
  CHECK(t.committed_pages().size() == 2);
  CHECK(t.working_pages().size() == 1);
  CHECK(t.working_token_count() == 1);
  CHECK(t.seq_len() == 9);

  t.truncate_working_page_tokens(1);
  CHECK(t.seq_len() == 8);
  CHECK(t.kv_indices().size() == 2);
  CHECK(t.kv_last_page_len() == 4);
  t.release_working_pages(1);
  CHECK(t.working_pages().empty());
  CHECK(pool.free_count() == 14);
  auto const [page, offset] = t.slot_location(5);
  CHECK(page == t.committed_pages()[1]);
  CHECK(offset == 1);
}

TEST_CASE("PageTable misuse throws typed errors and leaves everything unchanged", "[pages][errors]") {
  PagePool pool(4, 4);
  PageTable t(pool);
  t.reserve_working_pages(2);
  t.append_working_tokens(make_tokens(0, 6));
  Snapshot const before = snap(t);

  CHECK_THROWS_AS(t.reserve_working_pages(3), piecrust::OutOfPages);
  CHECK(snap(t) == before);
  CHECK_THROWS_WITH(t.commit_working_pages(2), Catch::Contains("only full pages can be committed"));
  CHECK(snap(t) == before);
  CHECK_THROWS_WITH(t.commit_working_pages(3), Catch::Contains("k = 3"));
  CHECK_THROWS_WITH(t.release_working_pages(3), Catch::Contains("n = 3"));
  CHECK(snap(t) == before);
  CHECK_THROWS_WITH(t.truncate_working_page_tokens(7), Catch::Contains("n = 7"));
  CHECK_THROWS_AS(t.append_working_tokens(make_tokens(6, 3)), piecrust::InvalidState);
  CHECK_THROWS_AS(t.mask_token_range(2, 7, true), piecrust::OutOfRange);
  CHECK_THROWS_AS(t.mask_token_range(3, 2, true), piecrust::OutOfRange);
  CHECK_THROWS_AS(t.slot_location(6), piecrust::OutOfRange);
  CHECK(snap(t) == before);

  // Truncation never reaches committed pages.
  t.commit_working_pages(1);
  Snapshot const committed = snap(t);
  CHECK_THROWS_WITH(t.truncate_working_page_tokens(3), Catch::Contains("committed pages are immutable"));
  CHECK(snap(t) == committed);

  // Positions of a newly committed page must exceed every committed position.
  t.truncate_working_page_tokens(2);
  t.append_working_tokens(make_tokens(2, 4));  // positions 2..5; 2 and 3 <= committed max 3
  Snapshot const stale = snap(t);
  CHECK_THROWS_WITH(t.commit_working_pages(1), Catch::Contains("largest committed position 3"));
  CHECK(snap(t) == stale);
}

TEST_CASE("fork shares committed pages and copies working pages", "[pages]") {
  PagePool pool(16, 4);
  PageTable parent(pool);
  parent.reserve_working_pages(4);
  parent.append_working_tokens(make_tokens(0, 10));
  parent.commit_working_pages(2);  // 2 committed, 2 working tokens in 1 of 2 working pages

  auto fork = parent.fork();
  PageTable& child = fork.table;
  CHECK(std::equal(child.committed_pages().begin(), child.committed_pages().end(), parent.committed_pages().begin(),
                   parent.committed_pages().end()));
  for (PageId const p : parent.committed_pages()) CHECK(pool.refcount(p) == 2);
  REQUIRE(fork.copies.size() == 1);
  CHECK(fork.copies[0].from == parent.working_pages()[0]);
  CHECK(fork.copies[0].to == child.working_pages()[0]);
  CHECK(child.working_pages().size() == 1);  // the empty reserved page is not duplicated
  CHECK(child.tokens() == parent.tokens());

  // Branches diverge; the parent is untouched.
  Snapshot const parent_before = snap(parent);
  child.append_working_tokens(make_tokens(10, 2, 900));
  child.truncate_working_page_tokens(3);
  auto const p_after = snap(parent);
  CHECK(p_after.tokens == parent_before.tokens);
  CHECK(p_after.committed == parent_before.committed);
  // Masking a shared committed token copies its metadata page: the parent still sees it unmasked.
  child.mask_token_range(0, 2, true);
  CHECK(child.token(1).masked);
  CHECK_FALSE(parent.token(1).masked);
  CHECK(snap(parent) == p_after);
}

TEST_CASE("fork without room for the copies changes nothing", "[pages][errors]") {
  PagePool pool(3, 4);
  PageTable parent(pool);
  parent.reserve_working_pages(3);
  parent.append_working_tokens(make_tokens(0, 9));
  Snapshot const before = snap(parent);
  CHECK_THROWS_AS(parent.fork(), piecrust::OutOfPages);
  CHECK(snap(parent) == before);
}

TEST_CASE("equal prefixes share committed pages across contexts", "[pages]") {
  PagePool pool(16, 4);
  PageTable a(pool);
  PageTable b(pool);
  for (PageTable* t : {&a, &b}) {
    t->reserve_working_pages(2);
    t->append_working_tokens(make_tokens(0, 8));
  }
  a.commit_working_pages(2);
  CHECK(pool.free_count() == 12);
  b.commit_working_pages(2);
  CHECK(std::equal(a.committed_pages().begin(), a.committed_pages().end(), b.committed_pages().begin(),
                   b.committed_pages().end()));
  CHECK(pool.free_count() == 14);  // b's private copies were returned
  CHECK(pool.stats().shared == 2);

  // A different second page (other tokens) shares only the first page.
  PageTable c(pool);
  c.reserve_working_pages(2);
  auto tokens = make_tokens(0, 8);
  tokens[6].token = 7;
  c.append_working_tokens(tokens);
  c.commit_working_pages(2);
  CHECK(c.committed_pages()[0] == a.committed_pages()[0]);
  CHECK(c.committed_pages()[1] != a.committed_pages()[1]);

  // Same tokens at other positions share nothing (the key covers positions).
  PageTable d(pool);
  d.reserve_working_pages(1);
  d.append_working_tokens(make_tokens(50, 4));
  d.commit_working_pages(1);
  CHECK(d.committed_pages()[0] != a.committed_pages()[0]);

  // The same tokens computed under a LoRA adapter share nothing with the base model's, nor with another
  // adapter's, and everything with the same adapter's; one adapted slot makes its page (and every page after
  // it, through the chain) distinct.
  auto under = [](std::vector<TokenMeta> t, std::uint64_t adapter) {
    for (TokenMeta& m : t) m.adapter = adapter;
    return t;
  };
  auto committed_with = [&](std::vector<TokenMeta> const& tokens) {
    auto t = std::make_unique<PageTable>(pool);
    t->reserve_working_pages(2);
    t->append_working_tokens(tokens);
    t->commit_working_pages(2);
    return t;
  };
  auto const x1 = committed_with(under(make_tokens(0, 8), 1));
  auto const x2 = committed_with(under(make_tokens(0, 8), 2));
  auto const x1_again = committed_with(under(make_tokens(0, 8), 1));
  for (std::size_t p = 0; p < 2; ++p) {
    INFO("page " << p);
    CHECK(x1->committed_pages()[p] != a.committed_pages()[p]);
    CHECK(x2->committed_pages()[p] != a.committed_pages()[p]);
    CHECK(x2->committed_pages()[p] != x1->committed_pages()[p]);
    CHECK(x1_again->committed_pages()[p] == x1->committed_pages()[p]);
  }
  auto one_slot = make_tokens(0, 8);
  one_slot[2].adapter = 1;
  auto const mixed = committed_with(one_slot);
  CHECK(mixed->committed_pages()[0] != a.committed_pages()[0]);
  CHECK(mixed->committed_pages()[1] != a.committed_pages()[1]);  // same content, another chain
}

TEST_CASE("mask_token_range and drop_masked_kv_pages free whole masked pages only", "[pages]") {
  PagePool pool(16, 4);
  PageTable t(pool);
  t.reserve_working_pages(4);
  t.append_working_tokens(make_tokens(0, 14));
  t.commit_working_pages(3);
  t.mask_token_range(0, 9, true);  // page 0 and 1 wholly masked, page 2 partly
  std::size_t const free_before = pool.free_count();
  CHECK(t.drop_masked_kv_pages() == 2);
  CHECK(pool.free_count() == free_before + 2);
  CHECK(t.committed_pages().size() == 1);
  CHECK(t.seq_len() == 6);
  CHECK(t.tokens()[0].position == 8);  // positions of the rest are unchanged
  CHECK(t.tokens()[0].masked);
  CHECK_FALSE(t.tokens()[1].masked);
  CHECK(t.next_position() == 14);
  CHECK(t.drop_masked_kv_pages() == 0);
}

TEST_CASE("destroying tables returns every page", "[pages]") {
  PagePool pool(8, 4);
  {
    PageTable t(pool);
    t.reserve_working_pages(3);
    t.append_working_tokens(make_tokens(0, 9));
    t.commit_working_pages(2);
    auto f = t.fork();
    PageTable moved = std::move(f.table);
    CHECK(pool.free_count() < 8);
  }
  CHECK(pool.free_count() == 8);
}

TEST_CASE("a window store gives each page a window page until no holder needs it", "[pages][window]") {
  PagePool pool(8, 4, piecrust::WindowStore{3, 6});
  CHECK(pool.has_window_store());
  auto const pages = pool.allocate(2);
  CHECK(pool.window_page(pages[0]) != pool.window_page(pages[1]));
  CHECK(pool.window_free_count() == 1);
  CHECK_THROWS_AS(pool.allocate(2), piecrust::OutOfPages);  // pages are free, window pages are not
  CHECK_THROWS_WITH(pool.allocate(2), Catch::Contains("1 of 3 window pages free"));
  CHECK(pool.free_count() == 6);  // the refused allocation took nothing
  pool.retain(pages[0]);                             // a second holder of page 0 and of its window page
  pool.retain(pages[0], piecrust::WindowHold::no);   // a third that has left its window
  CHECK(pool.window_holds(pages[0]) == 2);
  pool.release_window(pages[0]);
  CHECK(pool.window_page(pages[0]) != piecrust::no_window_page);
  pool.release_window(pages[0]);
  CHECK(pool.window_page(pages[0]) == piecrust::no_window_page);  // nobody needs it: back in the store
  CHECK(pool.window_free_count() == 2);
  CHECK(pool.refcount(pages[0]) == 3);  // the page itself stays
  CHECK_THROWS_AS(pool.release_window(pages[0]), piecrust::InvalidState);
  CHECK_THROWS_AS(pool.retain(pages[0]), piecrust::InvalidState);  // no window page left to hold
  CHECK(pool.refcount(pages[0]) == 3);
  for (int i = 0; i < 3; ++i) pool.release(pages[0], piecrust::WindowHold::no);
  pool.release(pages[1]);
  CHECK(pool.free_count() == 8);
  CHECK(pool.window_free_count() == 3);
  CHECK_THROWS_WITH(PagePool(4, 4, piecrust::WindowStore{2, 0}), Catch::Contains("window.window = 0"));
}

TEST_CASE("a table gives back the window pages of pages no future token's window reaches", "[pages][window]") {
  // Window 6, pages of 4: page i leaves every window once (i + 1) * 4 - 1 + 6 <= committed slots.
  PagePool pool(32, 4, piecrust::WindowStore{32, 6});
  PageTable t(pool);
  t.reserve_working_pages(4);
  t.append_working_tokens(make_tokens(0, 16));
  t.commit_working_pages(2);  // 8 committed slots: page 0 needs 9
  CHECK(t.window_released_pages() == 0);
  t.commit_working_pages(1);  // 12: page 0 leaves, page 1 needs 13
  CHECK(t.window_released_pages() == 1);
  CHECK(t.window_floor() == 4);
  CHECK(pool.window_page(t.committed_pages()[0]) == piecrust::no_window_page);
  auto const window = t.kv_window_indices();
  CHECK(window[0] == 0);  // never read: before the floor
  CHECK(window[1] == pool.window_page(t.kv_indices()[1]));

  // A fork shares the released state; the pages it shares that are still in the window are held twice.
  auto f = t.fork();
  CHECK(f.table.window_released_pages() == 1);
  CHECK(pool.window_holds(t.committed_pages()[1]) == 2);
  REQUIRE(f.copies.size() == 1);
  CHECK(f.copies[0].window_from == pool.window_page(t.working_pages()[0]));
  CHECK(f.copies[0].window_to == pool.window_page(f.table.working_pages()[0]));

  // Another table with the same first page finds it by content only while it still has its window page.
  PageTable other(pool);
  other.reserve_working_pages(1);
  other.append_working_tokens(make_tokens(0, 4));
  other.commit_working_pages(1);
  CHECK(other.committed_pages()[0] != t.committed_pages()[0]);
  PageTable again(pool);
  again.reserve_working_pages(2);
  again.append_working_tokens(make_tokens(0, 8));
  again.commit_working_pages(2);
  CHECK(again.committed_pages()[0] == other.committed_pages()[0]);  // other's page 0 still has one
  CHECK(pool.window_holds(other.committed_pages()[0]) == 2);

  // Dropping masked pages moves later slots closer, but a released page stays released.
  t.mask_token_range(4, 8, true);
  CHECK(t.drop_masked_kv_pages() == 1);
  CHECK(t.window_released_pages() == 1);
  t.mask_token_range(0, 4, true);
  CHECK(t.drop_masked_kv_pages() == 1);
  CHECK(t.window_released_pages() == 0);
  CHECK_THROWS_AS(t.release_window_pages_before(5), piecrust::InvalidState);
  t.release_window_pages_before(1);
  CHECK(t.window_released_pages() == 1);
}

TEST_CASE("tables with a window store return every page and window page", "[pages][window]") {
  PagePool pool(16, 4, piecrust::WindowStore{16, 4});
  {
    PageTable t(pool);
    t.reserve_working_pages(6);
    t.append_working_tokens(make_tokens(0, 22));
    t.commit_working_pages(5);
    CHECK(t.window_released_pages() == 4);
    CHECK(pool.stats().window_used == 2);  // committed page 4 and the working page
    auto f = t.fork();
    PageTable moved = std::move(f.table);
    CHECK(pool.stats().window_used == 3);
  }
  CHECK(pool.free_count() == 16);
  CHECK(pool.window_free_count() == 16);
}

// ---- randomized model-based test ----
namespace {

struct ModelContext {
  std::vector<TokenMeta> committed;  // tokens of committed pages, page after page
  std::vector<TokenMeta> working;
  std::size_t working_pages = 0;
  std::uint32_t next_position = 0;
  std::optional<std::uint32_t> max_committed;
  std::size_t window_released = 0;  // leading committed pages past every window (with a window store)
};

void check_invariants(PagePool const& pool, std::vector<std::unique_ptr<PageTable>> const& tables,
                      std::vector<ModelContext> const& models) {
  std::uint32_t const ps = pool.page_size();
  std::map<PageId, std::uint32_t> refs, holds;  // references, and window holds, per page
  for (std::size_t i = 0; i < tables.size(); ++i) {
    PageTable const& t = *tables[i];
    ModelContext const& m = models[i];
    REQUIRE(t.committed_pages().size() * ps == m.committed.size());
    REQUIRE(t.working_pages().size() == m.working_pages);
    std::vector<TokenMeta> expected = m.committed;
    expected.insert(expected.end(), m.working.begin(), m.working.end());
    REQUIRE(t.tokens() == expected);
    REQUIRE(t.kv_indices().size() == (t.seq_len() + ps - 1) / ps);
    REQUIRE(t.window_released_pages() == m.window_released);
    for (PageId const p : t.committed_pages()) ++refs[p];
    for (PageId const p : t.working_pages()) ++refs[p];
    for (std::size_t c = m.window_released; c < t.committed_pages().size(); ++c) ++holds[t.committed_pages()[c]];
    for (PageId const p : t.working_pages()) ++holds[p];
  }
  for (auto const& [page, count] : refs) REQUIRE(pool.refcount(page) == count);
  REQUIRE(pool.free_count() == pool.num_pages() - refs.size());
  if (!pool.has_window_store()) return;
  // Exactly the pages some holder still needs have a window page, each its own.
  std::set<piecrust::WindowPageId> window_pages;
  for (auto const& [page, count] : refs) {
    auto const it = holds.find(page);
    std::uint32_t const h = it == holds.end() ? 0 : it->second;
    REQUIRE(pool.window_holds(page) == h);
    REQUIRE((pool.window_page(page) != piecrust::no_window_page) == (h > 0));
    if (h > 0) REQUIRE(window_pages.insert(pool.window_page(page)).second);
  }
  REQUIRE(pool.stats().window_used == window_pages.size());
}

// The window rule of PageTable: page i leaves every window once (i + 1) * ps - 1 + window <= committed slots.
void release_model_windows(ModelContext& m, std::size_t ps, std::size_t window) {
  if (window == 0) return;
  while ((m.window_released + 1) * ps - 1 + window <= m.committed.size() &&
         (m.window_released + 1) * ps <= m.committed.size()) {
    ++m.window_released;
  }
}

}  // namespace

TEST_CASE("random page-table programs agree with a naive model and leak nothing", "[pages][model]") {
  auto const seed = std::random_device{}();
  std::size_t const window = GENERATE(0u, 6u);  // without and with a window store (as many window pages as pages)
  INFO("seed " << seed << ", window " << window);
  std::mt19937 rng(seed);
  std::uint32_t const ps = 4;
  PagePool pool(64, ps, piecrust::WindowStore{window > 0 ? 64u : 0u, window});
  std::vector<std::unique_ptr<PageTable>> tables;
  std::vector<ModelContext> models;
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };

  for (int step = 0; step < 5000; ++step) {
    if (tables.empty() || pick(20) == 0) {
      tables.push_back(std::make_unique<PageTable>(pool));
      models.emplace_back();
    }
    std::size_t const i = pick(tables.size());
    PageTable& t = *tables[i];
    ModelContext& m = models[i];
    switch (pick(9)) {
      case 0: {  // reserve
        std::size_t const n = pick(4);
        if (n <= pool.free_count()) {
          t.reserve_working_pages(n);
          m.working_pages += n;
        } else {
          REQUIRE_THROWS_AS(t.reserve_working_pages(n), piecrust::OutOfPages);
        }
        break;
      }
      case 1: {  // fill
        std::size_t const n = pick(7);
        // Mostly fresh increasing positions; sometimes a stale one so commits can fail.
        std::uint32_t const first = pick(10) == 0 && m.next_position > 3 ? m.next_position - 3 : m.next_position;
        auto const tokens = make_tokens(first, n, static_cast<std::uint32_t>(pick(3)));
        if (n <= m.working_pages * ps - m.working.size()) {
          t.append_working_tokens(tokens);
          m.working.insert(m.working.end(), tokens.begin(), tokens.end());
          m.next_position = std::max<std::uint32_t>(m.next_position, first + static_cast<std::uint32_t>(n));
        } else {
          REQUIRE_THROWS_AS(t.append_working_tokens(tokens), piecrust::InvalidState);
        }
        break;
      }
      case 2: {  // commit
        std::size_t const k = pick(3);
        bool ok = k <= m.working_pages && k * ps <= m.working.size();
        for (std::size_t j = 0; ok && j < k * ps; ++j) ok = !m.max_committed || m.working[j].position > *m.max_committed;
        if (ok) {
          t.commit_working_pages(k);
          for (std::size_t j = 0; j < k * ps; ++j) {
            m.max_committed = std::max(m.max_committed.value_or(0), m.working[j].position);
          }
          m.committed.insert(m.committed.end(), m.working.begin(), m.working.begin() + static_cast<long>(k * ps));
          m.working.erase(m.working.begin(), m.working.begin() + static_cast<long>(k * ps));
          m.working_pages -= k;
          release_model_windows(m, ps, window);
        } else {
          REQUIRE_THROWS_AS(t.commit_working_pages(k), piecrust::InvalidState);
        }
        break;
      }
      case 3: {  // release
        std::size_t const n = pick(3);
        if (n <= m.working_pages) {
          t.release_working_pages(n);
          m.working_pages -= n;
          m.working.resize(std::min(m.working.size(), m.working_pages * ps));
        } else {
          REQUIRE_THROWS_AS(t.release_working_pages(n), piecrust::InvalidState);
        }
        break;
      }
      case 4: {  // truncate
        std::size_t const n = pick(5);
        if (n <= m.working.size()) {
          t.truncate_working_page_tokens(n);
          m.working.resize(m.working.size() - n);
        } else {
          REQUIRE_THROWS_AS(t.truncate_working_page_tokens(n), piecrust::InvalidState);
        }
        break;
      }
      case 5: {  // fork
        std::size_t const need = (m.working.size() + ps - 1) / ps;
        if (need <= pool.free_count()) {
          auto f = t.fork();
          REQUIRE(f.copies.size() == need);
          ModelContext child = m;
          child.working_pages = need;
          tables.push_back(std::make_unique<PageTable>(std::move(f.table)));
          models.push_back(child);
        } else {
          REQUIRE_THROWS_AS(t.fork(), piecrust::OutOfPages);
        }
        break;
      }
      case 6: {  // mask
        std::size_t const len = m.committed.size() + m.working.size();
        std::size_t const b = pick(len + 2);
        std::size_t const e = b + pick(10);
        bool const flag = pick(4) != 0;
        if (e <= len) {
          t.mask_token_range(b, e, flag);
          for (std::size_t j = b; j < e; ++j) (j < m.committed.size() ? m.committed[j] : m.working[j - m.committed.size()]).masked = flag;
        } else {
          REQUIRE_THROWS_AS(t.mask_token_range(b, e, flag), piecrust::OutOfRange);
        }
        break;
      }
      case 7: {  // drop masked pages
        std::vector<TokenMeta> kept;
        std::size_t dropped = 0, released_kept = 0;
        for (std::size_t p = 0; p * ps < m.committed.size(); ++p) {
          auto const b = m.committed.begin() + static_cast<long>(p * ps);
          if (std::all_of(b, b + ps, [](TokenMeta const& x) { return x.masked; })) {
            ++dropped;
          } else {
            kept.insert(kept.end(), b, b + ps);
            released_kept += p < m.window_released ? 1 : 0;
          }
        }
        REQUIRE(t.drop_masked_kv_pages() == dropped);
        m.committed = kept;
        m.window_released = released_kept;  // released pages stay released; the view never grows back
        break;
      }
      case 8: {  // destroy
        if (pick(3) == 0) {
          tables.erase(tables.begin() + static_cast<long>(i));
          models.erase(models.begin() + static_cast<long>(i));
        }
        break;
      }
    }
    check_invariants(pool, tables, models);
  }
  tables.clear();
  CHECK(pool.free_count() == pool.num_pages());
  CHECK(pool.window_free_count() == (window > 0 ? 64u : 0u));
  CHECK(pool.stats().content_indexed == 0);
}
