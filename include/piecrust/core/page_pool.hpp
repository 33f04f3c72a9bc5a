#pragma once
// PagePool: a fixed number of KV pages of `page_size` tokens each, handed out with reference counts.
//
// Allocation and release are O(1) (a free stack and a refcount per page). A page is free when its count
// drops to 0. Committed pages can be registered by content (see PageTable) so that equal prefixes share one
// physical page across contexts; the registration disappears when the page is freed.
//
// Content entries are exact, not hashed: an entry is (the serial of the page before it, its tokens), both
// compared in full, and a serial names one allocation for the pool's lifetime (ids are reused, serials are
// not). So a page is found only by a table whose previous page is that very physical page; no crafted token
// sequence can collide with another context's prefix. The hash below only picks a bucket.
// The pool only does bookkeeping: the K/V bytes live in a buffer indexed by PageId (layout in DESIGN.md).
//
// Window pages: a model whose sliding-window layers (Gemma 3's local layers, Mistral) see only the last
// `window` KV slots keeps those layers' K/V in a second, smaller store. Every page then also holds a window
// page while some holder still needs it; a holder (a PageTable) gives its hold back when the page has left
// its window for good (PageTable::commit_working_pages), and the window page returns to the store when the
// last hold goes, while the page itself (the full-attention layers' K/V) stays. So a long context holds
// about window / page_size window pages, however long it grows.

#include <piecrust/core/error.hpp>
#include <piecrust/core/token_meta.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

namespace piecrust {

using PageId = std::uint32_t;
/// A page of the window store (the sliding-window layers' K/V).
using WindowPageId = std::uint32_t;
inline constexpr WindowPageId no_window_page = UINT32_MAX;

/// The window store of a pool: `pages` window pages for layers that see the last `window` KV slots.
/// pages = 0: no store (every layer attends with the main pages).
struct WindowStore {
  std::size_t pages = 0;
  std::size_t window = 0;  // KV slots a window layer sees, its own included
};

/// Whether a page reference also holds the page's window page (see the header comment).
enum class WindowHold : bool { no = false, yes = true };

struct PagePoolStats {
  std::size_t total = 0;
  std::size_t free = 0;
  std::size_t used = 0;    // refcount >= 1
  std::size_t shared = 0;  // refcount >= 2
  std::size_t content_indexed = 0;  // committed pages findable by content
  std::size_t window_total = 0;     // window pages of the store (0: no store)
  std::size_t window_used = 0;      // window pages held
};

class PagePool {
 public:
  /// Throws InvalidArgument for num_pages = 0, page_size = 0, or a window store with window = 0.
  PagePool(std::size_t num_pages, std::uint32_t page_size, WindowStore window = {})
      : page_size_(page_size), window_(window) {
    if (num_pages == 0) detail::fail<InvalidArgument>("PagePool: num_pages = 0");
    if (page_size == 0) detail::fail<InvalidArgument>("PagePool: page_size = 0");
    if (num_pages > UINT32_MAX) detail::fail<InvalidArgument>("PagePool: num_pages = ", num_pages, " exceeds 2^32 - 1");
    if (window.pages >= UINT32_MAX) {
      detail::fail<InvalidArgument>("PagePool: window.pages = ", window.pages, " exceeds 2^32 - 2");
    }
    if (window.pages > 0 && window.window == 0) {
      detail::fail<InvalidArgument>("PagePool: window.window = 0 with window.pages = ", window.pages, " (must be > 0)");
    }
    refcount_.assign(num_pages, 0);
    serial_.assign(num_pages, 0);
    content_key_.assign(num_pages, std::nullopt);
    free_.reserve(num_pages);
    // Hand out low ids first: pop from the back of a stack filled high to low.
    for (std::size_t i = num_pages; i-- > 0;) free_.push_back(static_cast<PageId>(i));
    if (has_window_store()) {
      window_page_.assign(num_pages, no_window_page);
      window_holds_.assign(num_pages, 0);
      window_free_.reserve(window.pages);
      for (std::size_t i = window.pages; i-- > 0;) window_free_.push_back(static_cast<WindowPageId>(i));
    }
  }

  PagePool(PagePool const&) = delete;
  PagePool& operator=(PagePool const&) = delete;

  [[nodiscard]] std::uint32_t page_size() const { return page_size_; }
  [[nodiscard]] std::size_t num_pages() const { return refcount_.size(); }
  [[nodiscard]] std::size_t free_count() const { return free_.size(); }
  [[nodiscard]] std::uint32_t refcount(PageId id) const { return refcount_.at(checked(id, "refcount")); }

  [[nodiscard]] bool has_window_store() const noexcept { return window_.pages > 0; }
  [[nodiscard]] WindowStore window_store() const noexcept { return window_; }
  [[nodiscard]] std::size_t window_free_count() const noexcept { return window_free_.size(); }
  /// The window page of `id`, or no_window_page (no store, a free page, or every hold given back).
  [[nodiscard]] WindowPageId window_page(PageId id) const {
    checked(id, "window_page");
    return has_window_store() ? window_page_[id] : no_window_page;
  }
  /// Holders that still need page `id`'s window page.
  [[nodiscard]] std::uint32_t window_holds(PageId id) const {
    checked(id, "window_holds");
    return has_window_store() ? window_holds_[id] : 0;
  }

  /// One page with refcount 1. Throws OutOfPages (pool unchanged) when none is free.
  [[nodiscard]] PageId allocate() { return allocate(1).front(); }

  /// n pages with refcount 1 (each with a window page held once, with a window store), all or nothing: throws
  /// OutOfPages (pool unchanged) when fewer than n pages or window pages are free.
  [[nodiscard]] std::vector<PageId> allocate(std::size_t n) {
    if (n > free_.size()) {
      detail::fail<OutOfPages>("PagePool::allocate: n = ", n, " pages requested, ", free_.size(), " of ",
                               refcount_.size(), " free");
    }
    if (has_window_store() && n > window_free_.size()) {
      detail::fail<OutOfPages>("PagePool::allocate: n = ", n, " pages requested, ", window_free_.size(), " of ",
                               window_.pages, " window pages free (the sliding-window layers' store)");
    }
    std::vector<PageId> out(free_.end() - static_cast<std::ptrdiff_t>(n), free_.end());
    free_.resize(free_.size() - n);
    std::reverse(out.begin(), out.end());
    for (PageId const id : out) {
      refcount_[id] = 1;
      serial_[id] = next_serial_++;
      if (has_window_store()) {
        window_page_[id] = window_free_.back();
        window_free_.pop_back();
        window_holds_[id] = 1;
      }
    }
    return out;
  }

  /// Adds a reference to a live page, with a hold on its window page when `hold` (and the pool has a store).
  /// Throws InvalidState for a free page, or for a window hold on a page whose window page is gone.
  void retain(PageId id, WindowHold hold = WindowHold::yes) {
    checked(id, "retain");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::retain: page ", id, " is free");
    if (has_window_store() && hold == WindowHold::yes) {
      if (window_page_[id] == no_window_page) {
        detail::fail<InvalidState>("PagePool::retain: page ", id, " has no window page left to hold");
      }
      ++window_holds_[id];
    }
    ++refcount_[id];
  }

  /// Gives back one hold on page `id`'s window page, keeping the page; the window page returns to the store
  /// when no hold is left. Throws InvalidState when the page has no window hold.
  void release_window(PageId id) {
    checked(id, "release_window");
    if (!has_window_store()) return;
    if (refcount_[id] == 0 || window_holds_[id] == 0) {
      detail::fail<InvalidState>("PagePool::release_window: page ", id, " holds no window page");
    }
    if (--window_holds_[id] == 0) {
      window_free_.push_back(window_page_[id]);
      window_page_[id] = no_window_page;
    }
  }

  /// Drops a reference (and its window hold when `hold`); the page returns to the pool at 0. Throws
  /// InvalidState for a free page (double free) or a window hold that is not there.
  void release(PageId id, WindowHold hold = WindowHold::yes) {
    checked(id, "release");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::release: page ", id, " is already free (double free)");
    if (has_window_store() && hold == WindowHold::yes) release_window(id);
    if (--refcount_[id] == 0) {
      if (has_window_store() && window_page_[id] != no_window_page) {  // holders that never held it are gone too
        window_free_.push_back(window_page_[id]);
        window_page_[id] = no_window_page;
        window_holds_[id] = 0;
      }
      if (content_key_[id]) {
        auto it = by_content_.find(*content_key_[id]);
        if (it != by_content_.end()) erase_entry(it->second, id);
        content_key_[id].reset();
      }
      free_.push_back(id);
    }
  }

  /// The allocation serial of live page `id`: unique for the pool's lifetime (never 0, never reused).
  [[nodiscard]] std::uint64_t serial(PageId id) const {
    checked(id, "serial");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::serial: page ", id, " is free");
    return serial_[id];
  }

  /// A serial no page has or will have: a parent no content entry names, for a table whose next pages must not
  /// be found by content from other tables (see PageTable::isolate_content).
  [[nodiscard]] std::uint64_t fresh_serial() { return next_serial_++; }

  /// Records that live page `id` holds committed content `tokens` right after the page with serial `parent`
  /// (0: the first page of a table).
  void index_content(PageId id, std::uint64_t parent, std::vector<TokenMeta> tokens) {
    checked(id, "index_content");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::index_content: page ", id, " is free");
    if (content_key_[id]) return;  // already indexed
    std::uint64_t const key = bucket(parent, tokens);
    content_key_[id] = key;
    by_content_[key].push_back(Entry{id, parent, std::move(tokens)});
  }

  /// A live committed page recorded with exactly this parent and content, if any; with a window store, only
  /// one that still has its window page (a new holder needs it).
  [[nodiscard]] std::optional<PageId> find_content(std::uint64_t parent, std::vector<TokenMeta> const& tokens) const {
    auto it = by_content_.find(bucket(parent, tokens));
    if (it == by_content_.end()) return std::nullopt;
    for (Entry const& e : it->second) {
      if (e.parent == parent && e.tokens == tokens && (!has_window_store() || window_page_[e.page] != no_window_page)) {
        return e.page;
      }
    }
    return std::nullopt;
  }

  [[nodiscard]] PagePoolStats stats() const {
    PagePoolStats s;
    s.total = refcount_.size();
    s.free = free_.size();
    s.used = s.total - s.free;
    for (std::uint32_t const c : refcount_) s.shared += c >= 2 ? 1 : 0;
    for (auto const& k : content_key_) s.content_indexed += k ? 1 : 0;
    s.window_total = window_.pages;
    s.window_used = window_.pages - window_free_.size();
    return s;
  }

 private:
  struct Entry {
    PageId page;
    std::uint64_t parent;           // serial of the page before it in the table that committed it; 0: none
    std::vector<TokenMeta> tokens;  // [page_size] the committed page's content
  };

  // splitmix64 finalizer per field, only to pick a bucket (entries are compared in full).
  // Source: Steele, Lea, Flood, "Fast splittable pseudorandom number generators" (OOPSLA 2014).
  static std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
    std::uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static std::uint64_t bucket(std::uint64_t parent, std::vector<TokenMeta> const& tokens) {
    std::uint64_t h = mix(0x70696563727573ull, parent);  // "piecrus"
    for (TokenMeta const& t : tokens) {
      h = mix(h, (std::uint64_t{t.token} << 32) | t.position);
      h = mix(h, t.masked ? 1 : 0);
      if (t.adapter != 0) h = mix(h, t.adapter);
    }
    return h;
  }

  PageId checked(PageId id, char const* who) const {
    if (id >= refcount_.size()) {
      detail::fail<OutOfRange>("PagePool::", who, ": page id = ", id, " >= num_pages = ", refcount_.size());
    }
    return id;
  }

  void erase_entry(std::vector<Entry>& entries, PageId id) {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].page == id) {
        entries.erase(entries.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
    if (entries.empty()) by_content_.erase(*content_key_[id]);
  }

  std::uint32_t page_size_;
  WindowStore window_;
  std::vector<std::uint32_t> refcount_;                   // [num_pages]
  std::vector<std::uint64_t> serial_;                      // [num_pages] allocation serial of each live page
  std::uint64_t next_serial_ = 1;                          // 0 means "no page" (a table's first page has parent 0)
  std::vector<std::optional<std::uint64_t>> content_key_;  // [num_pages] bucket of each content-indexed page
  std::vector<PageId> free_;                               // stack of free page ids
  std::vector<WindowPageId> window_page_;                  // [num_pages] or empty (no store)
  std::vector<std::uint32_t> window_holds_;                // [num_pages] or empty: holders needing the window page
  std::vector<WindowPageId> window_free_;                  // stack of free window pages
  std::unordered_map<std::uint64_t, std::vector<Entry>> by_content_;
};

}  // namespace piecrust
