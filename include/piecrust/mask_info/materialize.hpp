#pragma once
// New MaskInfo objects with one representation made explicit: to_dtype, materialize_attention_mask,
// materialize_segment_ids. Where upstream returns `self`, these return a copy with identical state
// (docs/maskinfo.md, "Deliberate differences").

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/dtype.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/replace.hpp"
#include "piecrust/mask_info/representations.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <utility>

namespace piecrust::maskinfo {

/// to_dtype: caches the bool mask if lazy; bool returns (a copy of) the object unchanged even when the
/// stored mask is float (S8); otherwise a new object with the bool mask cast (cu cleared).
[[nodiscard]] inline MaskInfo to_dtype(MaskInfo const& m, DType dtype) {
  detail::trace("MaskInfo", "to_dtype");
  Array const mask = get_or_compute_attention_mask(m, DType::bool_);
  if (dtype == DType::bool_) return m;
  Replace r;
  r.attention_mask = mask.astype(dtype);
  return replace(m, std::move(r));
}

[[nodiscard]] inline MaskInfo materialize_attention_mask(MaskInfo const& m, DType dtype = DType::bool_) {
  detail::trace("MaskInfo", "materialize_attention_mask");
  auto const& f = m.fields();
  Replace r;
  if (f.attention_mask) {
    if (f.attention_mask->dtype() == dtype) return m;
    r.attention_mask = f.attention_mask->astype(dtype);
  } else if (f.q_segment_ids && f.kv_segment_ids) {
    r.attention_mask = segment_ids_to_mask(*f.q_segment_ids, *f.kv_segment_ids, dtype);
  } else {
    piecrust::detail::fail<InvalidState>("Cannot materialize attention_mask: no source data available");
  }
  return replace(m, std::move(r));
}

[[nodiscard]] inline MaskInfo materialize_segment_ids(MaskInfo const& m, bool per_head = false) {
  detail::trace("MaskInfo", "materialize_segment_ids");
  auto const& f = m.fields();
  if (f.q_segment_ids && f.kv_segment_ids) return m;
  if (!f.attention_mask) {
    piecrust::detail::fail<InvalidState>("Cannot materialize segment IDs: no attention_mask available");
  }
  auto ids = mask_to_segment_ids(*f.attention_mask, per_head);
  Replace r;
  r.q_segment_ids = std::move(ids.q);
  r.kv_segment_ids = std::move(ids.kv);
  return replace(m, std::move(r));
}

}  // namespace piecrust::maskinfo
