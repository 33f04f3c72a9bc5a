#pragma once
// MaskInfo's transforms under upstream's names: causal, sliding window (default, decode and prefill
// modes), chunked, token types and kv lengths, plus the static create_chunked_attention_mask. Each
// returns a new MaskInfo through replace (so stored cu_seqlens are cleared) with the mask materialized
// and the matching baked-in flag set. Positional rules use top-left indices (S9); the explicit
// alignments are in typed.hpp.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/detail/slicing.hpp"
#include "piecrust/mask_info/dtype.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/options.hpp"
#include "piecrust/mask_info/replace.hpp"
#include "piecrust/mask_info/representations.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

namespace detail {
inline void require_dims(MaskInfo const& m, char const* what) {
  if (!m.q_len() || !m.kv_len()) {
    piecrust::detail::fail<InvalidState>(what, ": mask dimensions are unknown (q_len and kv_len need an attention_mask "
                                               "or segment ids)");
  }
}

/// where(ids < 0, -1, index // c + 1) broadcast to (B, L).
inline IntTensor chunk_ids(IntTensor const& ids, std::int64_t batch, std::int64_t c, char const* what) {
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
  piecrust::detail::fail<InvalidArgument>("apply_chunked: ", what, " of shape ", shape_repr(ids.shape()),
                                          " do not broadcast with (", batch, ", ", len, ")");
}
}  // namespace detail

/// apply_causal(offset): mask &= (j <= i + offset[b]), top-left aligned (S9: pass offset = K - Q for
/// bottom-right alignment, or use apply_causal_aligned).
[[nodiscard]] inline MaskInfo apply_causal(MaskInfo const& m, BatchInts const& offset = 0) {
  detail::trace("MaskInfo", "apply_causal");
  detail::require_dims(m, "Cannot apply causal mask");
  BoolTensor mk = detail::mask4(m, "apply_causal");
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  auto const off = offset.per_batch(b, "apply_causal: offset");
  for (std::int64_t bb = 0; bb < b; ++bb) {
    for (std::int64_t hh = 0; hh < h; ++hh) {
      for (std::int64_t i = 0; i < q; ++i) {
        std::uint8_t* row = &mk.at(bb, hh, i, 0);
        for (std::int64_t j = std::max<std::int64_t>(0, i + off[static_cast<std::size_t>(bb)] + 1); j < k; ++j) row[j] = 0;
      }
    }
  }
  Replace r;
  r.attention_mask = std::move(mk);
  r.causal_mask_baked_in = true;
  return replace(m, std::move(r));
}

/// apply_sliding_window(window, {offset, mode, index}): mask &= (row - left <= j <= row + right) with
/// row = offset[b] + i. An int w is the symmetric, non-causal band +-w. "decode" keeps row index[b] and
/// min(l + r + 1, K) columns; "prefill" keeps the last min(w, K) (int) or min(l + r + 1, K) columns;
/// any other mode string is the default (S9).
[[nodiscard]] inline MaskInfo apply_sliding_window(MaskInfo const& m, SlidingWindow const& window,
                                                   SlidingWindowOptions const& opts = {}) {
  detail::trace("MaskInfo", "apply_sliding_window");
  auto const& f = m.fields();
  if (window.is_int && window.left < 0) {
    piecrust::detail::fail<InvalidArgument>("Invalid sliding_window: expected a non-negative integer, but got ",
                                            window.left);
  }
  if (!window.is_int && (window.left < 0 || window.right < 0)) {
    piecrust::detail::fail<InvalidArgument>("Invalid sliding_window: expected non-negative values, but got (",
                                            window.left, ", ", window.right, ")");
  }
  detail::require_dims(m, "Cannot apply sliding window");
  bool const decode = opts.mode && *opts.mode == "decode";
  bool const prefill = opts.mode && *opts.mode == "prefill";
  if (decode && !opts.index) {
    piecrust::detail::fail<InvalidArgument>("index parameter is required when mode='decode'");
  }
  BoolTensor mk = detail::mask4(m, "apply_sliding_window");
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  std::int64_t const l = window.left, rr = window.right;
  auto const off = opts.offset.per_batch(b, "apply_sliding_window: offset");
  for (std::int64_t bb = 0; bb < b; ++bb) {
    for (std::int64_t hh = 0; hh < h; ++hh) {
      for (std::int64_t i = 0; i < q; ++i) {
        std::int64_t const row = off[static_cast<std::size_t>(bb)] + i;
        std::uint8_t* p = &mk.at(bb, hh, i, 0);
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
      idx[bb] = detail::clip(idx[bb], 0, q - 1);
      start_k[bb] = detail::clip(idx[bb] - l, 0, std::max<std::int64_t>(k - width, 0));
    }
    auto qsl = idx;
    for (auto& v : qsl) v = detail::dyn_start(v, 1, q, "apply_sliding_window(decode): q");
    BoolTensor sliced = detail::slice_axis(mk, 2, qsl, 1);
    r.attention_mask = detail::slice_last(sliced, start_k, width);
    if (f.q_segment_ids) r.q_segment_ids = detail::slice_ids_dyn(*f.q_segment_ids, idx, 1, "q_segment_ids");
    if (f.kv_segment_ids) r.kv_segment_ids = detail::slice_ids_dyn(*f.kv_segment_ids, start_k, width, "kv_segment_ids");
    r.q_positions = f.q_positions ? std::optional<IntTensor>(detail::slice_ids_dyn(*f.q_positions, idx, 1, "q_positions", 2))
                                  : std::nullopt;
    r.kv_positions = f.kv_positions
                         ? std::optional<IntTensor>(detail::slice_ids_dyn(*f.kv_positions, start_k, width, "kv_positions", 2))
                         : std::nullopt;
    return replace(m, std::move(r));
  }
  if (prefill) {
    std::int64_t const width = window.is_int ? std::min(l, k) : std::min(l + rr + 1, k);
    std::int64_t const start = std::max<std::int64_t>(k - width, 0);
    std::vector<std::int64_t> starts(static_cast<std::size_t>(b), start);
    r.attention_mask = detail::slice_last(mk, starts, width);
    if (f.kv_segment_ids) {
      if (f.kv_segment_ids->rank() != 2 && f.kv_segment_ids->rank() != 3) {
        piecrust::detail::fail<InvalidArgument>("kv_segment_ids must be 2D or 3D, got shape ",
                                                shape_repr(f.kv_segment_ids->shape()));
      }
      r.kv_segment_ids = detail::slice_py(*f.kv_segment_ids, start, width);
    }
    r.kv_positions = f.kv_positions ? std::optional<IntTensor>(detail::slice_py(*f.kv_positions, start, width)) : std::nullopt;
    return replace(m, std::move(r));
  }
  r.attention_mask = std::move(mk);
  return replace(m, std::move(r));
}

/// apply_chunked(chunk_size, offset): mask &= (i / c == j / c) & (j <= i + offset); the ids are
/// replaced by 1-based chunk ids (pads, judged by the current or pattern ids, stay -1).
[[nodiscard]] inline MaskInfo apply_chunked(MaskInfo const& m, std::int64_t chunk_size, std::int64_t offset = 0) {
  detail::trace("MaskInfo", "apply_chunked");
  if (chunk_size <= 0) {
    piecrust::detail::fail<InvalidArgument>("Invalid chunk_size: expected a positive integer, but got ", chunk_size);
  }
  detail::require_dims(m, "Cannot apply chunked attention");
  BoolTensor mk = detail::mask4(m, "apply_chunked");
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  for (std::int64_t bb = 0; bb < b; ++bb) {
    for (std::int64_t hh = 0; hh < h; ++hh) {
      for (std::int64_t i = 0; i < q; ++i) {
        std::uint8_t* p = &mk.at(bb, hh, i, 0);
        for (std::int64_t j = 0; j < k; ++j) {
          if (i / chunk_size != j / chunk_size || j > i + offset) p[j] = 0;
        }
      }
    }
  }
  auto const ids = get_or_compute_segment_ids(m);
  Replace r;
  r.attention_mask = std::move(mk);
  r.q_segment_ids = detail::chunk_ids(ids.q, b, chunk_size, "q_segment_ids");
  r.kv_segment_ids = detail::chunk_ids(ids.kv, b, chunk_size, "kv_segment_ids");
  r.chunked_mask_baked_in = true;
  return replace(m, std::move(r));
}

/// apply_token_type_ids(types, {combine, zero_policy, update_segment_ids}): EQ = (qt == kt), & qt != 0
/// and/or kt != 0 per zero_policy; union ORs (can re-enable padding, S11), intersect ANDs, replace
/// uses EQ alone (heads collapse to 1).
[[nodiscard]] inline MaskInfo apply_token_type_ids(MaskInfo const& m, TokenTypes const& types,
                                                   TokenTypeOptions const& opts = {}) {
  detail::trace("MaskInfo", "apply_token_type_ids");
  IntTensor const& qt = types.q;
  IntTensor const& kt = types.kv ? *types.kv : types.q;
  if (qt.rank() != 2 || kt.rank() != 2) {
    piecrust::detail::fail<InvalidArgument>("Invalid token_type_ids shape. Expected 2D arrays (batch, seq_len), got q_types.shape=",
                                            shape_repr(qt.shape()), " and kv_types.shape=", shape_repr(kt.shape()));
  }
  if (qt.dim(0) != kt.dim(0)) {
    piecrust::detail::fail<InvalidArgument>("Batch size mismatch in token_type_ids: q_types batch ", qt.dim(0),
                                            " != kv_types batch ", kt.dim(0));
  }
  BoolTensor const base = detail::mask4(m, "apply_token_type_ids");
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
    BoolTensor e(Shape{tb, 1, tq, tk});  // [batch][1][q_len][kv_len]
    for (std::int64_t bb = 0; bb < tb; ++bb)
      for (std::int64_t i = 0; i < tq; ++i)
        for (std::int64_t j = 0; j < tk; ++j) e.at(bb, 0, i, j) = eq(bb, i, j) ? 1 : 0;
    r.attention_mask = std::move(e);
  } else {
    std::int64_t const ob = detail::broadcast_batch(mb, tb, "apply_token_type_ids");
    if ((tq != mq && tq != 1 && mq != 1) || (tk != mk && tk != 1 && mk != 1)) {
      piecrust::detail::fail<InvalidArgument>("apply_token_type_ids: token types (", tq, ", ", tk,
                                              ") do not broadcast with the mask ", shape_repr(base.shape()));
    }
    std::int64_t const oq = std::max(tq, mq), ok = std::max(tk, mk);
    BoolTensor out(Shape{ob, h, oq, ok});  // [batch][heads][q_len][kv_len]
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
  return replace(m, std::move(r));
}

/// apply_kv_lengths(kv_lengths, {q_len, end_index, sliding_window}): mask &= (j < kv_lengths[b]);
/// rows [start_q, start_q + q_len) are kept with start_q = clip(E[b] - q_len, 0, max(Q - q_len, 0)),
/// E = end_index (newer upstream; kv ids at j >= kv_lengths[b] become -1) or kv_lengths (seed form);
/// with sliding_window, columns [start_k, start_k + min(w, K)). Positions are not sliced (upstream).
[[nodiscard]] inline MaskInfo apply_kv_lengths(MaskInfo const& m, BatchInts const& kv_lengths,
                                               KvLengthsOptions const& opts = {}) {
  detail::trace("MaskInfo", "apply_kv_lengths");
  auto const& f = m.fields();
  if (!opts.q_len) piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_len must be provided.");
  BoolTensor mk = detail::mask4(m, "apply_kv_lengths");
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  std::int64_t const ql = *opts.q_len;
  if (ql < 0 || ql > q) {
    piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_len = ", ql, " must be in [0, ", q, "]");
  }
  auto const kl = kv_lengths.per_batch(b, "apply_kv_lengths: kv_lengths");
  auto const end = opts.end_index ? opts.end_index->per_batch(b, "apply_kv_lengths: end_index") : kl;
  for (std::int64_t bb = 0; bb < b; ++bb)
    for (std::int64_t hh = 0; hh < h; ++hh)
      for (std::int64_t i = 0; i < q; ++i)
        for (std::int64_t j = std::max<std::int64_t>(0, kl[static_cast<std::size_t>(bb)]); j < k; ++j) mk.at(bb, hh, i, j) = 0;
  std::optional<IntTensor> qs = f.q_segment_ids, ks = f.kv_segment_ids;
  if (opts.end_index && ks) {
    if (ks->rank() != 2) {
      piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: kv_segment_ids must be 2D, got shape ",
                                              shape_repr(ks->shape()));
    }
    for (std::int64_t bb = 0; bb < ks->dim(0); ++bb)
      for (std::int64_t j = std::max<std::int64_t>(0, kl[static_cast<std::size_t>(bb)]); j < ks->dim(1); ++j) ks->at(bb, j) = -1;
  }
  std::vector<std::int64_t> start_q(static_cast<std::size_t>(b));
  for (std::size_t bb = 0; bb < start_q.size(); ++bb) {
    start_q[bb] = detail::clip(end[bb] - ql, 0, std::max<std::int64_t>(q - ql, 0));
  }
  mk = detail::slice_axis(mk, 2, start_q, ql);
  if (qs) {
    if (qs->rank() != 2) {
      piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: q_segment_ids must be 2D, got shape ",
                                              shape_repr(qs->shape()));
    }
    qs = detail::slice_ids_dyn(*qs, start_q, ql, "q_segment_ids", 2);
  }
  if (opts.sliding_window) {
    if (*opts.sliding_window < 0) {
      piecrust::detail::fail<InvalidArgument>("apply_kv_lengths: sliding_window = ", *opts.sliding_window,
                                              " must be >= 0");
    }
    std::int64_t const width = std::min(*opts.sliding_window, k);
    std::vector<std::int64_t> start_k(static_cast<std::size_t>(b));
    for (std::size_t bb = 0; bb < start_k.size(); ++bb) {
      start_k[bb] = detail::clip(kl[bb] - width, 0, std::max<std::int64_t>(k - width, 0));
    }
    mk = detail::slice_last(mk, start_k, width);
    if (ks) ks = detail::slice_ids_dyn(*ks, start_k, width, "kv_segment_ids", 2);
  }
  Replace r;
  r.attention_mask = std::move(mk);
  r.q_segment_ids = std::move(qs);
  r.kv_segment_ids = std::move(ks);
  return replace(m, std::move(r));
}

/// create_chunked_attention_mask (upstream's staticmethod): the 2-D (Q,K) mask
/// (i / c == j / c) & (j <= i + offset).
[[nodiscard]] inline Array create_chunked_attention_mask(std::int64_t chunk_size, std::int64_t q_len,
                                                         std::optional<std::int64_t> kv_len = std::nullopt,
                                                         std::int64_t offset = 0, DType dtype = DType::bool_) {
  if (chunk_size <= 0) {
    piecrust::detail::fail<InvalidArgument>("Invalid chunk_size: expected a positive integer, but got ", chunk_size);
  }
  std::int64_t const q = std::max<std::int64_t>(q_len, 0), k = std::max<std::int64_t>(kv_len.value_or(q_len), 0);
  BoolTensor mk(Shape{q, k});  // [q_len][kv_len]
  for (std::int64_t i = 0; i < q; ++i)
    for (std::int64_t j = 0; j < k; ++j) mk.at(i, j) = (i / chunk_size == j / chunk_size && j <= i + offset) ? 1 : 0;
  return cast_bool(mk, dtype);
}

}  // namespace piecrust::maskinfo
