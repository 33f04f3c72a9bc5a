#pragma once
// Summaries of a MaskInfo under upstream's names: lengths by segment (q_lens / kv_lens, whose shape
// depends on the data, S6), the multi-sequence and self-attention predicates (S7) and __repr__. They
// read the stored fields and never fill a cache. The typed, per-row alternatives are in typed.hpp.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/detail/slicing.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace piecrust {

namespace maskinfo {

namespace detail {
/// q_lens / kv_lens of stored ids: counts of each id 0..max over the flattened batch when max > 0,
/// else per-row counts of id >= 0.
inline IntTensor lens_of(IntTensor const& ids, char const* what) {
  IntTensor const two_d = head0(ids);
  if (two_d.empty()) piecrust::detail::fail<InvalidArgument>(what, ": the segment ids are empty");
  std::int32_t const mx = *std::max_element(two_d.data().begin(), two_d.data().end());
  if (mx > 0) {
    IntTensor out(Shape{static_cast<std::int64_t>(mx) + 1});  // [max_id + 1]
    for (auto const v : two_d.data()) {
      if (v >= 0) ++out[static_cast<std::size_t>(v)];
    }
    return out;
  }
  std::int64_t const b = two_d.rank() >= 1 ? two_d.dim(0) : 1;
  std::int64_t const s = static_cast<std::int64_t>(two_d.size()) / std::max<std::int64_t>(b, 1);
  IntTensor out(Shape{b});  // [batch]
  for (std::int64_t bb = 0; bb < b; ++bb)
    for (std::int64_t i = 0; i < s; ++i) out[static_cast<std::size_t>(bb)] += two_d[static_cast<std::size_t>(bb * s + i)] >= 0;
  return out;
}
}  // namespace detail

/// q_lens (S6): None without stored q ids; if the max id > 0, counts of each id 0..max over the
/// flattened batch, else per-row counts of id >= 0. The result's shape depends on the data.
[[nodiscard]] inline std::optional<IntTensor> q_lens(MaskInfo const& m) {
  detail::trace_property("q_lens");
  auto const& f = m.fields();
  return f.q_segment_ids ? std::optional<IntTensor>(detail::lens_of(*f.q_segment_ids, "q_lens")) : std::nullopt;
}
[[nodiscard]] inline std::optional<IntTensor> kv_lens(MaskInfo const& m) {
  detail::trace_property("kv_lens");
  auto const& f = m.fields();
  return f.kv_segment_ids ? std::optional<IntTensor>(detail::lens_of(*f.kv_segment_ids, "kv_lens")) : std::nullopt;
}

/// is_multi_sequence (S7): max id (q ids, else kv ids; head 0 of 3D ids) > 0.
[[nodiscard]] inline bool is_multi_sequence(MaskInfo const& m) {
  detail::trace_property("is_multi_sequence");
  auto const& f = m.fields();
  auto const* ids = f.q_segment_ids ? &*f.q_segment_ids : (f.kv_segment_ids ? &*f.kv_segment_ids : nullptr);
  if (!ids) return false;
  IntTensor const two_d = detail::head0(*ids);
  if (two_d.empty()) piecrust::detail::fail<InvalidArgument>("is_multi_sequence: the segment ids are empty");
  return *std::max_element(two_d.data().begin(), two_d.data().end()) > 0;
}

/// is_self_attention: equal ids (shape and values); else a square stored mask; else equal cu arrays.
[[nodiscard]] inline bool is_self_attention(MaskInfo const& m) {
  detail::trace("MaskInfo", "is_self_attention");
  auto const& f = m.fields();
  if (f.q_segment_ids && f.kv_segment_ids) return *f.q_segment_ids == *f.kv_segment_ids;
  if (f.attention_mask) {
    auto const& s = f.attention_mask->shape();
    return s.size() >= 2 && s[s.size() - 2] == s[s.size() - 1];
  }
  if (f.cu_seqlens_q && f.cu_seqlens_kv) return *f.cu_seqlens_q == *f.cu_seqlens_kv;
  return false;
}

/// __repr__, byte for byte.
[[nodiscard]] inline std::string repr(MaskInfo const& m) {
  auto const& f = m.fields();
  std::vector<std::string> items;
  if (f.attention_mask) items.push_back("attention_mask.shape=" + shape_repr(f.attention_mask->shape()));
  if (f.q_segment_ids) items.push_back("q_segment_ids.shape=" + shape_repr(f.q_segment_ids->shape()));
  if (f.kv_segment_ids) items.push_back("kv_segment_ids.shape=" + shape_repr(f.kv_segment_ids->shape()));
  if (f.cu_seqlens_q) items.push_back("cu_seqlens_q.shape=" + shape_repr(f.cu_seqlens_q->shape()));
  if (f.cu_seqlens_kv) items.push_back("cu_seqlens_kv.shape=" + shape_repr(f.cu_seqlens_kv->shape()));
  items.push_back(std::string("self_attn=") + (is_self_attention(m) ? "True" : "False"));
  std::vector<char const*> baked;
  if (f.causal_mask_baked_in) baked.push_back("causal");
  if (f.sliding_window_baked_in) baked.push_back("sliding_window");
  if (f.chunked_mask_baked_in) baked.push_back("chunked");
  if (f.token_type_ids_baked_in) baked.push_back("token_type_ids");
  if (!baked.empty()) {
    std::string s = "baked_in=[";
    for (std::size_t i = 0; i < baked.size(); ++i) s += std::string(i ? ", " : "") + "'" + baked[i] + "'";
    items.push_back(s + "]");
  }
  std::string out = "MaskInfo(";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + ")";
}

}  // namespace maskinfo

/// Streams maskinfo::repr(m) (found by argument-dependent lookup on MaskInfo).
inline std::ostream& operator<<(std::ostream& os, MaskInfo const& m) { return os << maskinfo::repr(m); }

}  // namespace piecrust
