#pragma once
// MaskInfo's lazy getters: one representation of the pattern from whichever is stored (dense mask,
// segment ids, cu_seqlens, positions, additive bias). As upstream, what a get_or_compute_* getter
// computes is cached into the MaskInfo it reads, const or not (spec §4.1); the property-style getters
// (attention_mask, q_segment_ids, cu_seqlens_q, ...) return the stored field when there is one.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/detail/slicing.hpp"
#include "piecrust/mask_info/dtype.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

namespace piecrust::maskinfo {

/// The stored mask cast to dtype (not cached), else built from the ids and cached **in that dtype**.
[[nodiscard]] inline Array get_or_compute_attention_mask(MaskInfo const& m, DType dtype = DType::bool_) {
  detail::trace("MaskInfo", "get_or_compute_attention_mask");
  auto const& f = m.fields();
  if (f.attention_mask) return f.attention_mask->astype(dtype);
  if (f.q_segment_ids && f.kv_segment_ids) {
    m.cache_attention_mask(segment_ids_to_mask(*f.q_segment_ids, *f.kv_segment_ids, dtype));
    return *f.attention_mask;
  }
  piecrust::detail::fail<InvalidState>(
      "Cannot compute attention mask: MaskInfo is empty (both attention_mask and segment_ids are None)");
}

/// The attention_mask property: the stored mask in its stored dtype, else computed (bool) and cached.
[[nodiscard]] inline Array attention_mask(MaskInfo const& m) {
  detail::trace_property("attention_mask");
  if (m.fields().attention_mask) return *m.fields().attention_mask;
  return get_or_compute_attention_mask(m, DType::bool_);
}

namespace detail {
/// get_or_compute_attention_mask(bool) as a 4-D bool tensor.
[[nodiscard]] inline BoolTensor mask4(MaskInfo const& m, char const* what) {
  BoolTensor mk = get_or_compute_attention_mask(m, DType::bool_).to_bool();
  if (mk.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>(what, ": the attention mask must be 4D (batch, heads, q_len, kv_len), got shape ",
                                            shape_repr(mk.shape()));
  }
  return mk;
}
}  // namespace detail

/// The stored ids, else pattern ids from the mask (mask_to_segment_ids; both sides overwritten), cached.
inline QkvPair<IntTensor> get_or_compute_segment_ids(MaskInfo const& m, bool per_head = false) {
  detail::trace("MaskInfo", "get_or_compute_segment_ids");
  auto const& f = m.fields();
  if (f.q_segment_ids && f.kv_segment_ids) return {*f.q_segment_ids, *f.kv_segment_ids};
  if (f.attention_mask) {
    auto ids = mask_to_segment_ids(*f.attention_mask, per_head);
    m.cache_segment_ids(ids.q, ids.kv);
    return ids;
  }
  piecrust::detail::fail<InvalidState>(
      "Cannot compute segment IDs: MaskInfo is empty (both attention_mask and segment_ids are None)");
}

[[nodiscard]] inline IntTensor q_segment_ids(MaskInfo const& m) {
  detail::trace_property("q_segment_ids");
  if (m.fields().q_segment_ids) return *m.fields().q_segment_ids;
  return get_or_compute_segment_ids(m).q;
}
[[nodiscard]] inline IntTensor kv_segment_ids(MaskInfo const& m) {
  detail::trace_property("kv_segment_ids");
  if (m.fields().kv_segment_ids) return *m.fields().kv_segment_ids;
  return get_or_compute_segment_ids(m).kv;
}

/// get_or_compute_qkv_cu_seqlens: stored cu (F1 from from_cu_seqlens) > F2 from ids (length
/// max_segments + 1, whole batch merged) > F1 from the mask. Cached (S2). out_dtype is int32.
inline QkvPair<IntTensor> get_or_compute_qkv_cu_seqlens(MaskInfo const& m, std::int64_t max_segments = 128) {
  detail::trace("MaskInfo", "get_or_compute_qkv_cu_seqlens");
  auto const& f = m.fields();
  if (f.cu_seqlens_q && f.cu_seqlens_kv) return {*f.cu_seqlens_q, *f.cu_seqlens_kv};
  if (f.cu_seqlens_q || f.cu_seqlens_kv) {
    IntTensor const c = f.cu_seqlens_q ? *f.cu_seqlens_q : *f.cu_seqlens_kv;
    m.cache_cu_seqlens(c, c);
    return {c, c};
  }
  if (f.q_segment_ids && f.kv_segment_ids) {
    IntTensor q = segment_ids_to_cu_seqlens(detail::head0(*f.q_segment_ids), max_segments);
    IntTensor kv = segment_ids_to_cu_seqlens(detail::head0(*f.kv_segment_ids), max_segments);
    m.cache_cu_seqlens(std::move(q), std::move(kv));
    return {*f.cu_seqlens_q, *f.cu_seqlens_kv};
  }
  if (!f.attention_mask) {
    piecrust::detail::fail<InvalidState>(
        "Cannot compute cu_seqlens: MaskInfo is empty (both attention_mask and segment_ids are None)");
  }
  BoolTensor const mk = detail::mask4(m, "get_or_compute_qkv_cu_seqlens");
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  BoolTensor qv(Shape{b, q}), kv(Shape{b, k});  // [batch][q_len], [batch][kv_len]
  for (std::int64_t bb = 0; bb < b; ++bb) {
    for (std::int64_t hh = 0; hh < h; ++hh) {
      for (std::int64_t i = 0; i < q; ++i) {
        for (std::int64_t j = 0; j < k; ++j) {
          if (mk.at(bb, hh, i, j)) {
            qv.at(bb, i) = 1;
            kv.at(bb, j) = 1;
          }
        }
      }
    }
  }
  auto cu = qkv_masks_to_cu_seqlens(qv, Array(kv));
  m.cache_cu_seqlens(cu.q, cu.kv);
  return cu;
}

[[nodiscard]] inline IntTensor cu_seqlens_q(MaskInfo const& m) {
  detail::trace_property("cu_seqlens_q");
  auto const& f = m.fields();
  if (f.cu_seqlens_q && f.cu_seqlens_kv) return *f.cu_seqlens_q;
  return get_or_compute_qkv_cu_seqlens(m).q;
}
[[nodiscard]] inline IntTensor cu_seqlens_kv(MaskInfo const& m) {
  detail::trace_property("cu_seqlens_kv");
  auto const& f = m.fields();
  if (f.cu_seqlens_q && f.cu_seqlens_kv) return *f.cu_seqlens_kv;
  return get_or_compute_qkv_cu_seqlens(m).kv;
}

/// get_or_compute_positions: missing sides from the ids (q pad -1, kv pad int32 max), written into
/// the object. Without ids and mask it returns what is stored (possibly nothing).
inline QkvPair<std::optional<IntTensor>> get_or_compute_positions(MaskInfo const& m) {
  detail::trace("MaskInfo", "get_or_compute_positions");
  auto const& f = m.fields();
  bool const need_q = !f.q_positions, need_kv = !f.kv_positions;
  if (!need_q && !need_kv) return {f.q_positions, f.kv_positions};
  if (!f.q_segment_ids || !f.kv_segment_ids) {
    if (!f.attention_mask) return {f.q_positions, f.kv_positions};
    (void)get_or_compute_segment_ids(m, false);
  }
  if (need_q && f.q_segment_ids) m.cache_q_positions(positions_from_segments_2d(*f.q_segment_ids, -1));
  if (need_kv && f.kv_segment_ids) {
    m.cache_kv_positions(positions_from_segments_2d(*f.kv_segment_ids, std::numeric_limits<std::int32_t>::max()));
  }
  return {f.q_positions, f.kv_positions};
}

/// q_position_ids: positions of the (stored or pattern) q ids, pad -1; not cached.
[[nodiscard]] inline IntTensor q_position_ids(MaskInfo const& m) {
  detail::trace_property("q_position_ids");
  return positions_from_segments_2d(q_segment_ids(m), -1);
}

/// q_attention_mask: int32 (B,Q), 0 where the q id is exactly -1, else 1 (so -2 counts as valid, S1).
[[nodiscard]] inline IntTensor q_attention_mask(MaskInfo const& m) {
  detail::trace_property("q_attention_mask");
  IntTensor ids = q_segment_ids(m);
  for (auto& v : ids.data()) v = v == -1 ? 0 : 1;
  return ids;
}

/// get_qkv_masks: rebuilt from the ids (S5: any stored causal/window/chunk/head content is ignored).
[[nodiscard]] inline QkvMasks get_qkv_masks(MaskInfo const& m, DType dtype = DType::bool_) {
  detail::trace("MaskInfo", "get_qkv_masks");
  auto const ids = get_or_compute_segment_ids(m);
  return segment_ids_to_qkv_masks(ids.q, ids.kv, dtype);
}

/// create_bias: 0 where attending, finfo(dtype).min elsewhere (not -inf), mask-shaped.
[[nodiscard]] inline Array create_bias(MaskInfo const& m, DType dtype = DType::float32) {
  detail::trace("MaskInfo", "create_bias");
  float const lo = lowest_finite(dtype);
  BoolTensor const mk = get_or_compute_attention_mask(m, DType::bool_).to_bool();
  FloatTensor out(mk.shape());
  for (std::size_t i = 0; i < mk.size(); ++i) out[i] = mk[i] ? 0.0f : lo;
  return Array(std::move(out), dtype);
}
[[nodiscard]] inline Array bias(MaskInfo const& m) {
  detail::trace_property("bias");
  return create_bias(m, DType::float32);
}

}  // namespace piecrust::maskinfo
