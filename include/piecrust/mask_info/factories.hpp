#pragma once
// MaskInfo's factories (upstream's classmethods from_segments, from_attention_mask, from_cu_seqlens,
// from_random, dynamic_init) as free functions. Each stores what upstream stores and nothing more: the
// dense mask stays lazy wherever upstream leaves it lazy, because the lazy getters' caching is
// observable (spec §4.1).

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/options.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <cstdint>
#include <optional>
#include <utility>

namespace piecrust::maskinfo {

namespace detail {
/// 0 where valid, -1 elsewhere: padding-style ids.
inline IntTensor padding_ids(BoolTensor const& valid) {
  IntTensor ids(valid.shape());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = valid[i] ? 0 : -1;
  return ids;
}
}  // namespace detail

/// from_segments: ids as given (int32), kv defaults to q; the mask stays lazy. With is_attn_mask the
/// inputs are padding masks: mask = outer product of (q != 0, kv != 0), ids become 0 / -1.
[[nodiscard]] inline MaskInfo from_segments(IntTensor q_segment_ids, std::optional<IntTensor> kv_segment_ids = std::nullopt,
                                            SegmentsOptions opts = {}) {
  detail::trace("type", "from_segments");
  detail::require_rank(q_segment_ids.shape(), q_segment_ids.rank() == 3 ? 3 : 2, "from_segments: q_segment_ids");
  IntTensor kv = kv_segment_ids ? std::move(*kv_segment_ids) : q_segment_ids;
  MaskInfo::Fields f;
  if (opts.is_attn_mask) {
    detail::require_rank(q_segment_ids.shape(), 2, "from_segments(is_attn_mask): q_segment_ids");
    detail::require_rank(kv.shape(), 2, "from_segments(is_attn_mask): kv_segment_ids");
    IntTensor qv(q_segment_ids.shape()), kvv(kv.shape());
    for (std::size_t i = 0; i < qv.size(); ++i) qv[i] = q_segment_ids[i] != 0 ? 0 : -1;
    for (std::size_t i = 0; i < kvv.size(); ++i) kvv[i] = kv[i] != 0 ? 0 : -1;
    f.attention_mask = segment_ids_to_mask(qv, kvv);  // valid & valid (ids are 0 or -1)
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
[[nodiscard]] inline MaskInfo from_attention_mask(Array const& attention_mask, AttentionMaskOptions opts = {}) {
  detail::trace("type", "from_attention_mask");
  BoolTensor m = attention_mask.to_bool();
  if (!opts.mask_is_valid) {
    for (auto& v : m.data()) v = v ? 0 : 1;
  }
  MaskInfo::Fields f;
  f.q_positions = std::move(opts.q_positions);
  f.kv_positions = std::move(opts.kv_positions);
  f.set_axes(opts.axes);
  if (m.rank() == 2) {
    IntTensor ids(m.shape());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = m[i] ? 0 : -1;
    f.attention_mask = segment_ids_to_mask(ids, ids);
    f.q_segment_ids = ids;
    f.kv_segment_ids = std::move(ids);
    return MaskInfo(std::move(f));
  }
  if (m.rank() == 3) {
    m = m.reshaped(Shape{m.dim(0), 1, m.dim(1), m.dim(2)});
  } else if (m.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>(
        "from_attention_mask: attention_mask must be 2D (batch,seq), 3D (batch,Q,K) or 4D (batch,heads,Q,K), got ",
        m.rank(), "D shape ", shape_repr(m.shape()));
  }
  std::int64_t const b = m.dim(0), h = m.dim(1), q = m.dim(2), k = m.dim(3);
  IntTensor qi(Shape{b, q}, -1), ki(Shape{b, k}, -1);  // [batch][q_len], [batch][kv_len]
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
[[nodiscard]] inline MaskInfo from_cu_seqlens(IntTensor const& cu_seqlens_q, std::int64_t max_q_len,
                                              CuSeqlensOptions opts = {}) {
  detail::trace("type", "from_cu_seqlens");
  IntTensor const cu_kv = opts.cu_seqlens_kv ? *opts.cu_seqlens_kv : cu_seqlens_q;
  auto const masks = qkv_cu_seqlens_to_qkv_masks(cu_seqlens_q, max_q_len, cu_kv, opts.max_kv_len);
  MaskInfo::Fields f;
  f.q_segment_ids = detail::padding_ids(masks.q.bools());
  f.kv_segment_ids = detail::padding_ids(masks.kv.bools());
  f.cu_seqlens_q = cu_seqlens_q;
  f.cu_seqlens_kv = cu_kv;
  f.q_positions = std::move(opts.q_positions);
  f.kv_positions = std::move(opts.kv_positions);
  f.set_axes(opts.axes);
  return MaskInfo(std::move(f));
}

/// from_random: a (B,1,Q,K) Bernoulli(1 - sparsity) mask. Deviation: the bits come from piecrust's
/// own seeded generator (splitmix64), not JAX's threefry, so only sparsity 0 and 1 match upstream bits.
[[nodiscard]] inline MaskInfo from_random(std::int64_t batch_size, std::int64_t q_len, RandomOptions opts = {}) {
  detail::trace("type", "from_random");
  std::int64_t const kv_len = opts.kv_len.value_or(q_len);
  if (!(opts.sparsity >= 0.0 && opts.sparsity <= 1.0)) {
    piecrust::detail::fail<InvalidArgument>("from_random: sparsity = ", opts.sparsity, " must be in [0.0, 1.0]");
  }
  if (batch_size < 0 || q_len < 0 || kv_len < 0) {
    piecrust::detail::fail<InvalidArgument>("from_random: batch_size = ", batch_size, ", q_len = ", q_len,
                                            ", kv_len = ", kv_len, " must be >= 0");
  }
  BoolTensor m(Shape{batch_size, 1, q_len, kv_len});  // [batch][1][q_len][kv_len]
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
  MaskInfo::Fields f;
  f.attention_mask = std::move(m);
  f.q_positions = std::move(opts.q_positions);
  f.kv_positions = std::move(opts.kv_positions);
  f.set_axes(opts.axes);
  return MaskInfo(std::move(f));
}

/// dynamic_init's keyword arguments; inputs_embeds is represented by its shape (B, S, D).
struct DynamicInitArgs {
  std::optional<MaskInfo> mask_info{};
  std::optional<IntTensor> input_ids{};
  std::optional<Shape> inputs_embeds_shape{};
  std::optional<Array> attention_mask{};
};

/// dynamic_init: mask_info as is; else an all-True (B,S) mask from input_ids / inputs_embeds; a non-bool
/// mask becomes mask == 1 (so 2 is padding, S1); 2-D goes to from_segments(is_attn_mask), else
/// from_attention_mask.
[[nodiscard]] inline MaskInfo dynamic_init(DynamicInitArgs const& args) {
  detail::trace("type", "dynamic_init");
  if (args.mask_info) return *args.mask_info;
  BoolTensor mask;
  if (!args.attention_mask) {
    if (args.input_ids) {
      detail::require_rank(args.input_ids->shape(), 2, "dynamic_init: input_ids");
      mask = BoolTensor(args.input_ids->shape(), 1);
    } else if (args.inputs_embeds_shape) {
      detail::require_rank(*args.inputs_embeds_shape, 3, "dynamic_init: inputs_embeds");
      mask = BoolTensor(Shape{(*args.inputs_embeds_shape)[0], (*args.inputs_embeds_shape)[1]}, 1);
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

}  // namespace piecrust::maskinfo
