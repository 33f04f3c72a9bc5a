#pragma once
// KvCache<T, Mem>: the K/V storage of every layer of a model in a space's memory, one pool per layer in
// DESIGN.md's layout [num_pages][2][page_size][num_kv_heads][head_dim] (K then V). Page bookkeeping
// (which page belongs to whom) is the runtime's PagePool; this object only holds the bytes, and every
// operation on them (append, attention, copy-on-write, export, import) is a kernel of the space.
// Sliding-window layers may keep their K/V in a smaller window store (PagePool's WindowStore): their pools
// then hold num_window_pages pages, addressed by window page ids.

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "piecrust/core/error.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/host_memory.hpp"
#include "piecrust/exec/memory_of.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/paged_kv.hpp"

namespace piecrust {

template <class T, MemorySpace Mem = HostMemory>
  requires KvElement<T>
class KvCache {
 public:
  using value_type = T;
  using memory_space = Mem;

  /// num_layers pools of num_pages pages in `space`'s memory, zero-filled (by the space's ZeroFill) so
  /// that slots never written read as 0, not as stale bytes.
  template <ExecutionSpace S>
    requires std::same_as<typename S::memory_space, Mem>
  /// `window_layers` (empty, or one flag per layer) marks the layers whose pools hold num_window_pages pages.
  KvCache(S const& space, std::size_t num_layers, std::size_t num_pages, std::size_t page_size, std::size_t num_kv_heads,
          std::size_t head_dim, std::vector<bool> window_layers = {}, std::size_t num_window_pages = 0)
      : num_pages_(num_pages),
        num_window_pages_(num_window_pages),
        page_size_(page_size),
        num_kv_heads_(num_kv_heads),
        head_dim_(head_dim),
        window_layer_(std::move(window_layers)) {
    if (num_layers == 0 || num_pages == 0 || page_size == 0 || num_kv_heads == 0 || head_dim == 0) {
      detail::fail<InvalidArgument>("KvCache: num_layers = ", num_layers, ", num_pages = ", num_pages,
                                    ", page_size = ", page_size, ", num_kv_heads = ", num_kv_heads,
                                    ", head_dim = ", head_dim, " (all must be > 0)");
    }
    if (!window_layer_.empty() && window_layer_.size() != num_layers) {
      detail::fail<InvalidArgument>("KvCache: window_layers.size() = ", window_layer_.size(), " != num_layers = ", num_layers);
    }
    bool const any_window = std::find(window_layer_.begin(), window_layer_.end(), true) != window_layer_.end();
    if (any_window != (num_window_pages > 0)) {
      detail::fail<InvalidArgument>("KvCache: num_window_pages = ", num_window_pages,
                                    any_window ? " with window layers (must be > 0)" : " without window layers (must be 0)");
    }
    if (!any_window) window_layer_.clear();
    std::size_t const page = 2 * page_size * num_kv_heads * head_dim;
    for (std::size_t const pages : {num_pages, num_window_pages}) {
      if (pages > 0 && (pages * page) / pages != page) {
        detail::fail<InvalidArgument>("KvCache: ", pages, " pages x page size overflows size_t");
      }
    }
    layers_.reserve(num_layers);
    for (std::size_t l = 0; l < num_layers; ++l) {
      std::size_t const n = pages_of(l) * page;
      layers_.emplace_back(n, memory_of(space));  // [pages_of(l)][2][page][heads][dim]
      zero_fill(space, std::span<T>(layers_.back().data(), n));
    }
  }

  [[nodiscard]] std::size_t num_layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t num_pages() const noexcept { return num_pages_; }
  /// Pages of each window layer's pool (0: no window layers).
  [[nodiscard]] std::size_t num_window_pages() const noexcept { return num_window_pages_; }
  /// Whether layer l keeps its K/V in the window store (addressed by window page ids).
  [[nodiscard]] bool is_window_layer(std::size_t l) const noexcept { return !window_layer_.empty() && window_layer_[l]; }
  /// Pages of layer l's pool.
  [[nodiscard]] std::size_t pages_of(std::size_t l) const noexcept { return is_window_layer(l) ? num_window_pages_ : num_pages_; }
  [[nodiscard]] std::size_t page_size() const noexcept { return page_size_; }
  [[nodiscard]] std::size_t num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] std::size_t head_dim() const noexcept { return head_dim_; }
  /// Elements of one page of one layer (K and V).
  [[nodiscard]] std::size_t page_elements() const noexcept { return 2 * page_size_ * num_kv_heads_ * head_dim_; }
  [[nodiscard]] std::size_t page_bytes() const noexcept { return page_elements() * sizeof(T); }

  [[nodiscard]] PagedKv<T> layer(std::size_t l) {
    return {layers_.at(l).data(), pages_of(l), page_size_, num_kv_heads_, head_dim_};
  }
  [[nodiscard]] PagedKv<T const> layer(std::size_t l) const {
    return {layers_.at(l).data(), pages_of(l), page_size_, num_kv_heads_, head_dim_};
  }

 private:
  std::size_t num_pages_, num_window_pages_, page_size_, num_kv_heads_, head_dim_;
  std::vector<bool> window_layer_;  // [num_layers] or empty (no window store)
  std::vector<Buffer<T, Mem>> layers_;
};

}  // namespace piecrust
