#pragma once
// KvCache<T>: the K/V storage of every layer of a model, one pool per layer in DESIGN.md's layout
// [num_pages][2][page_size][num_kv_heads][head_dim] (K then V). Page bookkeeping (which page belongs to
// whom) is the runtime's PagePool; this object only holds the bytes.

#include <piecrust/core/error.hpp>
#include <piecrust/exec/buffer.hpp>
#include <piecrust/kernels/paged_kv.hpp>

#include <cstddef>
#include <vector>

namespace piecrust {

template <class T>
  requires KvElement<T>
class KvCache {
 public:
  KvCache(std::size_t num_layers, std::size_t num_pages, std::size_t page_size, std::size_t num_kv_heads,
          std::size_t head_dim)
      : num_pages_(num_pages), page_size_(page_size), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
    if (num_layers == 0 || num_pages == 0 || page_size == 0) {
      detail::fail<InvalidArgument>("KvCache: num_layers = ", num_layers, ", num_pages = ", num_pages,
                                    ", page_size = ", page_size, " (all must be > 0)");
    }
    layers_.reserve(num_layers);
    for (std::size_t l = 0; l < num_layers; ++l) {
      layers_.emplace_back(num_pages * 2 * page_size * num_kv_heads * head_dim, T{});  // [pages][2][page][heads][dim]
    }
  }

  [[nodiscard]] std::size_t num_layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t num_pages() const noexcept { return num_pages_; }
  [[nodiscard]] std::size_t page_size() const noexcept { return page_size_; }
  [[nodiscard]] std::size_t num_kv_heads() const noexcept { return num_kv_heads_; }
  [[nodiscard]] std::size_t head_dim() const noexcept { return head_dim_; }

  [[nodiscard]] PagedKv<T> layer(std::size_t l) {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }
  [[nodiscard]] PagedKv<T const> layer(std::size_t l) const {
    return {layers_.at(l).data(), num_pages_, page_size_, num_kv_heads_, head_dim_};
  }

 private:
  std::size_t num_pages_, page_size_, num_kv_heads_, head_dim_;
  std::vector<Buffer<T>> layers_;
};

}  // namespace piecrust
