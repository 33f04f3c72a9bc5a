#pragma once
// Pattern grouping for mask_to_segment_ids: items (rows or columns of a bool matrix) with bit-for-bit
// identical contents get the same id, numbered 0..G-1 in order of first occurrence; an all-False item
// gets -1. Each item is packed into 64-bit words and hashed, so the cost is O(n * L / 64) expected,
// not the O(n^2 * L) of upstream's all-pairs comparison.

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace piecrust::maskinfo::detail {

/// ids[a] for item a = 0..n-1, where bit p of item a is base[a * item_stride + p * elem_stride] != 0.
inline std::vector<std::int32_t> group_identical(std::uint8_t const* base, std::size_t n, std::size_t len,
                                                 std::size_t item_stride, std::size_t elem_stride) {
  std::size_t const words = (len + 63) / 64;
  std::vector<std::uint64_t> packed(n * words, 0);  // [n][words]
  std::vector<std::int32_t> ids(n, -1);             // [n]
  std::unordered_multimap<std::uint64_t, std::size_t> first_of;  // hash -> representative item
  first_of.reserve(n);
  std::int32_t next = 0;
  for (std::size_t a = 0; a < n; ++a) {
    std::uint64_t* w = packed.data() + a * words;
    std::uint8_t const* p = base + a * item_stride;
    bool any = false;
    for (std::size_t k = 0; k < len; ++k) {
      if (p[k * elem_stride] != 0) {
        w[k / 64] |= std::uint64_t{1} << (k % 64);
        any = true;
      }
    }
    if (!any) continue;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (std::size_t k = 0; k < words; ++k) {
      h ^= w[k];
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
    bool found = false;
    auto const [lo, hi] = first_of.equal_range(h);
    for (auto it = lo; it != hi; ++it) {
      std::uint64_t const* r = packed.data() + it->second * words;
      bool same = true;
      for (std::size_t k = 0; k < words && same; ++k) same = r[k] == w[k];
      if (same) {
        ids[a] = ids[it->second];
        found = true;
        break;
      }
    }
    if (!found) {
      ids[a] = next++;
      first_of.emplace(h, a);
    }
  }
  return ids;
}

}  // namespace piecrust::maskinfo::detail
