#pragma once
// KvCache<T, Mem>: the K/V storage of every layer of a model in a space's memory, one pool per layer in
// DESIGN.md's layout [num_pages][2][page_size][num_kv_heads][head_dim] (K then V). Page bookkeeping
// (which page belongs to whom) is the runtime's PagePool; this object only holds the bytes, and every
// operation on them (append, attention, copy-on-write, export, import) is a kernel of the space.

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
  KvCache(S const& space, std::size_t num_layers, std::size_t num_pages, std::size_t page_size, std::size_t num_kv_heads,
          std::size_t head_dim)
      : num_pages_(num_pages), page_size_(page_size), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
    if (num_layers == 0 || num_pages == 0 || page_size == 0 || num_kv_heads == 0 || head_dim == 0) {
      detail::fail<InvalidArgument>("KvCache: num_layers = ", num_layers, ", num_pages = ", num_pages,
                                    ", page_size = ", page_size, ", num_kv_heads = ", num_kv_heads,
                                    ", head_dim = ", head_dim, " (all must be > 0)");
    }
    std::size_t const n = num_pages * 2 * page_size * num_kv_heads * head_dim;
    if (n / num_pages != 2 * page_size * num_kv_heads * head_dim) {
      detail::fail<InvalidArgument>("KvCache: num_pages = ", num_pages, " x page size overflows size_t");
    }
    layers_.reserve(num_layers);
    for (std::size_t l = 0; l < num_layers; ++l) {
      layers_.emplace_back(n, memory_of(space));  // [pages][2][page][heads][dim]
      zero_fill(space, std::span<T>(layers_.back().data(), n));
    }
  }

  [[nodiscard]] std::size_t num_layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t num_pages() const noexcept { return num_pages_; }
  [[nodiscard]] std::size_t page_size() const noexcept { return page_size_; }
  [[nodiscard]] std::size_t num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] std::size_t head_dim() const noexcept { return head_dim_; }
  /// Elements of one page of one layer (K and V).
  [[nodiscard]] std::size_t page_elements() const noexcept { return 2 * page_size_ * num_kv_heads_ * head_dim_; }
  [[nodiscard]] std::size_t page_bytes() const noexcept { return page_elements() * sizeof(T); }

  [[nodiscard]] PagedKv<T> layer(std::size_t l) {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }
  [[nodiscard]] PagedKv<T const> layer(std::size_t l) const {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }

 private:
  std::size_t num_pages_, page_size_, num_kv_heads_, head_dim_;
  std::vector<Buffer<T, Mem>> layers_;
};

}  // namespace piecrust
