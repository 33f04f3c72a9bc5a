#pragma once
// visualize (upstream's MaskInfo.visualize) and its text rendering, byte for byte as upstream: blocks
// of the (Q, K) slice are classified empty / partial / full ("  ", "░░" or "..", "██" or "##"),
// optionally downsampled to fit max_rows x max_cols, with segment-id labels (PAD = -1, MIX/?? = -2: a
// real id of -2 shows as mixed).

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/conversions.hpp"
#include "piecrust/mask_info/debug.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/representations.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

/// visualize's block_size: an int (square blocks) or a (q_block, kv_block) pair.
struct BlockSize {
  std::int64_t q = 32;
  std::int64_t kv = 32;
  BlockSize() = default;
  BlockSize(std::int64_t both) : q(both), kv(both) {}                  // NOLINT: implicit like Python
  BlockSize(std::int64_t q_block, std::int64_t kv_block) : q(q_block), kv(kv_block) {}
};

/// The keyword arguments of visualize (upstream's MaskInfo.visualize), with upstream's defaults.
struct VisualizeOptions {
  BlockSize block_size{32};
  std::int64_t batch = 0;
  std::int64_t head = 0;
  bool fit_in_screen = true;
  std::int64_t max_rows = 32;
  std::int64_t max_cols = 64;
  std::string charset = "unicode";
  bool show_segments = true;
  bool return_str = false;
};

namespace detail {

inline std::vector<std::int32_t> block_labels(std::vector<std::int32_t> ids, std::int64_t block) {
  std::size_t const b = static_cast<std::size_t>(block);
  std::size_t const pad = (b - ids.size() % b) % b;
  ids.insert(ids.end(), pad, -1);
  std::vector<std::int32_t> out(ids.size() / b);  // [num_blocks]
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::int32_t const first = ids[k * b];
    bool same = true;
    for (std::size_t i = 1; i < b && same; ++i) same = ids[k * b + i] == first;
    out[k] = same ? first : -2;
  }
  return out;
}

inline std::string two_char(std::int32_t label) {
  if (label == -1) return "  ";
  if (label == -2) return "??";
  std::int64_t const m = ((static_cast<std::int64_t>(label) % 100) + 100) % 100;  // Python modulo
  char buf[4];
  buf[0] = static_cast<char>('0' + m / 10);
  buf[1] = static_cast<char>('0' + m % 10);
  buf[2] = 0;
  return buf;
}

inline std::string left_label(std::int32_t label, std::size_t width) {
  std::string s = label == -1 ? "PAD" : label == -2 ? "MIX" : std::to_string(label);
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

}  // namespace detail

/// Renders one (Q, K) bool slice (row-major in `attn`) with optional per-token q / kv ids.
/// `mask_shape` is the full 4-D shape printed in the header.
[[nodiscard]] inline std::string render_mask(std::vector<std::uint8_t> const& attn, std::int64_t q_len, std::int64_t kv_len,
                                             Shape const& mask_shape, std::optional<std::vector<std::int32_t>> q_ids,
                                             std::optional<std::vector<std::int32_t>> kv_ids,
                                             VisualizeOptions const& o) {
  std::int64_t const qb = std::max<std::int64_t>(o.block_size.q, 1);
  std::int64_t const kb = std::max<std::int64_t>(o.block_size.kv, 1);
  std::int64_t const nrb = (q_len + qb - 1) / qb;
  std::int64_t const ncb = (kv_len + kb - 1) / kb;
  // [nrb][ncb] fraction of True cells (padding cells count as False), float32 as upstream.
  std::vector<float> ratio(static_cast<std::size_t>(nrb * ncb), 0.0f);
  {
    std::vector<std::int64_t> counts(ratio.size(), 0);  // [nrb][ncb]
    for (std::int64_t i = 0; i < q_len; ++i) {
      for (std::int64_t j = 0; j < kv_len; ++j) {
        if (attn[static_cast<std::size_t>(i * kv_len + j)]) ++counts[static_cast<std::size_t>((i / qb) * ncb + j / kb)];
      }
    }
    float const area = static_cast<float>(static_cast<double>(qb * kb));
    for (std::size_t k = 0; k < ratio.size(); ++k) ratio[k] = static_cast<float>(counts[k]) / area;
  }
  auto classify = [](float r, float eps) { return r >= 1.0f - eps ? 2 : (r <= eps ? 0 : 1); };
  std::int64_t rows = nrb, cols = ncb;
  std::vector<int> cls(ratio.size());  // [rows][cols]
  for (std::size_t k = 0; k < ratio.size(); ++k) cls[k] = classify(ratio[k], 1e-8f);

  std::optional<std::vector<std::int32_t>> ql, kl;
  if (o.show_segments && q_ids && kv_ids) {
    ql = detail::block_labels(*q_ids, qb);
    kl = detail::block_labels(*kv_ids, kb);
  }
  if (o.fit_in_screen) {
    if (o.max_rows <= 0 || o.max_cols <= 0) {
      piecrust::detail::fail<InvalidArgument>("visualize: max_rows = ", o.max_rows, " and max_cols = ", o.max_cols,
                                              " must be positive");
    }
    std::int64_t const rs = std::max<std::int64_t>((nrb + o.max_rows - 1) / o.max_rows, 1);
    std::int64_t const cs = std::max<std::int64_t>((ncb + o.max_cols - 1) / o.max_cols, 1);
    if (rs > 1 || cs > 1) {
      std::int64_t const nr = (nrb + rs - 1) / rs, nc = (ncb + cs - 1) / cs;
      std::vector<int> down(static_cast<std::size_t>(nr * nc));  // [nr][nc]
      for (std::int64_t r = 0; r < nr; ++r) {
        for (std::int64_t c = 0; c < nc; ++c) {
          float sum = 0.0f;
          for (std::int64_t a = 0; a < rs; ++a) {
            for (std::int64_t b = 0; b < cs; ++b) {
              std::int64_t const rr = r * rs + a, cc = c * cs + b;
              if (rr < nrb && cc < ncb) sum += ratio[static_cast<std::size_t>(rr * ncb + cc)];
            }
          }
          float const mean = sum / static_cast<float>(rs * cs);
          down[static_cast<std::size_t>(r * nc + c)] = classify(mean, 1e-6f);
        }
      }
      cls = std::move(down);
      rows = nr;
      cols = nc;
      if (ql && kl) {
        if (rs > 1) ql = detail::block_labels(*ql, rs);
        if (cs > 1) kl = detail::block_labels(*kl, cs);
      }
    }
  }
  bool const ascii = o.charset == "ascii";
  auto glyph = [ascii](int c) -> char const* {
    if (c == 0) return "  ";
    if (c == 1) return ascii ? ".." : "\xe2\x96\x91\xe2\x96\x91";
    return ascii ? "##" : "\xe2\x96\x88\xe2\x96\x88";
  };
  std::size_t const lw = o.show_segments ? 6 : 0;
  std::string const top(static_cast<std::size_t>(2 * (rows > 0 ? cols : 0)), '=');
  std::ostringstream out;
  out << "Attention mask (batch=" << o.batch << ", head=" << o.head << ") block=(" << qb << 'x' << kb
      << ") mask_shape=" << shape_repr(mask_shape) << '\n';
  if (o.show_segments && kl && cols > 0) {
    out << std::string(lw + 3, ' ');
    for (auto const l : *kl) out << detail::two_char(l);
    out << '\n';
  }
  out << std::string(lw, ' ') << "  " << top << "  \n";
  for (std::int64_t r = 0; r < rows; ++r) {
    if (o.show_segments && ql) {
      if (static_cast<std::size_t>(r) >= ql->size()) {  // ids shorter than the mask: IndexError upstream
        piecrust::detail::fail<OutOfRange>("visualize: q segment ids give ", ql->size(), " block labels for ", rows,
                                           " block rows");
      }
      out << detail::left_label((*ql)[static_cast<std::size_t>(r)], lw) << ' ';
    } else {
      out << std::string(lw, ' ');
    }
    out << "||";
    for (std::int64_t c = 0; c < cols; ++c) out << glyph(cls[static_cast<std::size_t>(r * cols + c)]);
    out << "||\n";
  }
  out << std::string(lw, ' ') << "  " << top << "  \n";
  out << "Legend mask: full='\xe2\x96\x88\xe2\x96\x88'/##, partial='\xe2\x96\x91\xe2\x96\x91'/.., empty='  '\n";
  if (o.show_segments) out << "Legend seg: left=Q block ID, top=KV block ID, PAD=-1, MIX=??\n";
  return out.str();
}

/// visualize (upstream's MaskInfo.visualize): the block rendering of one (batch, head) as text; returned
/// when return_str, else printed (plus a newline, like Python's print) and nullopt returned.
inline std::optional<std::string> visualize(MaskInfo const& m, VisualizeOptions const& o = {}) {
  detail::trace("MaskInfo", "visualize");
  BoolTensor mk = get_or_compute_attention_mask(m, DType::bool_).to_bool();
  if (mk.rank() == 3) mk = mk.reshaped(Shape{mk.dim(0), 1, mk.dim(1), mk.dim(2)});
  if (mk.rank() != 4) {
    piecrust::detail::fail<InvalidArgument>("Visualization requires a 4D attention mask, but got ", mk.rank(),
                                            "D mask with shape ", shape_repr(mk.shape()));
  }
  std::int64_t const b = mk.dim(0), h = mk.dim(1), q = mk.dim(2), k = mk.dim(3);
  if (o.batch < 0 || o.batch >= b) {
    piecrust::detail::fail<OutOfRange>("Batch index out of range. Requested batch=", o.batch,
                                       ", but valid range is [0, ", b, ").");
  }
  if (o.head < 0 || o.head >= h) {
    piecrust::detail::fail<OutOfRange>("Head index out of range. Requested head=", o.head,
                                       ", but valid range is [0, ", h, ").");
  }
  std::vector<std::uint8_t> slice(static_cast<std::size_t>(q * k));  // [q_len][kv_len]
  if (q * k > 0) std::copy_n(&mk.at(o.batch, o.head, 0, 0), q * k, slice.begin());
  std::optional<std::vector<std::int32_t>> qi, ki;
  if (o.show_segments) {
    std::optional<QkvPair<IntTensor>> pattern{};
    auto pick = [&](std::optional<IntTensor> const& stored, bool is_q) {
      IntTensor const* ids = stored ? &*stored : nullptr;
      if (!ids) {
        if (!pattern) pattern = mask_to_segment_ids(mk, h > 1);  // pattern grouping, not cached (as upstream)
        ids = is_q ? &pattern->q : &pattern->kv;
      }
      std::int64_t const len = ids->shape().back();
      std::int64_t const row = ids->rank() == 3 ? (o.batch * ids->dim(1) + o.head) : o.batch;
      if (ids->rank() < 2 || ids->dim(0) <= o.batch || (ids->rank() == 3 && ids->dim(1) <= o.head)) {
        piecrust::detail::fail<OutOfRange>("visualize: segment ids of shape ", shape_repr(ids->shape()),
                                           " have no row for batch=", o.batch, ", head=", o.head);
      }
      auto const first = ids->data().begin() + row * len;
      return std::vector<std::int32_t>(first, first + len);
    };
    qi = pick(m.fields().q_segment_ids, true);
    ki = pick(m.fields().kv_segment_ids, false);
  }
  std::string s = render_mask(slice, q, k, mk.shape(), std::move(qi), std::move(ki), o);
  if (o.return_str) return s;
  std::cout << s << '\n';
  return std::nullopt;
}

}  // namespace piecrust::maskinfo
