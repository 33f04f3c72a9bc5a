#pragma once
// An ejKernel MaskInfo as the attention rows of one pass: what `Forward::attention_mask(MaskInfo const&)`
// calls. Include this header where a Forward is given a MaskInfo; forward.hpp only names MaskInfo, so the
// translation units that never use one do not parse the mask_info layer.
//
// Axes: the MaskInfo's query axis is the pass's indexable inputs, in order (q_len must equal their number);
// its KV axis is the context's KV slots, cached slots first, then the pass's tokens (pending ones it prefills
// included), in order. Input i sits at slot kv_before + i and may see slots [0, kv_before + i + 1): kv_len
// must cover the slots after the pass (larger is fine while the extra columns are masked). Each row is the
// MaskInfo's row with its trailing masked bits cut, so it never reaches past what its token can see (the
// length Forward requires); a row that attends nothing (a padding query) is empty, and its token's attention
// output is 0. Positions (RoPE) are the Forward's own: input_at gives packed segments their own 0, 1, ...

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/mask_info/mask_info.hpp>
#include <piecrust/mask_info/piecrust_types.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace piecrust {

/// The rows of (batch, head) of `m` for `n_inputs` inputs placed after `kv_before` KV slots. Throws
/// InvalidArgument when q_len != n_inputs, when kv_len < kv_before + n_inputs (both numbers named), or when
/// row i attends a slot its token cannot see (a future token; the row and the slot named); OutOfRange for a
/// batch or head outside the MaskInfo.
[[nodiscard]] inline std::vector<AttentionMask> mask_info_pass_rows(MaskInfo const& m, std::size_t kv_before,
                                                                    std::size_t n_inputs, std::int64_t batch = 0,
                                                                    std::int64_t head = 0) {
  constexpr char const* op = "Forward::attention_mask(MaskInfo)";
  auto const q_len = m.q_len();
  auto const kv_len = m.kv_len();
  if (!q_len || !kv_len) {
    detail::fail<InvalidArgument>(op, ": the MaskInfo has no attention mask and no segment ids (q_len and kv_len unknown)");
  }
  if (static_cast<std::uint64_t>(*q_len) != n_inputs) {
    detail::fail<InvalidArgument>(op, ": q_len = ", *q_len, " != the pass's ", n_inputs, " inputs");
  }
  std::size_t const kv_after = kv_before + n_inputs;
  if (static_cast<std::uint64_t>(*kv_len) < kv_after) {
    detail::fail<InvalidArgument>(op, ": kv_len = ", *kv_len, " < the ", kv_after,
                                  " KV slots after the pass (", kv_before, " before its inputs + ", n_inputs, " inputs)");
  }
  std::vector<AttentionMask> rows = maskinfo::attention_mask_rows(m, batch, head);  // [n_inputs], each [kv_len]
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::size_t const visible = kv_before + i + 1;
    std::size_t end = 0;  // one past the last attended slot
    for (Brle::Run const run : rows[i].bits()) {
      if (run.bit || run.length == 0) continue;
      if (run.end() > visible) {
        detail::fail<InvalidArgument>(op, ": row ", i, " attends KV slot ", run.begin > visible ? run.begin : visible,
                                      ", but input ", i, " sees only slots [0, ", visible, ") (a future token)");
      }
      end = run.end();
    }
    if (end < rows[i].size()) rows[i] = AttentionMask(rows[i].bits().slice(0, end));
  }
  return rows;
}

}  // namespace piecrust
