#pragma once
// Argument types of MaskInfo's transforms: per-batch integers (a scalar or one value per row), window
// sizes, token types and the keyword-argument structs of the upstream methods.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/axis_name.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

/// An int or a (batch,) int array, as upstream's `offset`, `index`, `end_index`, `kv_lengths` accept.
class BatchInts {
 public:
  BatchInts(std::int64_t scalar) : values_{scalar}, scalar_(true) {}  // NOLINT: implicit like Python
  BatchInts(int scalar) : BatchInts(static_cast<std::int64_t>(scalar)) {}  // NOLINT
  BatchInts(std::vector<std::int64_t> per_batch) : values_(std::move(per_batch)), scalar_(false) {}  // NOLINT
  BatchInts(IntTensor const& t) : scalar_(t.rank() == 0) {  // NOLINT
    if (t.rank() > 1) {
      piecrust::detail::fail<InvalidArgument>("per-batch integers must be a scalar or 1D (batch,), got shape ",
                                              shape_repr(t.shape()));
    }
    values_.assign(t.data().begin(), t.data().end());
  }

  [[nodiscard]] bool is_scalar() const { return scalar_; }
  [[nodiscard]] std::vector<std::int64_t> const& values() const { return values_; }

  /// One value per batch row; throws InvalidArgument naming `what` when the length is not `batch`.
  [[nodiscard]] std::vector<std::int64_t> per_batch(std::int64_t batch, char const* what) const {
    if (scalar_) return std::vector<std::int64_t>(static_cast<std::size_t>(batch), values_.at(0));
    if (static_cast<std::int64_t>(values_.size()) != batch) {
      piecrust::detail::fail<InvalidArgument>(what, " has ", values_.size(), " values but the batch size is ", batch);
    }
    return values_;
  }

 private:
  std::vector<std::int64_t> values_;
  bool scalar_;
};

/// apply_sliding_window's window: an int w is the symmetric band [i - w, i + w] (not causal);
/// a pair is (left, right).
struct SlidingWindow {
  std::int64_t left = 0;
  std::int64_t right = 0;
  bool is_int = true;
  SlidingWindow(std::int64_t w) : left(w), right(w), is_int(true) {}  // NOLINT: implicit like Python
  SlidingWindow(int w) : SlidingWindow(static_cast<std::int64_t>(w)) {}  // NOLINT
  SlidingWindow(std::int64_t l, std::int64_t r) : left(l), right(r), is_int(false) {}
  SlidingWindow(std::pair<std::int64_t, std::int64_t> lr) : SlidingWindow(lr.first, lr.second) {}  // NOLINT
};

/// Keyword arguments of apply_sliding_window. `mode` is upstream's string: nullopt/"default" or any
/// unknown string means default (S9), "decode" needs `index`, "prefill" slices the last columns.
struct SlidingWindowOptions {
  BatchInts offset = 0;
  std::optional<std::string> mode{};
  std::optional<BatchInts> index{};
};

/// apply_token_type_ids' first argument: one (B,S) array for both sides, or (q_types, kv_types).
struct TokenTypes {
  IntTensor q;
  std::optional<IntTensor> kv{};
  TokenTypes(IntTensor both) : q(std::move(both)) {}  // NOLINT: implicit like Python
  TokenTypes(IntTensor q_types, IntTensor kv_types) : q(std::move(q_types)), kv(std::move(kv_types)) {}
};

/// Keyword arguments of apply_token_type_ids.
struct TokenTypeOptions {
  std::string combine = "union";   // "union" | "intersect" | "replace"
  std::string zero_policy = "q";   // "q" | "kv" | "both" | "none" ("q", "kv", "both" are equivalent, S10)
  std::optional<bool> update_segment_ids{};  // nullopt: false for union, true otherwise
};

/// Keyword arguments of apply_kv_lengths. Without end_index: the seed version (q window starts at
/// kv_lengths - q_len, kv ids unchanged). With end_index: the newer upstream version (q window starts
/// at end_index - q_len; kv ids at or past kv_lengths become -1).
struct KvLengthsOptions {
  std::optional<std::int64_t> q_len{};
  std::optional<BatchInts> end_index{};
  std::optional<std::int64_t> sliding_window{};
};

/// The axis-name metadata every factory accepts.
struct AxisNames {
  AxisName batch_axis_name = AxisName::of_tuple({"dp", "fsdp"});
  AxisName qheads_axis_name = AxisName("tp");
  AxisName kvheads_axis_name = AxisName("tp");  // carried, never used (as upstream)
  AxisName sequence_axis_name = AxisName("sp");
};

/// Keyword arguments of from_segments, from_attention_mask, from_cu_seqlens, from_random (factories.hpp).
struct SegmentsOptions {
  std::optional<IntTensor> q_positions{};
  std::optional<IntTensor> kv_positions{};
  bool is_attn_mask = false;  // inputs are padding masks (value != 0 is valid)
  AxisNames axes{};
};
struct AttentionMaskOptions {
  std::optional<IntTensor> q_positions{};
  std::optional<IntTensor> kv_positions{};
  bool mask_is_valid = true;  // false: True means "masked" (PyTorch convention)
  AxisNames axes{};
};
struct CuSeqlensOptions {
  std::optional<IntTensor> cu_seqlens_kv{};
  std::optional<std::int64_t> max_kv_len{};
  std::optional<IntTensor> q_positions{};
  std::optional<IntTensor> kv_positions{};
  AxisNames axes{};
};
struct RandomOptions {
  std::optional<std::int64_t> kv_len{};
  double sparsity = 0.5;
  std::uint64_t seed = 0;
  std::optional<IntTensor> q_positions{};
  std::optional<IntTensor> kv_positions{};
  AxisNames axes{};
};

}  // namespace piecrust::maskinfo
