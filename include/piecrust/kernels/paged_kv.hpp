#pragma once
// PagedKv<T>: a view of one layer's paged KV pool, [num_pages][2][page_size][num_kv_heads][head_dim].

#include <cstddef>
#include <string_view>
#include <type_traits>

#include "piecrust/config.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/kernels/bfloat16.hpp"

namespace piecrust {

/// Non-owning view of a KV pool in DESIGN.md's layout: for each page, all K slots then all V slots;
/// within a slot, heads then head_dim. T is float or BFloat16 (const for read-only use).
template <class T>
  requires KvElement<std::remove_const_t<T>>
struct PagedKv {
  T* data = nullptr;  // [num_pages][2][page_size][num_kv_heads][head_dim]
  std::size_t num_pages = 0;
  std::size_t page_size = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;

  /// A read-only view of the same pool.
  operator PagedKv<T const>() const noexcept  // NOLINT: implicit by design
    requires(!std::is_const_v<T>)
  {
    return {data, num_pages, page_size, num_kv_heads, head_dim};
  }

  [[nodiscard]] PIECRUST_HOST_DEVICE constexpr std::size_t slot_stride() const noexcept { return num_kv_heads * head_dim; }
  [[nodiscard]] PIECRUST_HOST_DEVICE constexpr std::size_t page_stride() const noexcept { return 2 * page_size * slot_stride(); }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return num_pages * page_stride(); }
  /// First element of K (kv = 0) or V (kv = 1) of `slot` in `page`, head `head`.
  [[nodiscard]] PIECRUST_HOST_DEVICE constexpr T* at(std::size_t page, std::size_t kv, std::size_t slot,
                                                     std::size_t head) const noexcept {
    return data + page * page_stride() + kv * page_size * slot_stride() + slot * slot_stride() + head * head_dim;
  }

  void validate(std::string_view op) const {
    if (page_size == 0 || num_kv_heads == 0 || head_dim == 0) {
      detail::fail<InvalidArgument>(op, ": kv pool has page_size = ", page_size, ", num_kv_heads = ", num_kv_heads,
                                    ", head_dim = ", head_dim, " (all must be > 0)");
    }
    if (data == nullptr && num_pages != 0) detail::fail<InvalidArgument>(op, ": kv pool data is null");
  }
};

}  // namespace piecrust
