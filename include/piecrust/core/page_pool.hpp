#pragma once
// PagePool: a fixed number of KV pages of `page_size` tokens each, handed out with reference counts.
//
// Allocation and release are O(1) (a free stack and a refcount per page). A page is free when its count
// drops to 0. Committed pages can be registered under a content key (see PageTable) so that equal prefixes
// share one physical page across contexts; the registration disappears when the page is freed.
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
    for (PageId const id : out) refcount_[id] = 1;
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

  /// Records that live page `id` holds committed content `tokens` under chain hash `key`.
  void index_content(PageId id, std::uint64_t key, std::vector<TokenMeta> tokens) {
    checked(id, "index_content");
    if (refcount_[id] == 0) detail::fail<InvalidState>("PagePool::index_content: page ", id, " is free");
    if (content_key_[id]) return;  // already indexed
    content_key_[id] = key;
    by_content_[key].push_back(Entry{id, std::move(tokens)});
  }

  /// A live committed page with exactly this key and content, if any.
  [[nodiscard]] std::optional<PageId> find_content(std::uint64_t key, std::vector<TokenMeta> const& tokens) const {
    auto it = by_content_.find(key);
    if (it == by_content_.end()) return std::nullopt;
    for (Entry const& e : it->second) {
      if (e.tokens == tokens) return e.page;  // hash collisions are resolved by comparing the content
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
    std::vector<TokenMeta> tokens;  // [page_size] the committed page's content
  };

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
  std::vector<std::optional<std::uint64_t>> content_key_;  // [num_pages] set for content-indexed pages
  std::vector<PageId> free_;                               // stack of free page ids
  std::unordered_map<std::uint64_t, std::vector<Entry>> by_content_;
};

}  // namespace piecrust
