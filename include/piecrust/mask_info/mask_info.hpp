#pragma once
// piecrust::MaskInfo: the data of ejKernel's MaskInfo (ejkernel.types.mask), an attention pattern held as
// any of: the 4-D mask [batch][heads|1][q_len][kv_len] (True = may attend), q/kv segment ids,
// cu_seqlens, q/kv positions; plus the four baked-in flags and the mesh-axis names.
//
// This header is the data class only: its fields, the rank invariants its constructor checks, and
// accessors that read what is stored. Everything that computes is a free function in
// piecrust::maskinfo, one concept per header (the umbrella piecrust/mask_info.hpp includes them all;
// docs/maskinfo.md lists them): factories.hpp, representations.hpp (the lazy getters), summaries.hpp,
// replace.hpp, materialize.hpp, transforms.hpp, visualize.hpp, sharding.hpp.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/axis_name.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/options.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

namespace piecrust {

namespace maskinfo {

/// The four baked-in flags, in upstream's key order.
struct BakedInMasks {
  bool causal = false;
  bool sliding_window = false;
  bool chunked = false;
  bool token_type_ids = false;
  friend bool operator==(BakedInMasks const&, BakedInMasks const&) = default;
};

/// (batch_size, q_len, kv_len); each may be unknown.
struct MaskShape {
  std::optional<std::int64_t> batch_size{};
  std::optional<std::int64_t> q_len{};
  std::optional<std::int64_t> kv_len{};
  friend bool operator==(MaskShape const&, MaskShape const&) = default;
};

}  // namespace maskinfo

class MaskInfo {
 public:
  /// The dataclass fields, under upstream's names (without the leading underscore).
  struct Fields {
    std::optional<maskinfo::Array> attention_mask{};     // _attention_mask  [batch][heads|1][q_len][kv_len] or
                                                         //                  [batch][q_len][kv_len], any dtype
    std::optional<maskinfo::IntTensor> q_segment_ids{};  // _q_segment_ids   [batch][q_len] or [batch][heads][q_len]
    std::optional<maskinfo::IntTensor> kv_segment_ids{}; // _kv_segment_ids  [batch][kv_len] or [batch][heads][kv_len]
    std::optional<maskinfo::IntTensor> cu_seqlens_q{};   // _cu_seqlens_q    F1 [2*batch] or F2 [max_segments+1]
    std::optional<maskinfo::IntTensor> cu_seqlens_kv{};  // _cu_seqlens_kv
    std::optional<maskinfo::IntTensor> q_positions{};    // [batch][q_len]
    std::optional<maskinfo::IntTensor> kv_positions{};   // [batch][kv_len]
    bool causal_mask_baked_in = false;
    bool sliding_window_baked_in = false;
    bool chunked_mask_baked_in = false;
    bool token_type_ids_baked_in = false;
    maskinfo::AxisName batch_axis_name = maskinfo::AxisName::of_tuple({"dp", "fsdp"});
    maskinfo::AxisName qheads_axis_name = maskinfo::AxisName("tp");
    maskinfo::AxisName kvheads_axis_name = maskinfo::AxisName("tp");
    maskinfo::AxisName sequence_axis_name = maskinfo::AxisName("sp");

    void set_axes(maskinfo::AxisNames const& a) {
      batch_axis_name = a.batch_axis_name;
      qheads_axis_name = a.qheads_axis_name;
      kvheads_axis_name = a.kvheads_axis_name;
      sequence_axis_name = a.sequence_axis_name;
    }
  };

  /// The empty MaskInfo (upstream's MaskInfo()): nothing stored, every lazy getter raises.
  MaskInfo() = default;

  /// Direct construction from the dataclass fields (upstream's MaskInfo(_attention_mask=..., ...)).
  /// Throws InvalidArgument naming the field and its shape when a present field has a rank that no
  /// MaskInfo function reads as upstream means it: a mask that is not 3-D or 4-D (a 2-D padding mask
  /// goes through from_attention_mask), ids that are not 2-D or 3-D (per head), positions that are not
  /// 2-D, cu_seqlens that are not 1-D. Everything the getters compute from valid fields is valid again
  /// (3-D/4-D masks give 2-D/3-D pattern ids). Fields are not checked against each other: upstream keeps
  /// stale ids and positions after some transforms (spec §7.5, §9.E), and so does piecrust.
  explicit MaskInfo(Fields f) : f_(std::move(f)) {
    if (f_.attention_mask) check_mask(*f_.attention_mask);
    if (f_.q_segment_ids) check_ids(*f_.q_segment_ids, "q_segment_ids");
    if (f_.kv_segment_ids) check_ids(*f_.kv_segment_ids, "kv_segment_ids");
    if (f_.cu_seqlens_q) check_rank(*f_.cu_seqlens_q, 1, "cu_seqlens_q");
    if (f_.cu_seqlens_kv) check_rank(*f_.cu_seqlens_kv, 1, "cu_seqlens_kv");
    if (f_.q_positions) check_rank(*f_.q_positions, 2, "q_positions");
    if (f_.kv_positions) check_rank(*f_.kv_positions, 2, "kv_positions");
  }

  /// The fields as they are now (caches included).
  [[nodiscard]] Fields const& fields() const { return f_; }

  // ---------------------------------------------------------------- shape of what is stored

  /// batch_size: q ids' batch, else the mask's, else cu length - 1 (F3 arithmetic, wrong for F1: S2).
  [[nodiscard]] std::optional<std::int64_t> batch_size() const {
    maskinfo::detail::trace_property("batch_size");
    if (f_.q_segment_ids) return f_.q_segment_ids->dim(0);
    if (f_.attention_mask) return f_.attention_mask->dim(0);
    if (f_.cu_seqlens_q) return f_.cu_seqlens_q->dim(0) - 1;
    if (f_.cu_seqlens_kv) return f_.cu_seqlens_kv->dim(0) - 1;
    return std::nullopt;
  }
  [[nodiscard]] std::optional<std::int64_t> q_len() const {
    maskinfo::detail::trace_property("q_len");
    if (f_.q_segment_ids) return f_.q_segment_ids->shape().back();
    if (f_.attention_mask) return f_.attention_mask->shape()[f_.attention_mask->rank() - 2];
    return std::nullopt;
  }
  [[nodiscard]] std::optional<std::int64_t> kv_len() const {
    maskinfo::detail::trace_property("kv_len");
    if (f_.kv_segment_ids) return f_.kv_segment_ids->shape().back();
    if (f_.attention_mask) return f_.attention_mask->shape().back();
    return std::nullopt;
  }
  [[nodiscard]] maskinfo::MaskShape shape() const { return {batch_size(), q_len(), kv_len()}; }

  [[nodiscard]] maskinfo::BakedInMasks baked_in_masks() const {
    return {f_.causal_mask_baked_in, f_.sliding_window_baked_in, f_.chunked_mask_baked_in, f_.token_type_ids_baked_in};
  }

  // ---------------------------------------------------------------- caches

  // Upstream's lazy getters write what they compute into the object they read (spec §4.1 and §9.E; the
  // conformance vectors observe it, e.g. to_dtype(bool) caching the mask). The free getters in
  // representations.hpp do the same through these, which is why they are const: a const MaskInfo
  // caches too. Each checks the same rank invariant as the constructor.
  void cache_attention_mask(maskinfo::Array mask) const {
    check_mask(mask);
    f_.attention_mask = std::move(mask);
  }
  void cache_segment_ids(maskinfo::IntTensor q, maskinfo::IntTensor kv) const {
    check_ids(q, "q_segment_ids");
    check_ids(kv, "kv_segment_ids");
    f_.q_segment_ids = std::move(q);
    f_.kv_segment_ids = std::move(kv);
  }
  void cache_cu_seqlens(maskinfo::IntTensor q, maskinfo::IntTensor kv) const {
    check_rank(q, 1, "cu_seqlens_q");
    check_rank(kv, 1, "cu_seqlens_kv");
    f_.cu_seqlens_q = std::move(q);
    f_.cu_seqlens_kv = std::move(kv);
  }
  void cache_q_positions(maskinfo::IntTensor q) const {
    check_rank(q, 2, "q_positions");
    f_.q_positions = std::move(q);
  }
  void cache_kv_positions(maskinfo::IntTensor kv) const {
    check_rank(kv, 2, "kv_positions");
    f_.kv_positions = std::move(kv);
  }

 private:
  template <class A>
  static void check_rank(A const& a, std::size_t rank, char const* field) {
    if (a.rank() != rank) {
      piecrust::detail::fail<InvalidArgument>("MaskInfo: ", field, " must be ", rank, "-D, got shape ",
                                              maskinfo::shape_repr(a.shape()));
    }
  }
  static void check_ids(maskinfo::IntTensor const& ids, char const* field) {
    if (ids.rank() != 2 && ids.rank() != 3) {
      piecrust::detail::fail<InvalidArgument>("MaskInfo: ", field, " must be 2-D (batch, seq) or 3-D (batch, heads, seq), "
                                              "got shape ", maskinfo::shape_repr(ids.shape()));
    }
  }
  static void check_mask(maskinfo::Array const& mask) {
    if (mask.rank() != 3 && mask.rank() != 4) {
      piecrust::detail::fail<InvalidArgument>("MaskInfo: attention_mask must be 3-D (batch, q_len, kv_len) or 4-D (batch, heads, "
                                              "q_len, kv_len), got shape ", maskinfo::shape_repr(mask.shape()));
    }
  }

  mutable Fields f_;
};

}  // namespace piecrust
