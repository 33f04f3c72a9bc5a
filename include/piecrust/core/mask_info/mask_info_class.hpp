#pragma once
// piecrust::MaskInfo: ejKernel's MaskInfo (ejkernel.types.mask), one object holding an attention
// pattern that converts lazily between representations: the 4-D mask [batch][heads|1][q_len][kv_len]
// (True = may attend), q/kv segment ids, cu_seqlens, q/kv positions.
//
// Upstream names keep upstream behaviour exactly, quirks included (spec S1-S11, docs/maskinfo.md):
// lazy getters cache into the object (the caches are `mutable`, so a const MaskInfo still caches), the
// transforms return new objects and clear cu_seqlens, positional rules use top-left indices.
// The typed alternatives live in mask_info/typed.hpp; conversions to piecrust's own types in
// mask_info/piecrust_types.hpp.

#include "piecrust/core/error.hpp"
#include "piecrust/core/mask_info/conversions.hpp"
#include "piecrust/core/mask_info/debug.hpp"
#include "piecrust/core/mask_info/dtype.hpp"
#include "piecrust/core/mask_info/options.hpp"
#include "piecrust/core/mask_info/sharding.hpp"
#include "piecrust/core/mask_info/tensor.hpp"
#include "piecrust/core/mask_info/visualize.hpp"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace piecrust {

namespace maskinfo {
struct DynamicInitArgs;

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

namespace detail {
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
}  // namespace detail
}  // namespace maskinfo

class MaskInfo {
 public:
  using Array = maskinfo::Array;
  using BoolTensor = maskinfo::BoolTensor;
  using IntTensor = maskinfo::IntTensor;
  using DType = maskinfo::DType;
  using AxisName = maskinfo::AxisName;

  /// The dataclass fields, under upstream's names (without the leading underscore).
  struct Fields {
    std::optional<Array> attention_mask{};     // _attention_mask  [batch][heads|1][q_len][kv_len], any dtype
    std::optional<IntTensor> q_segment_ids{};  // _q_segment_ids   [batch][q_len] or [batch][heads][q_len]
    std::optional<IntTensor> kv_segment_ids{}; // _kv_segment_ids  [batch][kv_len] or [batch][heads][kv_len]
    std::optional<IntTensor> cu_seqlens_q{};   // _cu_seqlens_q    F1 [2*batch] or F2 [max_segments+1]
    std::optional<IntTensor> cu_seqlens_kv{};  // _cu_seqlens_kv
    std::optional<IntTensor> q_positions{};    // [batch][q_len]
    std::optional<IntTensor> kv_positions{};   // [batch][kv_len]
    bool causal_mask_baked_in = false;
    bool sliding_window_baked_in = false;
    bool chunked_mask_baked_in = false;
    bool token_type_ids_baked_in = false;
    AxisName batch_axis_name = AxisName::of_tuple({"dp", "fsdp"});
    AxisName qheads_axis_name = AxisName("tp");
    AxisName kvheads_axis_name = AxisName("tp");
    AxisName sequence_axis_name = AxisName("sp");

    void set_axes(maskinfo::AxisNames const& a) {
      batch_axis_name = a.batch_axis_name;
      qheads_axis_name = a.qheads_axis_name;
      kvheads_axis_name = a.kvheads_axis_name;
      sequence_axis_name = a.sequence_axis_name;
    }
  };

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

  using SegmentsOptions = maskinfo::SegmentsOptions;
  using AttentionMaskOptions = maskinfo::AttentionMaskOptions;
  using CuSeqlensOptions = maskinfo::CuSeqlensOptions;
  using RandomOptions = maskinfo::RandomOptions;

  MaskInfo() = default;
  /// Direct construction from the dataclass fields (upstream's MaskInfo(_attention_mask=..., ...)).
  explicit MaskInfo(Fields f) : f_(std::move(f)) {}

  /// The fields as they are now (caches included).
  [[nodiscard]] Fields const& fields() const { return f_; }

  // ---------------------------------------------------------------- factories

  /// from_segments: ids as given (int32), kv defaults to q; the mask stays lazy. With is_attn_mask the
  /// inputs are padding masks: mask = outer product of (q != 0, kv != 0), ids become 0 / -1.
  static MaskInfo from_segments(IntTensor q_segment_ids, std::optional<IntTensor> kv_segment_ids = std::nullopt,
                                SegmentsOptions opts = {}) {
    maskinfo::detail::trace("type", "from_segments");
    maskinfo::detail::require_rank(q_segment_ids.shape(), q_segment_ids.rank() == 3 ? 3 : 2, "from_segments: q_segment_ids");
    IntTensor kv = kv_segment_ids ? std::move(*kv_segment_ids) : q_segment_ids;
    Fields f;
    if (opts.is_attn_mask) {
      maskinfo::detail::require_rank(q_segment_ids.shape(), 2, "from_segments(is_attn_mask): q_segment_ids");
      maskinfo::detail::require_rank(kv.shape(), 2, "from_segments(is_attn_mask): kv_segment_ids");
      IntTensor qv(q_segment_ids.shape()), kvv(kv.shape());
      for (std::size_t i = 0; i < qv.size(); ++i) qv[i] = q_segment_ids[i] != 0 ? 0 : -1;
      for (std::size_t i = 0; i < kvv.size(); ++i) kvv[i] = kv[i] != 0 ? 0 : -1;
      f.attention_mask = maskinfo::segment_ids_to_mask(qv, kvv);  // valid & valid (ids are 0 or -1)
      f.q_segment_ids = std::move(qv);
      f.kv_segment_ids = std::move(kvv);
    } else {
      f.q_segment_ids = std::move(q_segment_ids);
      f.kv_segment_ids = std::move(kv);
    }
    f.q_positions = std::move(opts.q_positions);
    f.kv_positions = std::move(opts.kv_positions);
    f.set_axes(opts.axes);
    return MaskInfo(std::move(f));
  }

  /// from_attention_mask: value != 0 is True (inverted when !mask_is_valid). 2D input is a (B,S)
  /// padding mask (stored as the (B,1,S,S) outer product); 3D gains a head axis; 4D is kept. Ids are
  /// padding-style 0 / -1 (any True in any head), not segments (S4).
  static MaskInfo from_attention_mask(Array const& attention_mask, AttentionMaskOptions opts = {}) {
    maskinfo::detail::trace("type", "from_attention_mask");
    BoolTensor m = attention_mask.to_bool();
    if (!opts.mask_is_valid) {
      for (auto& v : m.data()) v = v ? 0 : 1;
    }
    Fields f;
    f.q_positions = std::move(opts.q_positions);
    f.kv_positions = std::move(opts.kv_positions);
    f.set_axes(opts.axes);
    if (m.rank() == 2) {
      IntTensor ids(m.shape());
      for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = m[i] ? 0 : -1;
      f.attention_mask = maskinfo::segment_ids_to_mask(ids, ids);
      f.q_segment_ids = ids;
      f.kv_segment_ids = std::move(ids);
      return MaskInfo(std::move(f));
    }
    if (m.rank() == 3) {
      m = m.reshaped(maskinfo::Shape{m.dim(0), 1, m.dim(1), m.dim(2)});
    } else if (m.rank() != 4) {
      piecrust::detail::fail<InvalidArgument>(
          "from_attention_mask: attention_mask must be 2D (batch,seq), 3D (batch,Q,K) or 4D (batch,heads,Q,K), got ",
          m.rank(), "D shape ", maskinfo::shape_repr(m.shape()));
    }
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    IntTensor qi(maskinfo::Shape{b, q}, -1), ki(maskinfo::Shape{b, k}, -1);  // [batch][q_len], [batch][kv_len]
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t hh = 0; hh < h; ++hh) {
        for (std::int64_t i = 0; i < q; ++i) {
          for (std::int64_t j = 0; j < k; ++j) {
            if (m.at(bb, hh, i, j)) {
              qi.at(bb, i) = 0;
              ki.at(bb, j) = 0;
            }
          }
        }
      }
    }
    f.attention_mask = std::move(m);
    f.q_segment_ids = std::move(qi);
    f.kv_segment_ids = std::move(ki);
    return MaskInfo(std::move(f));
  }

  /// from_cu_seqlens: F1 start/end pairs (NOT FlashAttention B+1 offsets, S2); ids are 0 inside each
  /// row's span and -1 outside; the cu arrays are stored as given; the mask stays lazy.
  static MaskInfo from_cu_seqlens(IntTensor const& cu_seqlens_q, std::int64_t max_q_len, CuSeqlensOptions opts = {}) {
    maskinfo::detail::trace("type", "from_cu_seqlens");
    IntTensor const cu_kv = opts.cu_seqlens_kv ? *opts.cu_seqlens_kv : cu_seqlens_q;
    auto const masks = maskinfo::qkv_cu_seqlens_to_qkv_masks(cu_seqlens_q, max_q_len, cu_kv, opts.max_kv_len);
    Fields f;
    f.q_segment_ids = padding_ids(masks.q.bools());
    f.kv_segment_ids = padding_ids(masks.kv.bools());
    f.cu_seqlens_q = cu_seqlens_q;
    f.cu_seqlens_kv = cu_kv;
    f.q_positions = std::move(opts.q_positions);
    f.kv_positions = std::move(opts.kv_positions);
    f.set_axes(opts.axes);
    return MaskInfo(std::move(f));
  }

  /// from_random: a (B,1,Q,K) Bernoulli(1 - sparsity) mask. Deviation: the bits come from piecrust's
  /// own seeded generator (splitmix64), not JAX's threefry, so only sparsity 0 and 1 match upstream bits.
  static MaskInfo from_random(std::int64_t batch_size, std::int64_t q_len, RandomOptions opts = {}) {
    maskinfo::detail::trace("type", "from_random");
    std::int64_t const kv_len = opts.kv_len.value_or(q_len);
    if (!(opts.sparsity >= 0.0 && opts.sparsity <= 1.0)) {
      piecrust::detail::fail<InvalidArgument>("from_random: sparsity = ", opts.sparsity, " must be in [0.0, 1.0]");
    }
    if (batch_size < 0 || q_len < 0 || kv_len < 0) {
      piecrust::detail::fail<InvalidArgument>("from_random: batch_size = ", batch_size, ", q_len = ", q_len,
                                              ", kv_len = ", kv_len, " must be >= 0");
    }
    BoolTensor m(maskinfo::Shape{batch_size, 1, q_len, kv_len});  // [batch][1][q_len][kv_len]
    double const p = 1.0 - opts.sparsity;
    std::uint64_t state = opts.seed;
    for (auto& v : m.data()) {
      state += 0x9e3779b97f4a7c15ull;  // splitmix64
      std::uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      double const u = static_cast<double>(z >> 11) * 0x1.0p-53;  // [0, 1)
      v = u < p ? 1 : 0;
    }
    Fields f;
    f.attention_mask = std::move(m);
    f.q_positions = std::move(opts.q_positions);
    f.kv_positions = std::move(opts.kv_positions);
    f.set_axes(opts.axes);
    return MaskInfo(std::move(f));
  }

  /// dynamic_init (defined after DynamicInitArgs below).
  static MaskInfo dynamic_init(maskinfo::DynamicInitArgs const& args);

  // ---------------------------------------------------------------- getters (lazy, caching)

  /// The attention_mask property: the stored mask in its stored dtype, else computed (bool) and cached.
  [[nodiscard]] Array attention_mask() const {
    maskinfo::detail::trace_property("attention_mask");
    if (f_.attention_mask) return *f_.attention_mask;
    return get_or_compute_attention_mask(DType::bool_);
  }

  /// The stored mask cast to dtype (not cached), else built from the ids and cached **in that dtype**.
  [[nodiscard]] Array get_or_compute_attention_mask(DType dtype = DType::bool_) const {
    maskinfo::detail::trace("MaskInfo", "get_or_compute_attention_mask");
    if (f_.attention_mask) return f_.attention_mask->astype(dtype);
    if (f_.q_segment_ids && f_.kv_segment_ids) {
      f_.attention_mask = maskinfo::segment_ids_to_mask(*f_.q_segment_ids, *f_.kv_segment_ids, dtype);
      return *f_.attention_mask;
    }
    piecrust::detail::fail<InvalidState>(
        "Cannot compute attention mask: MaskInfo is empty (both attention_mask and segment_ids are None)");
  }

  /// The stored ids, else pattern ids from the mask (mask_to_segment_ids; both sides overwritten), cached.
  maskinfo::QkvPair<IntTensor> get_or_compute_segment_ids(bool per_head = false) const {
    maskinfo::detail::trace("MaskInfo", "get_or_compute_segment_ids");
    if (f_.q_segment_ids && f_.kv_segment_ids) return {*f_.q_segment_ids, *f_.kv_segment_ids};
    if (f_.attention_mask) {
      auto ids = maskinfo::mask_to_segment_ids(*f_.attention_mask, per_head);
      f_.q_segment_ids = ids.q;
      f_.kv_segment_ids = ids.kv;
      return ids;
    }
    piecrust::detail::fail<InvalidState>(
        "Cannot compute segment IDs: MaskInfo is empty (both attention_mask and segment_ids are None)");
  }

  [[nodiscard]] IntTensor q_segment_ids() const {
    maskinfo::detail::trace_property("q_segment_ids");
    if (f_.q_segment_ids) return *f_.q_segment_ids;
    return get_or_compute_segment_ids().q;
  }
  [[nodiscard]] IntTensor kv_segment_ids() const {
    maskinfo::detail::trace_property("kv_segment_ids");
    if (f_.kv_segment_ids) return *f_.kv_segment_ids;
    return get_or_compute_segment_ids().kv;
  }

  /// get_or_compute_qkv_cu_seqlens: stored cu (F1 from from_cu_seqlens) > F2 from ids (length
  /// max_segments + 1, whole batch merged) > F1 from the mask. Cached (S2). out_dtype is int32.
  maskinfo::QkvPair<IntTensor> get_or_compute_qkv_cu_seqlens(std::int64_t max_segments = 128) const {
    maskinfo::detail::trace("MaskInfo", "get_or_compute_qkv_cu_seqlens");
    if (f_.cu_seqlens_q && f_.cu_seqlens_kv) return {*f_.cu_seqlens_q, *f_.cu_seqlens_kv};
    if (f_.cu_seqlens_q || f_.cu_seqlens_kv) {
      IntTensor const c = f_.cu_seqlens_q ? *f_.cu_seqlens_q : *f_.cu_seqlens_kv;
      f_.cu_seqlens_q = c;
      f_.cu_seqlens_kv = c;
      return {c, c};
    }
    if (f_.q_segment_ids && f_.kv_segment_ids) {
      f_.cu_seqlens_q = maskinfo::segment_ids_to_cu_seqlens(head0(*f_.q_segment_ids), max_segments);
      f_.cu_seqlens_kv = maskinfo::segment_ids_to_cu_seqlens(head0(*f_.kv_segment_ids), max_segments);
      return {*f_.cu_seqlens_q, *f_.cu_seqlens_kv};
    }
    if (!f_.attention_mask) {
      piecrust::detail::fail<InvalidState>(
          "Cannot compute cu_seqlens: MaskInfo is empty (both attention_mask and segment_ids are None)");
    }
    BoolTensor const m = mask4("get_or_compute_qkv_cu_seqlens");
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    BoolTensor qv(maskinfo::Shape{b, q}), kv(maskinfo::Shape{b, k});  // [batch][q_len], [batch][kv_len]
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t hh = 0; hh < h; ++hh) {
        for (std::int64_t i = 0; i < q; ++i) {
          for (std::int64_t j = 0; j < k; ++j) {
            if (m.at(bb, hh, i, j)) {
              qv.at(bb, i) = 1;
              kv.at(bb, j) = 1;
            }
          }
        }
      }
    }
    auto cu = maskinfo::qkv_masks_to_cu_seqlens(qv, Array(kv));
    f_.cu_seqlens_q = cu.q;
    f_.cu_seqlens_kv = cu.kv;
    return cu;
  }

  [[nodiscard]] IntTensor cu_seqlens_q() const {
    maskinfo::detail::trace_property("cu_seqlens_q");
    if (f_.cu_seqlens_q && f_.cu_seqlens_kv) return *f_.cu_seqlens_q;
    return get_or_compute_qkv_cu_seqlens().q;
  }
  [[nodiscard]] IntTensor cu_seqlens_kv() const {
    maskinfo::detail::trace_property("cu_seqlens_kv");
    if (f_.cu_seqlens_q && f_.cu_seqlens_kv) return *f_.cu_seqlens_kv;
    return get_or_compute_qkv_cu_seqlens().kv;
  }

  /// get_or_compute_positions: missing sides from the ids (q pad -1, kv pad int32 max), written into
  /// the object. Without ids and mask it returns what is stored (possibly nothing).
  maskinfo::QkvPair<std::optional<IntTensor>> get_or_compute_positions() const {
    maskinfo::detail::trace("MaskInfo", "get_or_compute_positions");
    bool const need_q = !f_.q_positions, need_kv = !f_.kv_positions;
    if (!need_q && !need_kv) return {f_.q_positions, f_.kv_positions};
    if (!f_.q_segment_ids || !f_.kv_segment_ids) {
      if (!f_.attention_mask) return {f_.q_positions, f_.kv_positions};
      (void)get_or_compute_segment_ids(false);
    }
    if (need_q && f_.q_segment_ids) f_.q_positions = maskinfo::positions_from_segments_2d(*f_.q_segment_ids, -1);
    if (need_kv && f_.kv_segment_ids) {
      f_.kv_positions =
          maskinfo::positions_from_segments_2d(*f_.kv_segment_ids, std::numeric_limits<std::int32_t>::max());
    }
    return {f_.q_positions, f_.kv_positions};
  }

  /// q_position_ids: positions of the (stored or pattern) q ids, pad -1; not cached.
  [[nodiscard]] IntTensor q_position_ids() const {
    maskinfo::detail::trace_property("q_position_ids");
    return maskinfo::positions_from_segments_2d(q_segment_ids(), -1);
  }

  /// q_attention_mask: int32 (B,Q), 0 where the q id is exactly -1, else 1 (so -2 counts as valid, S1).
  [[nodiscard]] IntTensor q_attention_mask() const {
    maskinfo::detail::trace_property("q_attention_mask");
    IntTensor ids = q_segment_ids();
    for (auto& v : ids.data()) v = v == -1 ? 0 : 1;
    return ids;
  }

  /// get_qkv_masks: rebuilt from the ids (S5: any stored causal/window/chunk/head content is ignored).
  [[nodiscard]] maskinfo::QkvMasks get_qkv_masks(DType dtype = DType::bool_) const {
    maskinfo::detail::trace("MaskInfo", "get_qkv_masks");
    auto const ids = get_or_compute_segment_ids();
    return maskinfo::segment_ids_to_qkv_masks(ids.q, ids.kv, dtype);
  }

  /// q_lens (S6): None without stored q ids; if the max id > 0, counts of each id 0..max over the
  /// flattened batch, else per-row counts of id >= 0. The result's shape depends on the data.
  [[nodiscard]] std::optional<IntTensor> q_lens() const {
    maskinfo::detail::trace_property("q_lens");
    return f_.q_segment_ids ? std::optional<IntTensor>(lens_of(*f_.q_segment_ids, "q_lens")) : std::nullopt;
  }
  [[nodiscard]] std::optional<IntTensor> kv_lens() const {
    maskinfo::detail::trace_property("kv_lens");
    return f_.kv_segment_ids ? std::optional<IntTensor>(lens_of(*f_.kv_segment_ids, "kv_lens")) : std::nullopt;
  }

  /// is_multi_sequence (S7): max id (q ids, else kv ids; head 0 of 3D ids) > 0.
  [[nodiscard]] bool is_multi_sequence() const {
    maskinfo::detail::trace_property("is_multi_sequence");
    auto const* ids = f_.q_segment_ids ? &*f_.q_segment_ids : (f_.kv_segment_ids ? &*f_.kv_segment_ids : nullptr);
    if (!ids) return false;
    IntTensor const two_d = head0(*ids);
    if (two_d.empty()) piecrust::detail::fail<InvalidArgument>("is_multi_sequence: the segment ids are empty");
    return *std::max_element(two_d.data().begin(), two_d.data().end()) > 0;
  }

  /// is_self_attention: equal ids (shape and values); else a square stored mask; else equal cu arrays.
  [[nodiscard]] bool is_self_attention() const {
    maskinfo::detail::trace("MaskInfo", "is_self_attention");
    if (f_.q_segment_ids && f_.kv_segment_ids) return *f_.q_segment_ids == *f_.kv_segment_ids;
    if (f_.attention_mask) {
      auto const& s = f_.attention_mask->shape();
      return s.size() >= 2 && s[s.size() - 2] == s[s.size() - 1];
    }
    if (f_.cu_seqlens_q && f_.cu_seqlens_kv) return *f_.cu_seqlens_q == *f_.cu_seqlens_kv;
    return false;
  }

  /// to_dtype: caches the bool mask if lazy; bool returns (a copy of) this object unchanged even when
  /// the stored mask is float (S8); otherwise a new object with the bool mask cast (cu cleared).
  [[nodiscard]] MaskInfo to_dtype(DType dtype) const {
    maskinfo::detail::trace("MaskInfo", "to_dtype");
    Array const m = get_or_compute_attention_mask(DType::bool_);
    if (dtype == DType::bool_) return *this;
    Replace r;
    r.attention_mask = m.astype(dtype);
    return replace(std::move(r));
  }

  [[nodiscard]] MaskInfo materialize_attention_mask(DType dtype = DType::bool_) const {
    maskinfo::detail::trace("MaskInfo", "materialize_attention_mask");
    Replace r;
    if (f_.attention_mask) {
      if (f_.attention_mask->dtype() == dtype) return *this;
      r.attention_mask = f_.attention_mask->astype(dtype);
    } else if (f_.q_segment_ids && f_.kv_segment_ids) {
      r.attention_mask = maskinfo::segment_ids_to_mask(*f_.q_segment_ids, *f_.kv_segment_ids, dtype);
    } else {
      piecrust::detail::fail<InvalidState>("Cannot materialize attention_mask: no source data available");
    }
    return replace(std::move(r));
  }

  [[nodiscard]] MaskInfo materialize_segment_ids(bool per_head = false) const {
    maskinfo::detail::trace("MaskInfo", "materialize_segment_ids");
    if (f_.q_segment_ids && f_.kv_segment_ids) return *this;
    if (!f_.attention_mask) {
      piecrust::detail::fail<InvalidState>("Cannot materialize segment IDs: no attention_mask available");
    }
    auto ids = maskinfo::mask_to_segment_ids(*f_.attention_mask, per_head);
    Replace r;
    r.q_segment_ids = std::move(ids.q);
    r.kv_segment_ids = std::move(ids.kv);
    return replace(std::move(r));
  }

  /// create_bias: 0 where attending, finfo(dtype).min elsewhere (not -inf), mask-shaped.
  [[nodiscard]] Array create_bias(DType dtype = DType::float32) const {
    maskinfo::detail::trace("MaskInfo", "create_bias");
    float const lo = maskinfo::lowest_finite(dtype);
    BoolTensor const m = get_or_compute_attention_mask(DType::bool_).to_bool();
    maskinfo::FloatTensor out(m.shape());
    for (std::size_t i = 0; i < m.size(); ++i) out[i] = m[i] ? 0.0f : lo;
    return Array(std::move(out), dtype);
  }
  [[nodiscard]] Array bias() const {
    maskinfo::detail::trace_property("bias");
    return create_bias(DType::float32);
  }

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
    if (f_.attention_mask && f_.attention_mask->rank() >= 2) return f_.attention_mask->shape()[f_.attention_mask->rank() - 2];
    return std::nullopt;
  }
  [[nodiscard]] std::optional<std::int64_t> kv_len() const {
    maskinfo::detail::trace_property("kv_len");
    if (f_.kv_segment_ids) return f_.kv_segment_ids->shape().back();
    if (f_.attention_mask && f_.attention_mask->rank() >= 1) return f_.attention_mask->shape().back();
    return std::nullopt;
  }
  [[nodiscard]] maskinfo::MaskShape shape() const { return {batch_size(), q_len(), kv_len()}; }

  [[nodiscard]] maskinfo::BakedInMasks baked_in_masks() const {
    return {f_.causal_mask_baked_in, f_.sliding_window_baked_in, f_.chunked_mask_baked_in, f_.token_type_ids_baked_in};
  }

  /// __repr__, byte for byte.
  [[nodiscard]] std::string repr() const {
    std::vector<std::string> items;
    if (f_.attention_mask) items.push_back("attention_mask.shape=" + maskinfo::shape_repr(f_.attention_mask->shape()));
    if (f_.q_segment_ids) items.push_back("q_segment_ids.shape=" + maskinfo::shape_repr(f_.q_segment_ids->shape()));
    if (f_.kv_segment_ids) items.push_back("kv_segment_ids.shape=" + maskinfo::shape_repr(f_.kv_segment_ids->shape()));
    if (f_.cu_seqlens_q) items.push_back("cu_seqlens_q.shape=" + maskinfo::shape_repr(f_.cu_seqlens_q->shape()));
    if (f_.cu_seqlens_kv) items.push_back("cu_seqlens_kv.shape=" + maskinfo::shape_repr(f_.cu_seqlens_kv->shape()));
    items.push_back(std::string("self_attn=") + (is_self_attention() ? "True" : "False"));
    std::vector<char const*> baked;
    if (f_.causal_mask_baked_in) baked.push_back("causal");
    if (f_.sliding_window_baked_in) baked.push_back("sliding_window");
    if (f_.chunked_mask_baked_in) baked.push_back("chunked");
    if (f_.token_type_ids_baked_in) baked.push_back("token_type_ids");
    if (!baked.empty()) {
      std::string s = "baked_in=[";
      for (std::size_t i = 0; i < baked.size(); ++i) s += std::string(i ? ", " : "") + "'" + baked[i] + "'";
      items.push_back(s + "]");
    }
    std::string out = "MaskInfo(";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
    return out + ")";
  }
  friend std::ostream& operator<<(std::ostream& os, MaskInfo const& m) { return os << m.repr(); }

  /// replace: named arguments replace fields; if any of mask / q ids / kv ids is given and no cu argument
  /// is, both cu fields are cleared; then the field assignments apply. Ids are never invalidated.
  [[nodiscard]] MaskInfo replace(Replace r) const {
    Fields f = f_;
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

  // ---------------------------------------------------------------- transforms

  /// apply_causal(offset): mask &= (j <= i + offset[b]), top-left aligned (S9: pass offset = K - Q for
  /// bottom-right alignment, or use maskinfo::apply_causal_aligned).
  [[nodiscard]] MaskInfo apply_causal(maskinfo::BatchInts const& offset = 0) const {
    maskinfo::detail::trace("MaskInfo", "apply_causal");
    require_dims("Cannot apply causal mask");
    BoolTensor m = mask4("apply_causal");
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    auto const off = offset.per_batch(b, "apply_causal: offset");
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t hh = 0; hh < h; ++hh) {
        for (std::int64_t i = 0; i < q; ++i) {
          std::uint8_t* row = &m.at(bb, hh, i, 0);
          for (std::int64_t j = std::max<std::int64_t>(0, i + off[static_cast<std::size_t>(bb)] + 1); j < k; ++j) row[j] = 0;
        }
      }
    }
    Replace r;
    r.attention_mask = std::move(m);
    r.causal_mask_baked_in = true;
    return replace(std::move(r));
  }

  /// apply_sliding_window(window, {offset, mode, index}): mask &= (row - left <= j <= row + right) with
  /// row = offset[b] + i. An int w is the symmetric, non-causal band +-w. "decode" keeps row index[b] and
  /// min(l + r + 1, K) columns; "prefill" keeps the last min(w, K) (int) or min(l + r + 1, K) columns;
  /// any other mode string is the default (S9).
  [[nodiscard]] MaskInfo apply_sliding_window(maskinfo::SlidingWindow const& window,
                                              maskinfo::SlidingWindowOptions const& opts = {}) const {
    maskinfo::detail::trace("MaskInfo", "apply_sliding_window");
    if (window.is_int && window.left < 0) {
      piecrust::detail::fail<InvalidArgument>("Invalid sliding_window: expected a non-negative integer, but got ",
                                              window.left);
    }
    if (!window.is_int && (window.left < 0 || window.right < 0)) {
      piecrust::detail::fail<InvalidArgument>("Invalid sliding_window: expected non-negative values, but got (",
                                              window.left, ", ", window.right, ")");
    }
    require_dims("Cannot apply sliding window");
    bool const decode = opts.mode && *opts.mode == "decode";
    bool const prefill = opts.mode && *opts.mode == "prefill";
    if (decode && !opts.index) {
      piecrust::detail::fail<InvalidArgument>("index parameter is required when mode='decode'");
    }
    BoolTensor m = mask4("apply_sliding_window");
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    std::int64_t const l = window.left, rr = window.right;
    auto const off = opts.offset.per_batch(b, "apply_sliding_window: offset");
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t hh = 0; hh < h; ++hh) {
        for (std::int64_t i = 0; i < q; ++i) {
          std::int64_t const row = off[static_cast<std::size_t>(bb)] + i;
          std::uint8_t* p = &m.at(bb, hh, i, 0);
          for (std::int64_t j = 0; j < k; ++j) {
            if (j < row - l || j > row + rr) p[j] = 0;
          }
        }
      }
    }
    Replace r;
    r.sliding_window_baked_in = true;
    if (decode) {
      std::int64_t const width = std::min(l + rr + 1, k);
      auto idx = opts.index->per_batch(b, "apply_sliding_window: index");
      std::vector<std::int64_t> start_k(static_cast<std::size_t>(b));
      for (std::size_t bb = 0; bb < idx.size(); ++bb) {
        idx[bb] = maskinfo::detail::clip(idx[bb], 0, q - 1);
        start_k[bb] = maskinfo::detail::clip(idx[bb] - l, 0, std::max<std::int64_t>(k - width, 0));
      }
      auto qsl = idx;
      for (auto& v : qsl) v = maskinfo::detail::dyn_start(v, 1, q, "apply_sliding_window(decode): q");
      BoolTensor sliced = maskinfo::detail::slice_axis(m, 2, qsl, 1);
      r.attention_mask = maskinfo::detail::slice_last(sliced, start_k, width);
      if (f_.q_segment_ids) r.q_segment_ids = slice_ids_dyn(*f_.q_segment_ids, idx, 1, "q_segment_ids");
      if (f_.kv_segment_ids) r.kv_segment_ids = slice_ids_dyn(*f_.kv_segment_ids, start_k, width, "kv_segment_ids");
      r.q_positions = f_.q_positions ? std::optional<IntTensor>(slice_ids_dyn(*f_.q_positions, idx, 1, "q_positions", 2))
                                     : std::nullopt;
      r.kv_positions = f_.kv_positions
                           ? std::optional<IntTensor>(slice_ids_dyn(*f_.kv_positions, start_k, width, "kv_positions", 2))
                           : std::nullopt;
      return replace(std::move(r));
    }
    if (prefill) {
      std::int64_t const width = window.is_int ? std::min(l, k) : std::min(l + rr + 1, k);
      std::int64_t const start = std::max<std::int64_t>(k - width, 0);
      std::vector<std::int64_t> starts(static_cast<std::size_t>(b), start);
      r.attention_mask = maskinfo::detail::slice_last(m, starts, width);
      if (f_.kv_segment_ids) {
        if (f_.kv_segment_ids->rank() != 2 && f_.kv_segment_ids->rank() != 3) {
          piecrust::detail::fail<InvalidArgument>("kv_segment_ids must be 2D or 3D, got shape ",
                                                  maskinfo::shape_repr(f_.kv_segment_ids->shape()));
        }
        r.kv_segment_ids = slice_py(*f_.kv_segment_ids, start, width);
      }
      r.kv_positions = f_.kv_positions ? std::optional<IntTensor>(slice_py(*f_.kv_positions, start, width)) : std::nullopt;
      return replace(std::move(r));
    }
    r.attention_mask = std::move(m);
    return replace(std::move(r));
  }

  /// apply_chunked(chunk_size, offset): mask &= (i / c == j / c) & (j <= i + offset); the ids are
  /// replaced by 1-based chunk ids (pads, judged by the current or pattern ids, stay -1).
  [[nodiscard]] MaskInfo apply_chunked(std::int64_t chunk_size, std::int64_t offset = 0) const {
    maskinfo::detail::trace("MaskInfo", "apply_chunked");
    if (chunk_size <= 0) {
      piecrust::detail::fail<InvalidArgument>("Invalid chunk_size: expected a positive integer, but got ", chunk_size);
    }
    require_dims("Cannot apply chunked attention");
    BoolTensor m = mask4("apply_chunked");
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    for (std::int64_t bb = 0; bb < b; ++bb) {
      for (std::int64_t hh = 0; hh < h; ++hh) {
        for (std::int64_t i = 0; i < q; ++i) {
          std::uint8_t* p = &m.at(bb, hh, i, 0);
          for (std::int64_t j = 0; j < k; ++j) {
            if (i / chunk_size != j / chunk_size || j > i + offset) p[j] = 0;
          }
        }
      }
    }
    auto const ids = get_or_compute_segment_ids();
    Replace r;
    r.attention_mask = std::move(m);
    r.q_segment_ids = chunk_ids(ids.q, b, chunk_size, "q_segment_ids");
    r.kv_segment_ids = chunk_ids(ids.kv, b, chunk_size, "kv_segment_ids");
    r.chunked_mask_baked_in = true;
    return replace(std::move(r));
  }

  /// apply_token_type_ids(types, {combine, zero_policy, update_segment_ids}): EQ = (qt == kt), & qt != 0
  /// and/or kt != 0 per zero_policy; union ORs (can re-enable padding, S11), intersect ANDs, replace
  /// uses EQ alone (heads collapse to 1).
  [[nodiscard]] MaskInfo apply_token_type_ids(maskinfo::TokenTypes const& types,
                                              maskinfo::TokenTypeOptions const& opts = {}) const {
    maskinfo::detail::trace("MaskInfo", "apply_token_type_ids");
    IntTensor const& qt = types.q;
    IntTensor const& kt = types.kv ? *types.kv : types.q;
    if (qt.rank() != 2 || kt.rank() != 2) {
      piecrust::detail::fail<InvalidArgument>("Invalid token_type_ids shape. Expected 2D arrays (batch, seq_len), got q_types.shape=",
                                              maskinfo::shape_repr(qt.shape()), " and kv_types.shape=",
                                              maskinfo::shape_repr(kt.shape()));
    }
    if (qt.dim(0) != kt.dim(0)) {
      piecrust::detail::fail<InvalidArgument>("Batch size mismatch in token_type_ids: q_types batch ", qt.dim(0),
                                              " != kv_types batch ", kt.dim(0));
    }
    BoolTensor const base = mask4("apply_token_type_ids");
    std::string const& zp = opts.zero_policy;
    if (zp != "q" && zp != "kv" && zp != "both" && zp != "none") {
      piecrust::detail::fail<InvalidArgument>("Invalid zero_policy value. Expected one of ['q', 'kv', 'both', 'none'], but got '",
                                              zp, "'");
    }
    std::string const& cb = opts.combine;
    if (cb != "union" && cb != "intersect" && cb != "replace") {
      piecrust::detail::fail<InvalidArgument>("Invalid combine mode. Expected one of ['union', 'intersect', 'replace'], but got '",
                                              cb, "'");
    }
    std::int64_t const tb = qt.dim(0), tq = qt.dim(1), tk = kt.dim(1);
    std::int64_t const mb = base.dim(0), h = base.dim(1), mq = base.dim(2), mk = base.dim(3);
    bool const zq = zp == "q" || zp == "both", zk = zp == "kv" || zp == "both";
    auto eq = [&](std::int64_t bb, std::int64_t i, std::int64_t j) {
      std::int32_t const a = qt.at(bb, i), c = kt.at(bb, j);
      return a == c && !(zq && a == 0) && !(zk && c == 0);
    };
    Replace r;
    if (cb == "replace") {
      BoolTensor e(maskinfo::Shape{tb, 1, tq, tk});  // [batch][1][q_len][kv_len]
      for (std::int64_t bb = 0; bb < tb; ++bb)
        for (std::int64_t i = 0; i < tq; ++i)
          for (std::int64_t j = 0; j < tk; ++j) e.at(bb, 0, i, j) = eq(bb, i, j) ? 1 : 0;
      r.attention_mask = std::move(e);
    } else {
      std::int64_t const ob = maskinfo::detail::broadcast_batch(mb, tb, "apply_token_type_ids");
      if ((tq != mq && tq != 1 && mq != 1) || (tk != mk && tk != 1 && mk != 1)) {
        piecrust::detail::fail<InvalidArgument>("apply_token_type_ids: token types (", tq, ", ", tk,
                                                ") do not broadcast with the mask ", maskinfo::shape_repr(base.shape()));
      }
      std::int64_t const oq = std::max(tq, mq), ok = std::max(tk, mk);
      BoolTensor out(maskinfo::Shape{ob, h, oq, ok});  // [batch][heads][q_len][kv_len]
      for (std::int64_t bb = 0; bb < ob; ++bb)
        for (std::int64_t hh = 0; hh < h; ++hh)
          for (std::int64_t i = 0; i < oq; ++i)
            for (std::int64_t j = 0; j < ok; ++j) {
              bool const mv = base.at(mb == 1 ? 0 : bb, hh, mq == 1 ? 0 : i, mk == 1 ? 0 : j) != 0;
              bool const ev = eq(tb == 1 ? 0 : bb, tq == 1 ? 0 : i, tk == 1 ? 0 : j);
              out.at(bb, hh, i, j) = (cb == "union" ? (mv || ev) : (mv && ev)) ? 1 : 0;
            }
      r.attention_mask = std::move(out);
    }
    bool const update = opts.update_segment_ids.value_or(cb != "union");
    if (update) {
      IntTensor qs = qt, ks = kt;
      for (auto& v : qs.data()) v = v == 0 ? -1 : v;
      for (auto& v : ks.data()) v = v == 0 ? -1 : v;
      r.q_segment_ids = std::move(qs);
      r.kv_segment_ids = std::move(ks);
    }
    r.token_type_ids_baked_in = true;
    return replace(std::move(r));
  }

  /// apply_kv_lengths(kv_lengths, {q_len, end_index, sliding_window}): mask &= (j < kv_lengths[b]);
  /// rows [start_q, start_q + q_len) are kept with start_q = clip(E[b] - q_len, 0, max(Q - q_len, 0)),
  /// E = end_index (newer upstream; kv ids at j >= kv_lengths[b] become -1) or kv_lengths (seed form);
  /// with sliding_window, columns [start_k, start_k + min(w, K)). Positions are not sliced (upstream).
  [[nodiscard]] MaskInfo apply_kv_lengths(maskinfo::BatchInts const& kv_lengths,
                                          maskinfo::KvLengthsOptions const& opts = {}) const {
    maskinfo::detail::trace("MaskInfo", "apply_kv_lengths");
    if (!opts.q_len) piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_len must be provided.");
    BoolTensor m = mask4("apply_kv_lengths");
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    std::int64_t const ql = *opts.q_len;
    if (ql < 0 || ql > q) {
      piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_len = ", ql, " must be in [0, ", q, "]");
    }
    auto const kl = kv_lengths.per_batch(b, "apply_kv_lengths: kv_lengths");
    auto const end = opts.end_index ? opts.end_index->per_batch(b, "apply_kv_lengths: end_index") : kl;
    for (std::int64_t bb = 0; bb < b; ++bb)
      for (std::int64_t hh = 0; hh < h; ++hh)
        for (std::int64_t i = 0; i < q; ++i)
          for (std::int64_t j = std::max<std::int64_t>(0, kl[static_cast<std::size_t>(bb)]); j < k; ++j) m.at(bb, hh, i, j) = 0;
    std::optional<IntTensor> qs = f_.q_segment_ids, ks = f_.kv_segment_ids;
    if (opts.end_index && ks) {
      if (ks->rank() != 2) {
        piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: kv_segment_ids must be 2D, got shape ",
                                                maskinfo::shape_repr(ks->shape()));
      }
      for (std::int64_t bb = 0; bb < ks->dim(0); ++bb)
        for (std::int64_t j = std::max<std::int64_t>(0, kl[static_cast<std::size_t>(bb)]); j < ks->dim(1); ++j) ks->at(bb, j) = -1;
    }
    std::vector<std::int64_t> start_q(static_cast<std::size_t>(b));
    for (std::size_t bb = 0; bb < start_q.size(); ++bb) {
      start_q[bb] = maskinfo::detail::clip(end[bb] - ql, 0, std::max<std::int64_t>(q - ql, 0));
    }
    m = maskinfo::detail::slice_axis(m, 2, start_q, ql);
    if (qs) {
      if (qs->rank() != 2) {
        piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_segment_ids must be 2D, got shape ",
                                                maskinfo::shape_repr(qs->shape()));
      }
      qs = slice_ids_dyn(*qs, start_q, ql, "q_segment_ids", 2);
    }
    if (opts.sliding_window) {
      if (*opts.sliding_window < 0) {
        piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: sliding_window = ", *opts.sliding_window,
                                                " must be >= 0");
      }
      std::int64_t const width = std::min(*opts.sliding_window, k);
      std::vector<std::int64_t> start_k(static_cast<std::size_t>(b));
      for (std::size_t bb = 0; bb < start_k.size(); ++bb) {
        start_k[bb] = maskinfo::detail::clip(kl[bb] - width, 0, std::max<std::int64_t>(k - width, 0));
      }
      m = maskinfo::detail::slice_last(m, start_k, width);
      if (ks) ks = slice_ids_dyn(*ks, start_k, width, "kv_segment_ids", 2);
    }
    Replace r;
    r.attention_mask = std::move(m);
    r.q_segment_ids = std::move(qs);
    r.kv_segment_ids = std::move(ks);
    return replace(std::move(r));
  }

  // ---------------------------------------------------------------- visualize, sharding, statics

  /// visualize: the block rendering as text; returned when return_str, else printed (plus a newline,
  /// like Python's print) and nullopt returned.
  std::optional<std::string> visualize(maskinfo::VisualizeOptions const& o = {}) const {
    maskinfo::detail::trace("MaskInfo", "visualize");
    BoolTensor m = get_or_compute_attention_mask(DType::bool_).to_bool();
    if (m.rank() == 3) m = m.reshaped(maskinfo::Shape{m.dim(0), 1, m.dim(1), m.dim(2)});
    if (m.rank() != 4) {
      piecrust::detail::fail<InvalidArgument>("Visualization requires a 4D attention mask, but got ", m.rank(),
                                              "D mask with shape ", maskinfo::shape_repr(m.shape()));
    }
    std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
    if (o.batch < 0 || o.batch >= b) {
      piecrust::detail::fail<OutOfRange>("Batch index out of range. Requested batch=", o.batch,
                                         ", but valid range is [0, ", b, ").");
    }
    if (o.head < 0 || o.head >= h) {
      piecrust::detail::fail<OutOfRange>("Head index out of range. Requested head=", o.head,
                                         ", but valid range is [0, ", h, ").");
    }
    std::vector<std::uint8_t> slice(static_cast<std::size_t>(q * k));  // [q_len][kv_len]
    if (q * k > 0) std::copy_n(&m.at(o.batch, o.head, 0, 0), q * k, slice.begin());
    std::optional<std::vector<std::int32_t>> qi, ki;
    if (o.show_segments) {
      std::optional<maskinfo::QkvPair<IntTensor>> pattern{};
      auto pick = [&](std::optional<IntTensor> const& stored, bool is_q) {
        IntTensor const* ids = stored ? &*stored : nullptr;
        if (!ids) {
          if (!pattern) pattern = maskinfo::mask_to_segment_ids(m, h > 1);
          ids = is_q ? &pattern->q : &pattern->kv;
        }
        std::int64_t const len = ids->shape().back();
        std::int64_t const row = ids->rank() == 3 ? (o.batch * ids->dim(1) + o.head) : o.batch;
        if (ids->rank() < 2 || ids->dim(0) <= o.batch || (ids->rank() == 3 && ids->dim(1) <= o.head)) {
          piecrust::detail::fail<OutOfRange>("visualize: segment ids of shape ", maskinfo::shape_repr(ids->shape()),
                                             " have no row for batch=", o.batch, ", head=", o.head);
        }
        auto const first = ids->data().begin() + row * len;
        return std::vector<std::int32_t>(first, first + len);
      };
      qi = pick(f_.q_segment_ids, true);
      ki = pick(f_.kv_segment_ids, false);
    }
    std::string s = maskinfo::render_mask(slice, q, k, m.shape(), std::move(qi), std::move(ki), o);
    if (o.return_str) return s;
    std::cout << s << '\n';
    return std::nullopt;
  }

  /// get_shardings(mesh, sequence_parallel): partition specs for every present field (no devices).
  [[nodiscard]] maskinfo::MaskSharding get_shardings(maskinfo::Mesh const& mesh, bool sequence_parallel = false) const {
    AxisName const seq = sequence_parallel ? f_.sequence_axis_name : AxisName::none();
    maskinfo::detail::check_axis(f_.qheads_axis_name, "qheads_axis_name", mesh);
    maskinfo::detail::check_axis(f_.batch_axis_name, "batch_axis_name", mesh);
    maskinfo::detail::check_axis(seq, "sequence_axis_name", mesh);
    maskinfo::MaskSharding s;
    if (f_.attention_mask) {
      if (f_.attention_mask->rank() != 4) {
        piecrust::detail::fail<InvalidArgument>("Attention mask must be a 4D array for sharding computation, but got ",
                                                f_.attention_mask->rank(), "D array with shape ",
                                                maskinfo::shape_repr(f_.attention_mask->shape()));
      }
      s.attention_mask = maskinfo::corrected_spec(f_.attention_mask->shape(),
                                                  {f_.batch_axis_name, f_.qheads_axis_name, seq, AxisName::none()}, mesh);
    }
    auto bs = [&](std::optional<IntTensor> const& t) -> std::optional<maskinfo::PartitionSpec> {
      if (!t) return std::nullopt;
      return maskinfo::corrected_spec(t->shape(), {f_.batch_axis_name, seq}, mesh);
    };
    s.q_segment_ids = bs(f_.q_segment_ids);
    s.kv_segment_ids = bs(f_.kv_segment_ids);
    s.q_positions = bs(f_.q_positions);
    s.kv_positions = bs(f_.kv_positions);
    return s;
  }

  [[nodiscard]] static maskinfo::MaskSharding get_empty_sharding() { return {}; }

  /// create_chunked_attention_mask: the 2-D (Q,K) mask (i / c == j / c) & (j <= i + offset).
  [[nodiscard]] static Array create_chunked_attention_mask(std::int64_t chunk_size, std::int64_t q_len,
                                                           std::optional<std::int64_t> kv_len = std::nullopt,
                                                           std::int64_t offset = 0, DType dtype = DType::bool_) {
    if (chunk_size <= 0) {
      piecrust::detail::fail<InvalidArgument>("Invalid chunk_size: expected a positive integer, but got ", chunk_size);
    }
    std::int64_t const q = std::max<std::int64_t>(q_len, 0), k = std::max<std::int64_t>(kv_len.value_or(q_len), 0);
    BoolTensor m(maskinfo::Shape{q, k});  // [q_len][kv_len]
    for (std::int64_t i = 0; i < q; ++i)
      for (std::int64_t j = 0; j < k; ++j) m.at(i, j) = (i / chunk_size == j / chunk_size && j <= i + offset) ? 1 : 0;
    return maskinfo::cast_bool(m, dtype);
  }

 private:
  static IntTensor padding_ids(BoolTensor const& valid) {
    IntTensor ids(valid.shape());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = valid[i] ? 0 : -1;
    return ids;
  }

  /// ids[:, 0, :] for 3-D ids, the ids themselves otherwise.
  static IntTensor head0(IntTensor const& ids) {
    if (ids.rank() != 3) return ids;
    std::int64_t const b = ids.dim(0), h = ids.dim(1), s = ids.dim(2);
    IntTensor out(maskinfo::Shape{b, s});
    for (std::int64_t bb = 0; bb < b; ++bb) {
      if (h == 0) piecrust::detail::fail<InvalidArgument>("segment ids have 0 heads");
      std::copy_n(&ids.at(bb, 0, 0), s, &out.at(bb, 0));
    }
    return out;
  }

  static IntTensor lens_of(IntTensor const& ids, char const* what) {
    IntTensor const two_d = head0(ids);
    if (two_d.empty()) piecrust::detail::fail<InvalidArgument>(what, ": the segment ids are empty");
    std::int32_t const mx = *std::max_element(two_d.data().begin(), two_d.data().end());
    if (mx > 0) {
      IntTensor out(maskinfo::Shape{static_cast<std::int64_t>(mx) + 1});
      for (auto const v : two_d.data()) {
        if (v >= 0) ++out[static_cast<std::size_t>(v)];
      }
      return out;
    }
    std::int64_t const b = two_d.rank() >= 1 ? two_d.dim(0) : 1;
    std::int64_t const s = static_cast<std::int64_t>(two_d.size()) / std::max<std::int64_t>(b, 1);
    IntTensor out(maskinfo::Shape{b});
    for (std::int64_t bb = 0; bb < b; ++bb)
      for (std::int64_t i = 0; i < s; ++i) out[static_cast<std::size_t>(bb)] += two_d[static_cast<std::size_t>(bb * s + i)] >= 0;
    return out;
  }

  void require_dims(char const* what) const {
    if (!q_len() || !kv_len()) {
      piecrust::detail::fail<InvalidState>(what, ": mask dimensions are unknown (q_len and kv_len need an attention_mask "
                                                 "or segment ids)");
    }
  }

  /// get_or_compute_attention_mask(bool) as a 4-D bool tensor.
  [[nodiscard]] BoolTensor mask4(char const* what) const {
    BoolTensor m = get_or_compute_attention_mask(DType::bool_).to_bool();
    if (m.rank() != 4) {
      piecrust::detail::fail<InvalidArgument>(what, ": the attention mask must be 4D (batch, heads, q_len, kv_len), got shape ",
                                              maskinfo::shape_repr(m.shape()));
    }
    return m;
  }

  /// Per-batch dynamic slice of the last axis of 2-D ids (or 3-D when allowed) with XLA clamping.
  static IntTensor slice_ids_dyn(IntTensor const& t, std::vector<std::int64_t> starts, std::int64_t width,
                                 char const* what, std::size_t max_rank = 3) {
    if (t.rank() != 2 && !(t.rank() == 3 && max_rank == 3)) {
      piecrust::detail::fail<InvalidArgument>(what, " must be 2D", max_rank == 3 ? " or 3D" : "", ", got shape ",
                                              maskinfo::shape_repr(t.shape()));
    }
    if (static_cast<std::int64_t>(starts.size()) != t.dim(0)) {
      piecrust::detail::fail<InvalidArgument>(what, ": batch ", t.dim(0), " does not match the mask batch ", starts.size());
    }
    for (auto& s : starts) s = maskinfo::detail::dyn_start(s, width, t.shape().back(), what);
    return maskinfo::detail::slice_last(t, starts, width);
  }

  /// Python slicing t[..., start:start + width] (clamped at the end).
  static IntTensor slice_py(IntTensor const& t, std::int64_t start, std::int64_t width) {
    std::int64_t const len = t.shape().back();
    std::int64_t const s = std::min(start, len), e = std::min(start + width, len);
    std::vector<std::int64_t> starts(static_cast<std::size_t>(t.dim(0)), s);
    return maskinfo::detail::slice_last(t, starts, std::max<std::int64_t>(e - s, 0));
  }

  /// where(ids < 0, -1, index // c + 1) broadcast to (B, L).
  static IntTensor chunk_ids(IntTensor const& ids, std::int64_t batch, std::int64_t c, char const* what) {
    std::int64_t const len = ids.shape().back();
    if (ids.rank() == 2 && ids.dim(0) == batch) {
      IntTensor out(ids.shape());
      for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t i = 0; i < len; ++i)
          out.at(b, i) = ids.at(b, i) < 0 ? -1 : static_cast<std::int32_t>(i / c + 1);
      return out;
    }
    if (ids.rank() == 3 && batch == 1 && ids.dim(0) == 1) {  // (1,H,L) broadcasts with (1,L)
      IntTensor out(ids.shape());
      for (std::size_t f = 0; f < ids.size(); ++f) {
        std::int64_t const i = static_cast<std::int64_t>(f) % len;
        out[f] = ids[f] < 0 ? -1 : static_cast<std::int32_t>(i / c + 1);
      }
      return out;
    }
    piecrust::detail::fail<InvalidArgument>("apply_chunked: ", what, " of shape ", maskinfo::shape_repr(ids.shape()),
                                            " do not broadcast with (", batch, ", ", len, ")");
  }

  mutable Fields f_;
};

namespace maskinfo {

/// dynamic_init's keyword arguments; inputs_embeds is represented by its shape (B, S, D).
struct DynamicInitArgs {
  std::optional<MaskInfo> mask_info{};
  std::optional<IntTensor> input_ids{};
  std::optional<Shape> inputs_embeds_shape{};
  std::optional<Array> attention_mask{};
};

}  // namespace maskinfo

/// dynamic_init: mask_info as is; else an all-True (B,S) mask from input_ids / inputs_embeds; a non-bool
/// mask becomes mask == 1 (so 2 is padding, S1); 2-D goes to from_segments(is_attn_mask), else
/// from_attention_mask.
inline MaskInfo MaskInfo::dynamic_init(maskinfo::DynamicInitArgs const& args) {
  maskinfo::detail::trace("type", "dynamic_init");
  if (args.mask_info) return *args.mask_info;
  BoolTensor mask;
  if (!args.attention_mask) {
    if (args.input_ids) {
      maskinfo::detail::require_rank(args.input_ids->shape(), 2, "dynamic_init: input_ids");
      mask = BoolTensor(args.input_ids->shape(), 1);
    } else if (args.inputs_embeds_shape) {
      maskinfo::detail::require_rank(*args.inputs_embeds_shape, 3, "dynamic_init: inputs_embeds");
      mask = BoolTensor(maskinfo::Shape{(*args.inputs_embeds_shape)[0], (*args.inputs_embeds_shape)[1]}, 1);
    } else {
      piecrust::detail::fail<InvalidArgument>(
          "Cannot create MaskInfo: provide at least one of mask_info, input_ids, inputs_embeds or attention_mask");
    }
  } else if (args.attention_mask->is_bool()) {
    mask = args.attention_mask->bools();
  } else {
    mask = BoolTensor(args.attention_mask->shape());
    for (std::size_t i = 0; i < mask.size(); ++i) mask[i] = args.attention_mask->value(i) == 1.0 ? 1 : 0;
  }
  if (mask.rank() == 2) {
    IntTensor ids(mask.shape());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = mask[i];
    SegmentsOptions opts;
    opts.is_attn_mask = true;
    return from_segments(std::move(ids), std::nullopt, std::move(opts));
  }
  return from_attention_mask(mask);
}

}  // namespace piecrust
