#pragma once
// From MaskInfo to piecrust's own types and to what attention kernels consume:
//   attention_mask_rows   one AttentionMask row (Brle, 0 = attend / 1 = masked) per query token
//   to_flashinfer_mask    FlashInfer-style qo_indptr / kv_indptr plus the LSB-first packed custom mask
//   block_sparse_summary  for each (q-block, kv-block) tile: empty, partial or full, so kernels skip
//                         empty tiles and drop the mask load on full ones
// Rows and summaries are built from run lengths (or, for a lazy MaskInfo, straight from the segment
// ids), so the dense 4-D mask is never materialized on these paths.

#include "piecrust/core/attention_mask.hpp"
#include "piecrust/core/brle.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/representations.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace piecrust::maskinfo {

namespace detail {
/// The AttentionMask row of one bool row (True = may attend -> bit 0).
inline AttentionMask row_from_bools(std::uint8_t const* row, std::int64_t k) {
  Brle bits;
  std::int64_t j = 0;
  while (j < k) {
    bool const attend = row[j] != 0;
    std::int64_t e = j + 1;
    while (e < k && (row[e] != 0) == attend) ++e;
    bits.append(!attend, static_cast<std::size_t>(e - j));
    j = e;
  }
  return AttentionMask(std::move(bits));
}
}  // namespace detail

/// One AttentionMask per query token of (batch, head), each of length kv_len. Polarity flips from
/// ejKernel's True = attend to piecrust's 0 = attend. A lazy MaskInfo (ids, no stored mask) is converted
/// from its ids without building the dense mask: query i attends kv j iff both ids are equal and >= 0.
[[nodiscard]] inline std::vector<AttentionMask> attention_mask_rows(MaskInfo const& m, std::int64_t batch = 0,
                                                                    std::int64_t head = 0) {
  auto const& f = m.fields();
  std::vector<AttentionMask> rows;
  if (!f.attention_mask && f.q_segment_ids && f.kv_segment_ids) {
    IntTensor const& q = *f.q_segment_ids;
    IntTensor const& kv = *f.kv_segment_ids;
    if (q.rank() != 2 || kv.rank() != 2) {
      piecrust::detail::fail<InvalidArgument>("attention_mask_rows: segment ids must be 2D, got ", shape_repr(q.shape()),
                                              " and ", shape_repr(kv.shape()));
    }
    if (batch < 0 || batch >= q.dim(0) || batch >= kv.dim(0) || head != 0) {
      piecrust::detail::fail<OutOfRange>("attention_mask_rows: batch = ", batch, ", head = ", head, " out of range for ids ",
                                         shape_repr(q.shape()));
    }
    std::int64_t const ql = q.dim(1), kl = kv.dim(1);
    std::map<std::int32_t, AttentionMask> by_id;  // one row per distinct id, shared by its tokens
    AttentionMask const none = AttentionMask(Brle().append(true, static_cast<std::size_t>(kl)));
    rows.reserve(static_cast<std::size_t>(ql));
    for (std::int64_t i = 0; i < ql; ++i) {
      std::int32_t const id = q.at(batch, i);
      if (id < 0) {
        rows.push_back(none);
        continue;
      }
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        Brle bits;
        for (std::int64_t j = 0; j < kl; ++j) bits.append(kv.at(batch, j) != id);
        it = by_id.emplace(id, AttentionMask(std::move(bits))).first;
      }
      rows.push_back(it->second);
    }
    return rows;
  }
  BoolTensor mk = get_or_compute_attention_mask(m, DType::bool_).to_bool();
  if (mk.rank() == 3) mk = mk.reshaped(Shape{mk.dim(0), 1, mk.dim(1), mk.dim(2)});
  if (mk.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>("attention_mask_rows: mask must be 4D, got shape ", shape_repr(mk.shape()));
  }
  if (batch < 0 || batch >= mk.dim(0) || head < 0 || head >= mk.dim(1)) {
    piecrust::detail::fail<OutOfRange>("attention_mask_rows: batch = ", batch, ", head = ", head, " out of range for mask ",
                                       shape_repr(mk.shape()));
  }
  std::int64_t const q = mk.dim(2), k = mk.dim(3);
  rows.reserve(static_cast<std::size_t>(q));
  for (std::int64_t i = 0; i < q; ++i) rows.push_back(detail::row_from_bools(k == 0 ? nullptr : &mk.at(batch, head, i, 0), k));
  return rows;
}

/// FlashInfer's ragged batch with a custom mask: request b has qo_indptr[b+1] - qo_indptr[b] query
/// tokens and kv_indptr[b+1] - kv_indptr[b] kv tokens; its [qo_len][kv_len] mask (1 = attend) is
/// flattened row-major and packed LSB-first into bytes, each request starting on a byte boundary at
/// mask_indptr[b] (FlashInfer's segment_packbits(..., bitorder="little")).
struct FlashInferMask {
  std::vector<std::int32_t> qo_indptr;     // [batch + 1]
  std::vector<std::int32_t> kv_indptr;     // [batch + 1]
  std::vector<std::uint8_t> packed_mask;   // [mask_indptr.back()] bytes
  std::vector<std::int32_t> mask_indptr;   // [batch + 1] byte offsets
};

/// Every batch row is one request. With trim_padding, a request keeps only the span from its first to
/// its last valid query (a row with any True) and kv token (a column with any True); otherwise the full
/// q_len x kv_len. Uses head `head` of the mask.
[[nodiscard]] inline FlashInferMask to_flashinfer_mask(MaskInfo const& m, bool trim_padding = false, std::int64_t head = 0) {
  BoolTensor mk = get_or_compute_attention_mask(m, DType::bool_).to_bool();
  if (mk.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>("to_flashinfer_mask: mask must be 4D, got shape ", shape_repr(mk.shape()));
  }
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  if (head < 0 || head >= h) piecrust::detail::fail<OutOfRange>("to_flashinfer_mask: head = ", head, " not in [0, ", h, ")");
  FlashInferMask out;
  out.qo_indptr.push_back(0);
  out.kv_indptr.push_back(0);
  out.mask_indptr.push_back(0);
  for (std::int64_t bb = 0; bb < b; ++bb) {
    std::int64_t qs = 0, qe = q, ks = 0, ke = k;
    if (trim_padding) {
      qs = q;
      qe = 0;
      ks = k;
      ke = 0;
      for (std::int64_t i = 0; i < q; ++i)
        for (std::int64_t j = 0; j < k; ++j)
          if (mk.at(bb, head, i, j)) {
            qs = std::min(qs, i);
            qe = std::max(qe, i + 1);
            ks = std::min(ks, j);
            ke = std::max(ke, j + 1);
          }
      if (qe <= qs || ke <= ks) qs = qe = ks = ke = 0;
    }
    std::int64_t const ql = qe - qs, kl = ke - ks;
    out.qo_indptr.push_back(out.qo_indptr.back() + static_cast<std::int32_t>(ql));
    out.kv_indptr.push_back(out.kv_indptr.back() + static_cast<std::int32_t>(kl));
    std::size_t const base = out.packed_mask.size();
    std::size_t const nbits = static_cast<std::size_t>(ql * kl);
    out.packed_mask.resize(base + (nbits + 7) / 8, 0);
    std::size_t bit = 0;
    for (std::int64_t i = qs; i < qe; ++i)
      for (std::int64_t j = ks; j < ke; ++j, ++bit)
        if (mk.at(bb, head, i, j)) out.packed_mask[base + bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
    out.mask_indptr.push_back(static_cast<std::int32_t>(out.packed_mask.size()));
  }
  return out;
}

/// What a (q-block, kv-block) tile holds.
enum class BlockKind : std::uint8_t { empty, partial, full };

/// For each q-block x kv-block tile of one (Q, K) pattern: empty (nothing attended; a kernel skips it),
/// full (everything attended; no mask load) or partial. Edge tiles count only their real cells.
struct BlockSparseSummary {
  std::int64_t q_len = 0;
  std::int64_t kv_len = 0;
  std::int64_t q_block = 1;
  std::int64_t kv_block = 1;
  std::int64_t num_q_blocks = 0;
  std::int64_t num_kv_blocks = 0;
  std::vector<BlockKind> kinds;  // [num_q_blocks][num_kv_blocks]

  [[nodiscard]] BlockKind kind(std::int64_t qb, std::int64_t kb) const {
    return kinds.at(static_cast<std::size_t>(qb * num_kv_blocks + kb));
  }
  [[nodiscard]] std::size_t count(BlockKind k) const {
    return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), k));
  }
  friend bool operator==(BlockSparseSummary const&, BlockSparseSummary const&) = default;
};

namespace detail {
inline BlockSparseSummary summary_shell(std::int64_t q_len, std::int64_t kv_len, std::int64_t q_block, std::int64_t kv_block) {
  if (q_block <= 0 || kv_block <= 0) {
    piecrust::detail::fail<InvalidArgument>("block_sparse_summary: q_block = ", q_block, " and kv_block = ", kv_block,
                                            " must be > 0");
  }
  BlockSparseSummary s;
  s.q_len = q_len;
  s.kv_len = kv_len;
  s.q_block = q_block;
  s.kv_block = kv_block;
  s.num_q_blocks = (q_len + q_block - 1) / q_block;
  s.num_kv_blocks = (kv_len + kv_block - 1) / kv_block;
  s.kinds.assign(static_cast<std::size_t>(s.num_q_blocks * s.num_kv_blocks), BlockKind::empty);
  return s;
}

inline void classify(BlockSparseSummary& s, std::int64_t qb, std::vector<std::int64_t> const& counts) {
  std::int64_t const rows = std::min(s.q_block, s.q_len - qb * s.q_block);
  for (std::int64_t kb = 0; kb < s.num_kv_blocks; ++kb) {
    std::int64_t const cols = std::min(s.kv_block, s.kv_len - kb * s.kv_block);
    std::int64_t const c = counts[static_cast<std::size_t>(kb)];
    s.kinds[static_cast<std::size_t>(qb * s.num_kv_blocks + kb)] =
        c == 0 ? BlockKind::empty : (c == rows * cols ? BlockKind::full : BlockKind::partial);
  }
}
}  // namespace detail

/// The summary of AttentionMask rows (row i = query i; positions past a row's end are masked), in
/// O(total runs + num_q_blocks * num_kv_blocks): each attended run adds its partial edges to two tiles
/// and its whole tiles through a difference array.
[[nodiscard]] inline BlockSparseSummary block_sparse_summary(std::span<AttentionMask const> rows, std::int64_t kv_len,
                                                             std::int64_t q_block, std::int64_t kv_block) {
  auto s = detail::summary_shell(static_cast<std::int64_t>(rows.size()), kv_len, q_block, kv_block);
  std::size_t const nk = static_cast<std::size_t>(s.num_kv_blocks);
  std::vector<std::int64_t> counts(nk), whole(nk + 1);  // [num_kv_blocks], [num_kv_blocks + 1]
  for (std::int64_t qb = 0; qb < s.num_q_blocks; ++qb) {
    std::fill(counts.begin(), counts.end(), 0);
    std::fill(whole.begin(), whole.end(), 0);
    std::int64_t const r_end = std::min(s.q_len, (qb + 1) * q_block);
    for (std::int64_t r = qb * q_block; r < r_end; ++r) {
      for (Brle::Run const run : rows[static_cast<std::size_t>(r)].bits()) {
        if (run.bit) continue;  // masked run
        std::int64_t const a = static_cast<std::int64_t>(run.begin);
        std::int64_t const e = std::min<std::int64_t>(static_cast<std::int64_t>(run.end()), kv_len);
        if (a >= e) continue;
        std::int64_t const fa = a / kv_block, la = (e - 1) / kv_block;
        if (fa == la) {
          counts[static_cast<std::size_t>(fa)] += e - a;
          continue;
        }
        counts[static_cast<std::size_t>(fa)] += (fa + 1) * kv_block - a;
        counts[static_cast<std::size_t>(la)] += e - la * kv_block;
        ++whole[static_cast<std::size_t>(fa + 1)];
        --whole[static_cast<std::size_t>(la)];
      }
    }
    std::int64_t running = 0;
    for (std::size_t kb = 0; kb < nk; ++kb) {
      running += whole[kb];
      counts[kb] += running * kv_block;
    }
    detail::classify(s, qb, counts);
  }
  return s;
}

/// The same summary from a dense (Q, K) bool pattern, cell by cell: the naive reference.
[[nodiscard]] inline BlockSparseSummary block_sparse_summary_dense(BoolTensor const& mask2d, std::int64_t q_block,
                                                                   std::int64_t kv_block) {
  if (mask2d.rank() != 2) {
    piecrust::detail::fail<InvalidArgument>("block_sparse_summary_dense: mask must be 2D (Q, K), got ", shape_repr(mask2d.shape()));
  }
  auto s = detail::summary_shell(mask2d.dim(0), mask2d.dim(1), q_block, kv_block);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(s.num_kv_blocks));
  for (std::int64_t qb = 0; qb < s.num_q_blocks; ++qb) {
    std::fill(counts.begin(), counts.end(), 0);
    for (std::int64_t i = qb * q_block; i < std::min(s.q_len, (qb + 1) * q_block); ++i)
      for (std::int64_t j = 0; j < s.kv_len; ++j) counts[static_cast<std::size_t>(j / kv_block)] += mask2d.at(i, j);
    detail::classify(s, qb, counts);
  }
  return s;
}

/// The summary of one (batch, head) of a MaskInfo, through its AttentionMask rows.
[[nodiscard]] inline BlockSparseSummary block_sparse_summary(MaskInfo const& m, std::int64_t q_block, std::int64_t kv_block,
                                                             std::int64_t batch = 0, std::int64_t head = 0) {
  auto const rows = attention_mask_rows(m, batch, head);
  auto const k = m.kv_len();
  return block_sparse_summary(rows, k.value_or(0), q_block, kv_block);
}

}  // namespace piecrust::maskinfo
