#pragma once
// ejKernel's module-level mask conversions (ejkernel.types.mask), same names, same results, quirks
// included (see docs/maskinfo.md and the spec's S1-S11). Validity rules differ per function on purpose:
// segment_ids_to_mask uses id > -1, masks use value != 0.
//
// cu_seqlens here are "F1" start/end pairs [s0, e0, s1, e1, ...] (2B,), except
// segment_ids_to_cu_seqlens, which returns "F2" cumulative counts by id value (max_segments + 1,).

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/detail/grouping.hpp"
#include "piecrust/mask_info/dtype.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace piecrust::maskinfo {

/// (q_mask (B,Q), kv_mask (B,K), attention_mask (B,1,Q,K)), all in one dtype.
struct QkvMasks {
  Array q_mask;
  Array kv_mask;
  Array attention_mask;
};

/// Paired query / key-value arrays (segment ids, cu_seqlens, positions).
template <class T>
struct QkvPair {
  T q;
  T kv;
};

namespace detail {

inline void require_rank(Shape const& s, std::size_t rank, char const* what) {
  if (s.size() != rank) {
    piecrust::detail::fail<InvalidArgument>(what, " must be ", rank, "-D, got shape ", shape_repr(s));
  }
}

/// Batch extent after numpy broadcasting of two leading dims (equal, or one of them 1).
inline std::int64_t broadcast_batch(std::int64_t a, std::int64_t b, char const* what) {
  if (a == b || b == 1) return a;
  if (a == 1) return b;
  piecrust::detail::fail<InvalidArgument>(what, ": batch sizes ", a, " and ", b, " do not broadcast");
}

/// The (start, end) of the True entries of a row: first True, last True + 1; (0, 0) when none.
inline std::pair<std::int32_t, std::int32_t> row_span(std::uint8_t const* row, std::size_t n) {
  std::size_t first = n, last = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (row[i]) {
      if (first == n) first = i;
      last = i + 1;
    }
  }
  if (first == n) return {0, 0};
  return {static_cast<std::int32_t>(first), static_cast<std::int32_t>(last)};
}

/// F1 (2B,) from a (B, S) bool mask.
inline IntTensor spans_of(BoolTensor const& m) {
  std::int64_t const b = m.dim(0), s = m.dim(1);
  IntTensor out(Shape{2 * b});  // [2 * batch]
  for (std::int64_t r = 0; r < b; ++r) {
    auto const [st, en] = row_span(m.data().data() + r * s, static_cast<std::size_t>(s));
    out[static_cast<std::size_t>(2 * r)] = st;
    out[static_cast<std::size_t>(2 * r + 1)] = en;
  }
  return out;
}

}  // namespace detail

/// segment_ids_to_mask((q_ids, kv_ids), dtype): attn[b,0,i,j] = q==kv & q > -1 & kv > -1, (B,1,Q,K).
[[nodiscard]] inline Array segment_ids_to_mask(IntTensor const& q_ids, IntTensor const& kv_ids,
                                               DType dtype = DType::bool_) {
  detail::trace("ArrayImpl", "segment_ids_to_mask");
  detail::require_rank(q_ids.shape(), 2, "segment_ids_to_mask: q segment_ids");
  detail::require_rank(kv_ids.shape(), 2, "segment_ids_to_mask: kv segment_ids");
  std::int64_t const b = detail::broadcast_batch(q_ids.dim(0), kv_ids.dim(0), "segment_ids_to_mask");
  std::int64_t const q = q_ids.dim(1), k = kv_ids.dim(1);
  BoolTensor m(Shape{b, 1, q, k});  // [batch][1][q_len][kv_len]
  for (std::int64_t r = 0; r < b; ++r) {
    std::int32_t const* qr = q_ids.data().data() + (q_ids.dim(0) == 1 ? 0 : r) * q;
    std::int32_t const* kr = kv_ids.data().data() + (kv_ids.dim(0) == 1 ? 0 : r) * k;
    std::uint8_t* out = m.data().data() + r * q * k;
    for (std::int64_t i = 0; i < q; ++i) {
      if (qr[i] <= -1) continue;
      for (std::int64_t j = 0; j < k; ++j) out[i * k + j] = (kr[j] == qr[i]) ? 1 : 0;
    }
  }
  return cast_bool(m, dtype);
}

/// segment_ids_to_mask(segment_ids, dtype): the self-attention form (kv = q).
[[nodiscard]] inline Array segment_ids_to_mask(IntTensor const& ids, DType dtype = DType::bool_) {
  return segment_ids_to_mask(ids, ids, dtype);
}

/// segment_ids_to_qkv_masks(q, kv=None, dtype) == segment_ids_to_mask(..., return_separate_masks=True).
[[nodiscard]] inline QkvMasks segment_ids_to_qkv_masks(IntTensor const& q_ids,
                                                       std::optional<IntTensor> const& kv_ids = std::nullopt,
                                                       DType dtype = DType::bool_) {
  IntTensor const& kv = kv_ids ? *kv_ids : q_ids;
  Array attn = segment_ids_to_mask(q_ids, kv, dtype);
  BoolTensor qv(q_ids.shape()), kvv(kv.shape());
  for (std::size_t i = 0; i < q_ids.size(); ++i) qv[i] = q_ids[i] > -1;
  for (std::size_t i = 0; i < kv.size(); ++i) kvv[i] = kv[i] > -1;
  return {cast_bool(qv, dtype), cast_bool(kvv, dtype), std::move(attn)};
}

/// mask_to_segment_ids(mask, per_head): pattern grouping, not segment recovery (spec S3). Rows with
/// identical bits share an id (first-occurrence order), all-False rows get -1; columns likewise,
/// numbered independently. (Q,K) -> (Q,),(K,); (B,Q,K) -> (B,Q),(B,K); (B,H,Q,K) -> head 0 only, or
/// (B,H,Q),(B,H,K) with per_head.
[[nodiscard]] inline QkvPair<IntTensor> mask_to_segment_ids(Array const& mask, bool per_head = false) {
  detail::trace("ArrayImpl", "mask_to_segment_ids");
  std::size_t const rank = mask.rank();
  if (rank < 2 || rank > 4) {
    piecrust::detail::fail<InvalidArgument>(
        "mask_to_segment_ids: mask must be 2D (Q,K), 3D (batch,Q,K) or 4D (batch,heads,Q,K), got ", rank,
        "D shape ", shape_repr(mask.shape()));
  }
  BoolTensor const converted = mask.is_bool() ? BoolTensor() : mask.to_bool();
  BoolTensor const& m = mask.is_bool() ? mask.bools() : converted;
  Shape const& s = m.shape();
  std::int64_t const q = s[rank - 2], k = s[rank - 1];
  std::int64_t const b = rank >= 3 ? s[0] : 1;
  std::int64_t const h = rank == 4 ? s[1] : 1;
  std::int64_t const slices_per_b = (rank == 4 && per_head) ? h : 1;
  Shape qs, ks;
  if (rank == 2) {
    qs = {q};
    ks = {k};
  } else if (rank == 3 || !per_head) {
    qs = {b, q};
    ks = {b, k};
  } else {
    qs = {b, h, q};
    ks = {b, h, k};
  }
  IntTensor qo(qs), ko(ks);
  std::size_t const qk = static_cast<std::size_t>(q * k);
  for (std::int64_t r = 0; r < b; ++r) {
    for (std::int64_t hh = 0; hh < slices_per_b; ++hh) {
      std::uint8_t const* base = m.data().data() + (r * h + hh) * static_cast<std::int64_t>(qk);
      auto const qi = detail::group_identical(base, static_cast<std::size_t>(q), static_cast<std::size_t>(k),
                                              static_cast<std::size_t>(k), 1);
      auto const ki = detail::group_identical(base, static_cast<std::size_t>(k), static_cast<std::size_t>(q), 1,
                                              static_cast<std::size_t>(k));
      std::size_t const slice = static_cast<std::size_t>(r * slices_per_b + hh);
      std::copy(qi.begin(), qi.end(), qo.data().begin() + static_cast<std::ptrdiff_t>(slice) * q);
      std::copy(ki.begin(), ki.end(), ko.data().begin() + static_cast<std::ptrdiff_t>(slice) * k);
    }
  }
  return {std::move(qo), std::move(ko)};
}

/// _positions_from_segments_2d(ids, pad_value): per row, a counter that restarts when the id changes
/// between neighbours or after any pad (id < 0); pads get pad_value. [1,1,2,1] -> [0,1,0,0].
[[nodiscard]] inline IntTensor positions_from_segments_2d(IntTensor const& ids, std::int32_t pad_value) {
  detail::require_rank(ids.shape(), 2, "positions_from_segments_2d: segment_ids");
  std::int64_t const b = ids.dim(0), s = ids.dim(1);
  IntTensor out(ids.shape());  // [batch][seq]
  for (std::int64_t r = 0; r < b; ++r) {
    std::int32_t prev = -2, cnt = -1;
    for (std::int64_t i = 0; i < s; ++i) {
      std::size_t const at = static_cast<std::size_t>(r * s + i);
      std::int32_t const id = ids[at];
      if (id < 0) {
        out[at] = pad_value;
        prev = -2;
        cnt = -1;
      } else {
        cnt = (id != prev) ? 0 : cnt + 1;
        out[at] = cnt;
        prev = id;
      }
    }
  }
  return out;
}

/// qkv_masks_to_cu_seqlens(q_mask, kv_mask=None): F1 (start, end) pairs of each row's first..last
/// valid token (value != 0); holes are ignored and an empty row gives (0, 0).
[[nodiscard]] inline QkvPair<IntTensor> qkv_masks_to_cu_seqlens(Array const& q_mask,
                                                                std::optional<Array> const& kv_mask = std::nullopt) {
  detail::trace("ArrayImpl", "qkv_masks_to_cu_seqlens");
  Array const& kv = kv_mask ? *kv_mask : q_mask;
  if (q_mask.rank() != 2 || kv.rank() != 2) {
    piecrust::detail::fail<InvalidArgument>("qkv_masks_to_cu_seqlens: q_mask and kv_mask must be 2D (batch, seq), got ",
                                            shape_repr(q_mask.shape()), " and ", shape_repr(kv.shape()));
  }
  return {detail::spans_of(q_mask.to_bool()), detail::spans_of(kv.to_bool())};
}

/// _segment_ids_to_cu_seqlens(ids, max_segments): F2 = [0, c0, c0+c1, ...] with c_s = count of id s in
/// the whole (flattened) array, s in [0, max_segments). Other ids are dropped.
[[nodiscard]] inline IntTensor segment_ids_to_cu_seqlens(IntTensor const& ids, std::int64_t max_segments = 128) {
  std::int64_t const n = std::max<std::int64_t>(max_segments, 0);
  std::vector<std::int32_t> counts(static_cast<std::size_t>(n) + 1, 0);  // [max_segments + 1]
  for (auto const id : ids.data()) {
    if (id >= 0 && id < n) ++counts[static_cast<std::size_t>(id) + 1];
  }
  for (std::size_t i = 1; i < counts.size(); ++i) counts[i] += counts[i - 1];
  return IntTensor(Shape{n + 1}, std::move(counts));
}

/// cu_seqlens_to_mask(cu_seqlens, max_len, dtype): F1 -> (B, max_len), mask[b,i] = s_b <= i < e_b.
[[nodiscard]] inline Array cu_seqlens_to_mask(IntTensor const& cu_seqlens, std::int64_t max_len,
                                              DType dtype = DType::bool_) {
  detail::trace("ArrayImpl", "cu_seqlens_to_mask");
  if (max_len < 0) piecrust::detail::fail<InvalidArgument>("cu_seqlens_to_mask: max_len = ", max_len, " must be >= 0");
  if (cu_seqlens.rank() != 1) {
    piecrust::detail::fail<InvalidArgument>("cu_seqlens_to_mask: cu_seqlens must be 1D, got shape ",
                                            shape_repr(cu_seqlens.shape()));
  }
  if (cu_seqlens.size() % 2 != 0) {
    piecrust::detail::fail<InvalidArgument>("cu_seqlens_to_mask: cu_seqlens must have even length (start, end pairs), got ",
                                            cu_seqlens.size());
  }
  std::int64_t const b = static_cast<std::int64_t>(cu_seqlens.size() / 2);
  BoolTensor m(Shape{b, max_len});  // [batch][max_len]
  for (std::int64_t r = 0; r < b; ++r) {
    std::int64_t const st = cu_seqlens[static_cast<std::size_t>(2 * r)];
    std::int64_t const en = cu_seqlens[static_cast<std::size_t>(2 * r + 1)];
    for (std::int64_t i = std::max<std::int64_t>(st, 0); i < std::min(en, max_len); ++i) {
      m[static_cast<std::size_t>(r * max_len + i)] = 1;
    }
  }
  return cast_bool(m, dtype);
}

/// qkv_cu_seqlens_to_qkv_masks: (q_mask (Bq, max_q_len), kv_mask (Bk, max_kv_len)); kv defaults to q.
[[nodiscard]] inline QkvPair<Array> qkv_cu_seqlens_to_qkv_masks(IntTensor const& cu_seqlens_q, std::int64_t max_q_len,
                                                                std::optional<IntTensor> const& cu_seqlens_kv = std::nullopt,
                                                                std::optional<std::int64_t> max_kv_len = std::nullopt,
                                                                DType dtype = DType::bool_) {
  IntTensor const& cu_kv = cu_seqlens_kv ? *cu_seqlens_kv : cu_seqlens_q;
  return {cu_seqlens_to_mask(cu_seqlens_q, max_q_len, dtype),
          cu_seqlens_to_mask(cu_kv, max_kv_len.value_or(max_q_len), dtype)};
}

/// qkv_cu_seqlens_to_attention_mask: q_mask[:,None,:,None] & kv_mask[:,None,None,:], (B,1,Q,K); a batch
/// of 1 broadcasts.
[[nodiscard]] inline Array qkv_cu_seqlens_to_attention_mask(IntTensor const& cu_seqlens_q, std::int64_t max_q_len,
                                                            std::optional<IntTensor> const& cu_seqlens_kv = std::nullopt,
                                                            std::optional<std::int64_t> max_kv_len = std::nullopt,
                                                            DType dtype = DType::bool_) {
  auto const masks = qkv_cu_seqlens_to_qkv_masks(cu_seqlens_q, max_q_len, cu_seqlens_kv, max_kv_len);
  BoolTensor const& qm = masks.q.bools();
  BoolTensor const& km = masks.kv.bools();
  std::int64_t const b = detail::broadcast_batch(qm.dim(0), km.dim(0), "qkv_cu_seqlens_to_attention_mask");
  std::int64_t const q = qm.dim(1), k = km.dim(1);
  BoolTensor m(Shape{b, 1, q, k});  // [batch][1][q_len][kv_len]
  for (std::int64_t r = 0; r < b; ++r) {
    for (std::int64_t i = 0; i < q; ++i) {
      if (!qm.at(qm.dim(0) == 1 ? 0 : r, i)) continue;
      for (std::int64_t j = 0; j < k; ++j) m.at(r, 0, i, j) = km.at(km.dim(0) == 1 ? 0 : r, j);
    }
  }
  return cast_bool(m, dtype);
}

/// attention_mask_to_qkv_cu_seqlens(mask, reduce_heads): 2D (B,S) is a padding mask; 4D heads are
/// reduced by "first", "any" or "all" (checked only for 4D); then q/kv validity = any over the other
/// axis, as F1 pairs.
[[nodiscard]] inline QkvPair<IntTensor> attention_mask_to_qkv_cu_seqlens(Array const& attention_mask,
                                                                         std::string_view reduce_heads = "any") {
  detail::trace("ArrayImpl", "attention_mask_to_qkv_cu_seqlens");
  BoolTensor m = attention_mask.to_bool();
  if (m.rank() == 2) return qkv_masks_to_cu_seqlens(m);
  if (m.rank() == 4) {
    bool const first = reduce_heads == "first", any = reduce_heads == "any", all = reduce_heads == "all";
    if (!first && !any && !all) {
      piecrust::detail::fail<InvalidArgument>("attention_mask_to_qkv_cu_seqlens: reduce_heads = '", reduce_heads,
                                              "' is not one of 'first', 'any', 'all'");
    }
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    BoolTensor r(Shape{b, q, k});  // [batch][q_len][kv_len]
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t i = 0; i < q * k; ++i) {
        std::size_t const base = static_cast<std::size_t>(bb * h * q * k + i);
        bool v = first ? (h > 0 && m[base]) : all;
        if (!first) {
          for (std::int64_t hh = 0; hh < h; ++hh) {
            bool const x = m[base + static_cast<std::size_t>(hh * q * k)] != 0;
            v = any ? (v || x) : (v && x);
          }
        }
        r[static_cast<std::size_t>(bb * q * k + i)] = v ? 1 : 0;
      }
    }
    m = std::move(r);
  }
  if (m.rank() != 3) {
    piecrust::detail::fail<InvalidArgument>("attention_mask_to_qkv_cu_seqlens: attention_mask must be 2D or 4D (or 3D), got shape ",
                                            shape_repr(attention_mask.shape()));
  }
  std::int64_t const b = m.dim(0), q = m.dim(1), k = m.dim(2);
  BoolTensor qv(Shape{b, q}), kv(Shape{b, k});  // [batch][q_len], [batch][kv_len]
  for (std::int64_t bb = 0; bb < b; ++bb) {
    for (std::int64_t i = 0; i < q; ++i) {
      for (std::int64_t j = 0; j < k; ++j) {
        if (m.at(bb, i, j)) {
          qv.at(bb, i) = 1;
          kv.at(bb, j) = 1;
        }
      }
    }
  }
  return {detail::spans_of(qv), detail::spans_of(kv)};
}

}  // namespace piecrust::maskinfo
