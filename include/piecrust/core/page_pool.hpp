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

struct PagePoolStats {
  std::size_t total = 0;
  std::size_t free = 0;
  std::size_t used = 0;    // refcount >= 1
  std::size_t shared = 0;  // refcount >= 2
  std::size_t content_indexed = 0;  // committed pages findable by content
};

class PagePool {
 public:
  /// Throws InvalidArgument for num_pages = 0 or page_size = 0.
  PagePool(std::size_t num_pages, std::uint32_t page_size) : page_size_(page_size) {
    if (num_pages == 0) detail::fail<InvalidArgument>("PagePool: num_pages = 0");
    if (page_size == 0) detail::fail<InvalidArgument>("PagePool: page_size = 0");
    if (num_pages > UINT32_MAX) detail::fail<InvalidArgument>("PagePool: num_pages = ", num_pages, " exceeds 2^32 - 1");
    refcount_.assign(num_pages, 0);
    serial_.assign(num_pages, 0);
    content_key_.assign(num_pages, std::nullopt);
    free_.reserve(num_pages);
    // Hand out low ids first: pop from the back of a stack filled high to low.
    for (std::size_t i = num_pages; i-- > 0;) free_.push_back(static_cast<PageId>(i));
  }

  PagePool(PagePool const&) = delete;
  PagePool& operator=(PagePool const&) = delete;

  [[nodiscard]] std::uint32_t page_size() const { return page_size_; }
  [[nodiscard]] std::size_t num_pages() const { return refcount_.size(); }
  [[nodiscard]] std::size_t free_count() const { return free_.size(); }
  [[nodiscard]] std::uint32_t refcount(PageId id) const { return refcount_.at(checked(id, "refcount")); }

  /// One page with refcount 1. Throws OutOfPages (pool unchanged) when none is free.
  [[nodiscard]] PageId allocate() { return allocate(1).front(); }

  /// n pages with refcount 1, all or nothing: throws OutOfPages (pool unchanged) when fewer than n are free.
  [[nodiscard]] std::vector<PageId> allocate(std::size_t n) {
    if (n > free_.size()) {
      detail::fail<OutOfPages>("PagePool::allocate: n = ", n, " pages requested, ", free_.size(), " of ",
                               refcount_.size(), " free");
    }
    std::vector<PageId> out(free_.end() - static_cast<std::ptrdiff_t>(n), free_.end());
    free_.resize(free_.size() - n);
    std::reverse(out.begin(), out.end());
    for (PageId const id : out) {
      refcount_[id] = 1;
      serial_[id] = next_serial_++;
    }
    return out;
  }

  /// Adds a reference to a live page. Throws InvalidState for a free page.
  void retain(PageId id) {
    checked(id, "retain");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::retain: page ", id, " is free");
    ++refcount_[id];
  }

  /// Drops a reference; the page returns to the pool at 0. Throws InvalidState for a free page (double free).
  void release(PageId id) {
    checked(id, "release");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::release: page ", id, " is already free (double free)");
    if (--refcount_[id] == 0) {
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

  /// A live committed page recorded with exactly this parent and content, if any.
  [[nodiscard]] std::optional<PageId> find_content(std::uint64_t parent, std::vector<TokenMeta> const& tokens) const {
    auto it = by_content_.find(bucket(parent, tokens));
    if (it == by_content_.end()) return std::nullopt;
    for (Entry const& e : it->second) {
      if (e.parent == parent && e.tokens == tokens) return e.page;
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
  std::vector<std::uint32_t> refcount_;                   // [num_pages]
  std::vector<std::uint64_t> serial_;                      // [num_pages] allocation serial of each live page
  std::uint64_t next_serial_ = 1;                          // 0 means "no page" (a table's first page has parent 0)
  std::vector<std::optional<std::uint64_t>> content_key_;  // [num_pages] bucket of each content-indexed page
  std::vector<PageId> free_;                               // stack of free page ids
  std::unordered_map<std::uint64_t, std::vector<Entry>> by_content_;
};

}  // namespace piecrust
