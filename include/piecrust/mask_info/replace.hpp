#pragma once
// replace: upstream's dataclasses.replace on a MaskInfo, with its rule that a new representation
// (mask or ids) given without cu_seqlens clears the stored cu_seqlens. Every transform returns its new
// object through it.

#include "piecrust/mask_info/axis_name.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <optional>
#include <utility>

namespace piecrust::maskinfo {

/// replace(): the named arguments (nullopt = keep; a named argument cannot clear a field), then the
/// `**kw` field assignments (`field_*`: the outer optional says "given", the inner may be None).
struct Replace {
  std::optional<Array> attention_mask{};
  std::optional<IntTensor> q_segment_ids{};
  std::optional<IntTensor> kv_segment_ids{};
  std::optional<IntTensor> cu_seqlens_q{};
  std::optional<IntTensor> cu_seqlens_kv{};
  std::optional<std::optional<Array>> field_attention_mask{};
  std::optional<std::optional<IntTensor>> field_q_segment_ids{};
  std::optional<std::optional<IntTensor>> field_kv_segment_ids{};
  std::optional<std::optional<IntTensor>> field_cu_seqlens_q{};
  std::optional<std::optional<IntTensor>> field_cu_seqlens_kv{};
  std::optional<std::optional<IntTensor>> q_positions{};
  std::optional<std::optional<IntTensor>> kv_positions{};
  std::optional<bool> causal_mask_baked_in{};
  std::optional<bool> sliding_window_baked_in{};
  std::optional<bool> chunked_mask_baked_in{};
  std::optional<bool> token_type_ids_baked_in{};
  std::optional<AxisName> batch_axis_name{};
  std::optional<AxisName> qheads_axis_name{};
  std::optional<AxisName> kvheads_axis_name{};
  std::optional<AxisName> sequence_axis_name{};
};

/// replace: named arguments replace fields; if any of mask / q ids / kv ids is given and no cu argument
/// is, both cu fields are cleared; then the field assignments apply. Ids are never invalidated.
[[nodiscard]] inline MaskInfo replace(MaskInfo const& m, Replace r) {
  MaskInfo::Fields f = m.fields();
  bool const rep_changed = r.attention_mask || r.q_segment_ids || r.kv_segment_ids;
  if (r.attention_mask) f.attention_mask = std::move(r.attention_mask);
  if (r.q_segment_ids) f.q_segment_ids = std::move(r.q_segment_ids);
  if (r.kv_segment_ids) f.kv_segment_ids = std::move(r.kv_segment_ids);
  if (r.cu_seqlens_q) f.cu_seqlens_q = std::move(r.cu_seqlens_q);
  if (r.cu_seqlens_kv) f.cu_seqlens_kv = std::move(r.cu_seqlens_kv);
  if (rep_changed && !r.cu_seqlens_q && !r.cu_seqlens_kv) {
    f.cu_seqlens_q.reset();
    f.cu_seqlens_kv.reset();
  }
  if (r.field_attention_mask) f.attention_mask = std::move(*r.field_attention_mask);
  if (r.field_q_segment_ids) f.q_segment_ids = std::move(*r.field_q_segment_ids);
  if (r.field_kv_segment_ids) f.kv_segment_ids = std::move(*r.field_kv_segment_ids);
  if (r.field_cu_seqlens_q) f.cu_seqlens_q = std::move(*r.field_cu_seqlens_q);
  if (r.field_cu_seqlens_kv) f.cu_seqlens_kv = std::move(*r.field_cu_seqlens_kv);
  if (r.q_positions) f.q_positions = std::move(*r.q_positions);
  if (r.kv_positions) f.kv_positions = std::move(*r.kv_positions);
  if (r.causal_mask_baked_in) f.causal_mask_baked_in = *r.causal_mask_baked_in;
  if (r.sliding_window_baked_in) f.sliding_window_baked_in = *r.sliding_window_baked_in;
  if (r.chunked_mask_baked_in) f.chunked_mask_baked_in = *r.chunked_mask_baked_in;
  if (r.token_type_ids_baked_in) f.token_type_ids_baked_in = *r.token_type_ids_baked_in;
  if (r.batch_axis_name) f.batch_axis_name = std::move(*r.batch_axis_name);
  if (r.qheads_axis_name) f.qheads_axis_name = std::move(*r.qheads_axis_name);
  if (r.kvheads_axis_name) f.kvheads_axis_name = std::move(*r.kvheads_axis_name);
  if (r.sequence_axis_name) f.sequence_axis_name = std::move(*r.sequence_axis_name);
  return MaskInfo(std::move(f));
}

}  // namespace piecrust::maskinfo
