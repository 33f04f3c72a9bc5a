#pragma once
// Slicing helpers of the MaskInfo functions: per-batch slices of row-major tensors with the clamping of
// XLA's dynamic_slice (the upstream transforms are jitted) or of Python slicing, and head 0 of
// per-head ids.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace piecrust::maskinfo::detail {

inline std::int64_t clip(std::int64_t v, std::int64_t lo, std::int64_t hi) { return std::max(lo, std::min(v, hi)); }

/// XLA dynamic_slice start: clamped so that [start, start + size) fits in [0, len).
inline std::int64_t dyn_start(std::int64_t start, std::int64_t size, std::int64_t len, char const* what) {
  if (size > len) piecrust::detail::fail<InvalidArgument>(what, ": slice of ", size, " does not fit in ", len);
  return clip(start, 0, len - size);
}

/// Slices the last axis of a row-major tensor per batch row: [..., starts[b] : starts[b] + width].
template <class T>
Tensor<T> slice_last(Tensor<T> const& t, std::vector<std::int64_t> const& starts, std::int64_t width) {
  Shape s = t.shape();
  std::int64_t const len = s.back();
  std::int64_t const batch = s.front();
  std::int64_t const inner = len == 0 ? 0 : static_cast<std::int64_t>(t.size()) / batch / len;  // rows per batch
  s.back() = width;
  Tensor<T> out(s);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t r = 0; r < inner; ++r) {
      T const* src = t.data().data() + (b * inner + r) * len + starts[static_cast<std::size_t>(b)];
      std::copy(src, src + width, out.data().data() + (b * inner + r) * width);
    }
  }
  return out;
}

/// Slices axis `axis` (1 <= axis < rank) of t per batch row: [starts[b], starts[b] + width).
template <class T>
Tensor<T> slice_axis(Tensor<T> const& t, std::size_t axis, std::vector<std::int64_t> const& starts, std::int64_t width) {
  Shape s = t.shape();
  std::int64_t const batch = s[0];
  std::int64_t outer = 1, inner = 1;
  for (std::size_t a = 1; a < axis; ++a) outer *= s[a];
  for (std::size_t a = axis + 1; a < s.size(); ++a) inner *= s[a];
  std::int64_t const len = s[axis];
  s[axis] = width;
  Tensor<T> out(s);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t w = 0; w < width; ++w) {
        T const* src = t.data().data() + ((b * outer + o) * len + starts[static_cast<std::size_t>(b)] + w) * inner;
        std::copy(src, src + inner, out.data().data() + ((b * outer + o) * width + w) * inner);
      }
    }
  }
  return out;
}

/// Per-batch dynamic slice of the last axis of 2-D ids (or 3-D when allowed) with XLA clamping.
inline IntTensor slice_ids_dyn(IntTensor const& t, std::vector<std::int64_t> starts, std::int64_t width, char const* what,
                               std::size_t max_rank = 3) {
  if (t.rank() != 2 && !(t.rank() == 3 && max_rank == 3)) {
    piecrust::detail::fail<InvalidArgument>(what, " must be 2D", max_rank == 3 ? " or 3D" : "", ", got shape ",
                                            shape_repr(t.shape()));
  }
  if (static_cast<std::int64_t>(starts.size()) != t.dim(0)) {
    piecrust::detail::fail<InvalidArgument>(what, ": batch ", t.dim(0), " does not match the mask batch ", starts.size());
  }
  for (auto& s : starts) s = dyn_start(s, width, t.shape().back(), what);
  return slice_last(t, starts, width);
}

/// Python slicing t[..., start:start + width] (clamped at the end).
inline IntTensor slice_py(IntTensor const& t, std::int64_t start, std::int64_t width) {
  std::int64_t const len = t.shape().back();
  std::int64_t const s = std::min(start, len), e = std::min(start + width, len);
  std::vector<std::int64_t> starts(static_cast<std::size_t>(t.dim(0)), s);
  return slice_last(t, starts, std::max<std::int64_t>(e - s, 0));
}

/// ids[:, 0, :] for 3-D ids, the ids themselves otherwise.
inline IntTensor head0(IntTensor const& ids) {
  if (ids.rank() != 3) return ids;
  std::int64_t const b = ids.dim(0), h = ids.dim(1), s = ids.dim(2);
  IntTensor out(Shape{b, s});  // [batch][seq]
  for (std::int64_t bb = 0; bb < b; ++bb) {
    if (h == 0) piecrust::detail::fail<InvalidArgument>("segment ids have 0 heads");
    std::copy_n(&ids.at(bb, 0, 0), s, &out.at(bb, 0));
  }
  return out;
}

}  // namespace piecrust::maskinfo::detail
