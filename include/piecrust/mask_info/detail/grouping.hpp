#pragma once
// Pattern grouping for mask_to_segment_ids: items (rows or columns of a bool matrix) with bit-for-bit
// identical contents get the same id, numbered 0..G-1 in order of first occurrence; an all-False item
// gets -1. Each item is packed into 64-bit words and hashed, so the cost is O(n * L / 64) expected,
// not the O(n^2 * L) of upstream's all-pairs comparison.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace piecrust::maskinfo::detail {

/// Groups n items already packed as `words` 64-bit words each ([n][words], bit p of item a in word p / 64).
inline std::vector<std::int32_t> group_packed(std::uint64_t const* packed, std::size_t n, std::size_t words) {
  std::vector<std::int32_t> ids(n, -1);                          // [n]
  std::unordered_multimap<std::uint64_t, std::size_t> first_of;  // hash -> representative item
  first_of.reserve(n);
  std::int32_t next = 0;
  for (std::size_t a = 0; a < n; ++a) {
    std::uint64_t const* w = packed + a * words;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a style mix over the words
    std::uint64_t any = 0;
    for (std::size_t k = 0; k < words; ++k) {
      any |= w[k];
      h ^= w[k];
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
    if (any == 0) continue;
    bool found = false;
    auto const [lo, hi] = first_of.equal_range(h);
    for (auto it = lo; it != hi && !found; ++it) {
      std::uint64_t const* r = packed + it->second * words;
      if (std::equal(w, w + words, r)) {
        ids[a] = ids[it->second];
        found = true;
      }
    }
    if (!found) {
      ids[a] = next++;
      first_of.emplace(h, a);
    }
  }
  return ids;
}

/// ids[a] for item a = 0..n-1, where bit p of item a is base[a * item_stride + p * elem_stride] != 0.
/// Rows (elem_stride == 1) are packed along memory; columns (item_stride == 1) 64 elements at a time
/// with contiguous reads, so both directions stream through the matrix.
inline std::vector<std::int32_t> group_identical(std::uint8_t const* base, std::size_t n, std::size_t len,
                                                 std::size_t item_stride, std::size_t elem_stride) {
  std::size_t const words = (len + 63) / 64;
  std::vector<std::uint64_t> packed(n * words, 0);  // [n][words]
  if (item_stride == 1 && elem_stride != 1) {
    std::vector<std::uint64_t> acc(n);  // [n] one word of 64 elements per item
    for (std::size_t w = 0; w < words; ++w) {
      std::fill(acc.begin(), acc.end(), 0);
      std::size_t const p_end = std::min(len, (w + 1) * 64);
      for (std::size_t p = w * 64; p < p_end; ++p) {
        std::uint8_t const* row = base + p * elem_stride;
        std::uint64_t const bit = std::uint64_t{1} << (p % 64);
        for (std::size_t a = 0; a < n; ++a) acc[a] |= row[a] != 0 ? bit : 0;
      }
      for (std::size_t a = 0; a < n; ++a) packed[a * words + w] = acc[a];
    }
  } else {
    for (std::size_t a = 0; a < n; ++a) {
      std::uint8_t const* p = base + a * item_stride;
      std::uint64_t* w = packed.data() + a * words;
      for (std::size_t k = 0; k < len; ++k) w[k / 64] |= (p[k * elem_stride] != 0 ? std::uint64_t{1} : 0) << (k % 64);
    }
  }
  return group_packed(packed.data(), n, words);
}

}  // namespace piecrust::maskinfo::detail
