#pragma once
// PageTable: the KV pages of one context, and what each KV slot holds.
//
//   committed pages  — full, immutable, possibly shared with other contexts (reference counted in the pool);
//   working pages    — private to this context, filled token by token, then committed or released.
//
// Slots are numbered 0 .. seq_len()-1: first every slot of the committed pages, then the filled slots of the
// working pages. Pie's page rules (seeds: "Page-level operations"; DESIGN.md):
//   reserve_working_pages(n)          allocate n private pages (all or nothing)
//   commit_working_pages(k)           the first k working pages, each full, become committed; their positions
//                                     must exceed every committed position
//   release_working_pages(n)          free the last n working pages, dropping the tokens they held
//   truncate_working_page_tokens(n)   forget the last n working tokens (never reaches committed pages)
// Every operation validates before it changes anything: a throw leaves the table and the pool as they were.
//
// Committed pages are content addressed: committing a page whose tokens (ids, positions, masked flags,
// adapters) equal those of a page committed anywhere in the pool right after the same physical page (see
// PagePool: exact, not hashed) reuses that physical page, so equal prefixes share memory. Pages whose K/V did
// not come from this engine's plain computation of those tokens must not be found that way: imported pages
// of unknown origin commit with PageSharing::private_pages, and after mask_token_range (later passes skip the
// masked slots, so their K/V differs) the table's next pages are found only by its own forks. The engine does
// the same after a pass with attention rows other than causal (the rows are not part of TokenMeta).
//
// With a window store in the pool (PagePool, WindowStore), the leading committed pages that have left the
// window of every token this table can still compute give their window pages back: window_released_pages().
// Committed slots are never truncated, so a future token sits at a slot >= committed_token_count(), and page
// i (slots i*P .. i*P + P - 1) is outside its window once (i + 1) * P - 1 + window <= committed_token_count().
// The sliding-window layers never see those pages again (window_floor()), also not after drop_masked_kv_pages
// moves later slots closer: a window layer's view only ever shrinks.

#include <piecrust/core/error.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/core/token_meta.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace piecrust {

/// A page whose K/V bytes the caller must copy: the fork's new page `to` starts as a copy of `from`, and with
/// a window store its window page `window_to` as a copy of `window_from`.
struct PageCopy {
  PageId from;
  PageId to;
  WindowPageId window_from = no_window_page;
  WindowPageId window_to = no_window_page;
  friend bool operator==(PageCopy const&, PageCopy const&) = default;
};

/// Whether committed pages may be shared by content with other tables (see the header comment).
enum class PageSharing {
  by_content,     // reuse an equal page committed after the same page, or register this one for others
  private_pages,  // neither: K/V of unknown origin (an untrusted import); only this table and its forks hold it
};

class PageTable;

/// The result of PageTable::fork(): the child table and the working pages whose bytes must be copied.
struct PageTableFork;

class PageTable {
 public:
  explicit PageTable(PagePool& pool) : pool_(&pool) {}

  PageTable(PageTable const&) = delete;
  PageTable& operator=(PageTable const&) = delete;
  PageTable(PageTable&& other) noexcept { swap(other); }
  PageTable& operator=(PageTable&& other) noexcept {
    if (this != &other) {
      release_all();
      swap(other);
    }
    return *this;
  }
  ~PageTable() { release_all(); }

  [[nodiscard]] PagePool& pool() const { return *pool_; }
  [[nodiscard]] std::uint32_t page_size() const { return pool_->page_size(); }

  /// KV slots held: committed tokens plus filled working slots.
  [[nodiscard]] std::size_t seq_len() const { return committed_token_count() + working_tokens_.size(); }
  [[nodiscard]] std::size_t committed_token_count() const { return committed_.size() * page_size(); }
  [[nodiscard]] std::size_t working_token_count() const { return working_tokens_.size(); }
  /// Empty slots left in the reserved working pages.
  [[nodiscard]] std::size_t working_capacity() const {
    return working_.size() * page_size() - working_token_count();
  }

  [[nodiscard]] std::span<PageId const> committed_pages() const { return committed_; }
  [[nodiscard]] std::span<PageId const> working_pages() const { return working_; }
  /// Metadata of the filled working slots.
  [[nodiscard]] std::span<TokenMeta const> working_tokens() const { return working_tokens_; }
  /// Metadata of committed page i (page_size entries).
  [[nodiscard]] std::span<TokenMeta const> committed_page_tokens(std::size_t i) const { return *committed_meta_.at(i); }

  /// Metadata of KV slot `slot`. Throws OutOfRange past seq_len().
  [[nodiscard]] TokenMeta token(std::size_t slot) const {
    if (slot >= seq_len()) detail::fail<OutOfRange>("PageTable::token: slot = ", slot, " >= seq_len = ", seq_len());
    std::size_t const c = committed_token_count();
    return slot < c ? (*committed_meta_[slot / page_size()])[slot % page_size()] : working_tokens_[slot - c];
  }

  /// Metadata of every slot, in order (a copy: O(seq_len)).
  [[nodiscard]] std::vector<TokenMeta> tokens() const {
    std::vector<TokenMeta> out;  // [seq_len]
    out.reserve(seq_len());
    for (auto const& page : committed_meta_) out.insert(out.end(), page->begin(), page->end());
    out.insert(out.end(), working_tokens_.begin(), working_tokens_.end());
    return out;
  }

  /// One more than the largest position ever committed or now in the working pages (0 when empty): where
  /// automatic positions continue.
  [[nodiscard]] std::uint32_t next_position() const {
    std::uint32_t next = max_committed_position_ ? *max_committed_position_ + 1 : 0;
    for (TokenMeta const& t : working_tokens_) next = std::max(next, t.position + 1);
    return next;
  }

  /// Reserves n more private pages. Throws OutOfPages (nothing reserved) when the pool has fewer free.
  void reserve_working_pages(std::size_t n) {
    std::vector<PageId> fresh = pool_->allocate(n);
    working_.insert(working_.end(), fresh.begin(), fresh.end());
  }

  /// Fills the next free working slots with `tokens`. Throws InvalidState (nothing written) when the reserved
  /// working pages lack room.
  void append_working_tokens(std::span<TokenMeta const> new_tokens) {
    if (new_tokens.size() > working_capacity()) {
      detail::fail<InvalidState>("PageTable::append_working_tokens: ", new_tokens.size(), " tokens need slots but ",
                                 working_capacity(), " are free in ", working_.size(),
                                 " working pages (reserve more first)");
    }
    working_tokens_.insert(working_tokens_.end(), new_tokens.begin(), new_tokens.end());
  }

  /// Physical page and offset of KV slot `slot`.
  [[nodiscard]] std::pair<PageId, std::uint32_t> slot_location(std::size_t slot) const {
    if (slot >= seq_len()) {
      detail::fail<OutOfRange>("PageTable::slot_location: slot = ", slot, " >= seq_len = ", seq_len());
    }
    std::size_t const page = slot / page_size();
    auto const offset = static_cast<std::uint32_t>(slot % page_size());
    return {page < committed_.size() ? committed_[page] : working_[page - committed_.size()], offset};
  }

  /// Makes the first k working pages committed. Each must be full, and every position in them must exceed the
  /// largest committed position. With PageSharing::by_content a page whose content is already committed in
  /// the pool after the same page is replaced by that shared page (its private copy is released), and other
  /// pages are registered for others to find; private_pages does neither. Returns the physical ids now
  /// committed.
  std::vector<PageId> commit_working_pages(std::size_t k, PageSharing sharing = PageSharing::by_content) {
    std::size_t const ps = page_size();
    if (k > working_.size()) {
      detail::fail<InvalidState>("PageTable::commit_working_pages: k = ", k, " but only ", working_.size(),
                                 " working pages are held");
    }
    if (k * ps > working_token_count()) {
      detail::fail<InvalidState>("PageTable::commit_working_pages: k = ", k, " pages need ", k * ps,
                                 " tokens but the working pages hold ", working_token_count(),
                                 " (only full pages can be committed)");
    }
    for (std::size_t i = 0; i < k * ps; ++i) {
      if (max_committed_position_ && working_tokens_[i].position <= *max_committed_position_) {
        detail::fail<InvalidState>("PageTable::commit_working_pages: working token ", i, " has position ",
                                   working_tokens_[i].position, " <= largest committed position ",
                                   *max_committed_position_);
      }
    }

    std::vector<PageId> result;
    result.reserve(k);
    for (std::size_t p = 0; p < k; ++p) {
      auto content = std::make_shared<std::vector<TokenMeta>>(
          working_tokens_.begin() + static_cast<std::ptrdiff_t>(p * ps),
          working_tokens_.begin() + static_cast<std::ptrdiff_t>((p + 1) * ps));
      PageId page = working_[p];
      if (sharing == PageSharing::by_content) {
        if (auto const existing = pool_->find_content(last_serial_, *content); existing && *existing != page) {
          pool_->retain(*existing);
          pool_->release(page);
          page = *existing;
        } else {
          pool_->index_content(page, last_serial_, *content);
        }
      }
      for (TokenMeta const& t : *content) {
        max_committed_position_ = std::max(max_committed_position_.value_or(0), t.position);
      }
      committed_.push_back(page);
      committed_meta_.push_back(std::move(content));
      last_serial_ = pool_->serial(page);
      result.push_back(page);
    }
    working_.erase(working_.begin(), working_.begin() + static_cast<std::ptrdiff_t>(k));
    working_tokens_.erase(working_tokens_.begin(), working_tokens_.begin() + static_cast<std::ptrdiff_t>(k * ps));
    release_windows_left_behind();
    return result;
  }

  /// Leading committed pages whose window pages this table gave back (0 without a window store).
  [[nodiscard]] std::size_t window_released_pages() const noexcept { return window_released_; }
  /// KV slots before this one are invisible to the sliding-window layers (their window pages are gone).
  [[nodiscard]] std::size_t window_floor() const { return window_released_ * page_size(); }

  /// Gives back the window pages of the first n committed pages (an import whose exporter had released them).
  /// Throws InvalidState (nothing changed) when n exceeds the committed pages.
  void release_window_pages_before(std::size_t n) {
    if (n > committed_.size()) {
      detail::fail<InvalidState>("PageTable::release_window_pages_before: n = ", n, " but only ", committed_.size(),
                                 " pages are committed");
    }
    if (!pool_->has_window_store()) return;
    for (; window_released_ < n; ++window_released_) pool_->release_window(committed_[window_released_]);
  }

  /// Frees the last n working pages and the tokens they held. Throws InvalidState if n > working pages.
  void release_working_pages(std::size_t n) {
    if (n > working_.size()) {
      detail::fail<InvalidState>("PageTable::release_working_pages: n = ", n, " but only ", working_.size(),
                                 " working pages are held");
    }
    std::size_t const keep_slots = (working_.size() - n) * page_size();
    std::size_t const keep_tokens = std::min(working_token_count(), keep_slots);
    for (std::size_t i = working_.size() - n; i < working_.size(); ++i) pool_->release(working_[i]);
    working_.resize(working_.size() - n);
    working_tokens_.resize(keep_tokens);
  }

  /// Forgets the last n working tokens; the pages stay reserved. Throws InvalidState if n exceeds the working
  /// tokens (committed tokens are never truncated).
  void truncate_working_page_tokens(std::size_t n) {
    if (n > working_token_count()) {
      detail::fail<InvalidState>("PageTable::truncate_working_page_tokens: n = ", n, " but only ",
                                 working_token_count(), " working tokens are held (committed pages are immutable)");
    }
    working_tokens_.resize(working_tokens_.size() - n);
  }

  /// Pages committed from now on are found by content only by this table and the forks made after this call:
  /// for K/V that a plain causal computation of the same tokens would not reproduce.
  void isolate_content() { last_serial_ = pool_->fresh_serial(); }

  /// Sets the masked flag of slots [begin, end). Throws OutOfRange if the range is not inside [0, seq_len).
  /// Isolates the pages committed afterwards (isolate_content): passes skip masked slots, so their K/V differs
  /// from another table's with the same tokens.
  void mask_token_range(std::size_t begin, std::size_t end, bool masked) {
    if (begin > end || end > seq_len()) {
      detail::fail<OutOfRange>("PageTable::mask_token_range: [", begin, ", ", end, ") is not inside [0, ",
                               seq_len(), ")");
    }
    if (begin < end) isolate_content();
    std::size_t const ps = page_size();
    std::size_t const c = committed_token_count();
    for (std::size_t i = begin; i < std::min(end, c); ++i) {
      auto& page = committed_meta_[i / ps];
      if (page.use_count() > 1) page = std::make_shared<std::vector<TokenMeta>>(*page);  // copy on write
      (*page)[i % ps].masked = masked;
    }
    for (std::size_t i = std::max(begin, c); i < end; ++i) working_tokens_[i - c].masked = masked;
  }

  /// Frees every committed page whose tokens are all masked; the remaining tokens keep their positions.
  /// Returns the number of pages dropped.
  std::size_t drop_masked_kv_pages() {
    std::vector<PageId> kept_pages;
    std::vector<MetaPtr> kept_meta;
    std::vector<std::pair<PageId, WindowHold>> dropped;
    std::size_t released_kept = 0;  // window-released pages that stay
    for (std::size_t p = 0; p < committed_.size(); ++p) {
      auto const& meta = *committed_meta_[p];
      if (std::all_of(meta.begin(), meta.end(), [](TokenMeta const& t) { return t.masked; })) {
        dropped.emplace_back(committed_[p], hold_of(p));
      } else {
        released_kept += p < window_released_ ? 1 : 0;
        kept_pages.push_back(committed_[p]);
        kept_meta.push_back(committed_meta_[p]);
      }
    }
    if (dropped.empty()) return 0;
    committed_ = std::move(kept_pages);
    committed_meta_ = std::move(kept_meta);
    window_released_ = released_kept;
    for (auto const& [id, hold] : dropped) pool_->release(id, hold);
    return dropped.size();
  }

  /// A child table: committed pages are shared (refcount + 1), working pages that hold tokens are duplicated
  /// into fresh pages whose bytes the caller must copy (see the returned copies). Reserved but empty working
  /// pages are not duplicated. Throws OutOfPages (nothing changed) when the pool cannot hold the copies.
  [[nodiscard]] PageTableFork fork() const;

  /// FlashInfer's page-table view: the physical pages holding slots 0 .. seq_len()-1, in order.
  [[nodiscard]] std::vector<PageId> kv_indices() const {
    std::vector<PageId> out(committed_);  // [ceil(seq_len / page_size)]
    std::size_t const used_working = (working_token_count() + page_size() - 1) / page_size();
    out.insert(out.end(), working_.begin(), working_.begin() + static_cast<std::ptrdiff_t>(used_working));
    return out;
  }

  /// The window pages of kv_indices() (no_window_page without a store), where the sliding-window layers keep
  /// their K/V; a page before window_floor() has none and reads as window page 0, which no window layer reads.
  [[nodiscard]] std::vector<WindowPageId> kv_window_indices() const {
    std::vector<WindowPageId> out = kv_indices();  // [ceil(seq_len / page_size)]
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = i < window_released_ ? 0 : pool_->window_page(out[i]);
    return out;
  }

  /// Filled slots of the last page of kv_indices() (0 for an empty table).
  [[nodiscard]] std::uint32_t kv_last_page_len() const {
    if (seq_len() == 0) return 0;
    std::size_t const w = working_token_count();
    if (w == 0) return page_size();
    return static_cast<std::uint32_t>((w - 1) % page_size() + 1);
  }

 private:
  friend struct PageTableFork;

  // Whether this table holds committed page i's window page.
  [[nodiscard]] WindowHold hold_of(std::size_t i) const noexcept {
    return i < window_released_ ? WindowHold::no : WindowHold::yes;
  }

  // See the header comment: pages no future token's window reaches give their window pages back.
  void release_windows_left_behind() {
    if (!pool_->has_window_store()) return;
    std::size_t const ps = page_size(), window = pool_->window_store().window, c = committed_token_count();
    while (window_released_ < committed_.size() && (window_released_ + 1) * ps - 1 + window <= c) {
      pool_->release_window(committed_[window_released_]);
      ++window_released_;
    }
  }

  void release_all() noexcept {
    if (pool_ == nullptr) return;
    for (std::size_t i = 0; i < committed_.size(); ++i) pool_->release(committed_[i], hold_of(i));
    for (PageId const id : working_) pool_->release(id);
    committed_.clear();
    working_.clear();
    committed_meta_.clear();
    working_tokens_.clear();
    window_released_ = 0;
  }

  void swap(PageTable& other) noexcept {
    std::swap(pool_, other.pool_);
    std::swap(committed_, other.committed_);
    std::swap(working_, other.working_);
    std::swap(committed_meta_, other.committed_meta_);
    std::swap(working_tokens_, other.working_tokens_);
    std::swap(max_committed_position_, other.max_committed_position_);
    std::swap(last_serial_, other.last_serial_);
    std::swap(window_released_, other.window_released_);
  }

  PagePool* pool_ = nullptr;
  std::vector<PageId> committed_;                       // [num_committed] full, immutable, maybe shared
  std::vector<PageId> working_;                         // [num_working] private; filled front to back
  // Committed token metadata is shared between forks page by page (copy on write when masked), so a fork
  // costs O(pages), not O(tokens).
  using MetaPtr = std::shared_ptr<std::vector<TokenMeta>>;
  std::vector<MetaPtr> committed_meta_;                 // [num_committed] -> [page_size] per committed page
  std::vector<TokenMeta> working_tokens_;               // [working_token_count] filled working slots
  std::optional<std::uint32_t> max_committed_position_;  // largest position in a committed page
  std::uint64_t last_serial_ = 0;                        // pool serial of the last committed page (0: none)
  std::size_t window_released_ = 0;                      // leading committed pages whose window pages are given back
};

struct PageTableFork {
  PageTable table;
  std::vector<PageCopy> copies;  // working pages to duplicate: copy K/V bytes of `from` into `to`
};

inline PageTableFork PageTable::fork() const {
  std::size_t const used_working = (working_token_count() + page_size() - 1) / page_size();
  std::vector<PageId> fresh = pool_->allocate(used_working);  // may throw: nothing changed yet
  PageTableFork out{PageTable(*pool_), {}};
  out.table.working_ = std::move(fresh);  // owned by the child from here on, so nothing can leak
  out.table.committed_ = committed_;
  for (std::size_t i = 0; i < committed_.size(); ++i) pool_->retain(committed_[i], hold_of(i));
  out.table.window_released_ = window_released_;
  out.table.committed_meta_ = committed_meta_;
  out.table.working_tokens_ = working_tokens_;
  out.table.max_committed_position_ = max_committed_position_;
  out.table.last_serial_ = last_serial_;
  out.copies.reserve(used_working);
  for (std::size_t i = 0; i < used_working; ++i) {
    PageId const from = working_[i], to = out.table.working_[i];
    out.copies.push_back(PageCopy{from, to, pool_->window_page(from), pool_->window_page(to)});
  }
  return out;
}

}  // namespace piecrust
