#pragma once
// SampleRowInputs and LogitEdits: what a row's logit bias and penalties read (its recent tokens and bias
// list, host memory), and the sparse per-row adjustments `sample` derives from them on the host before
// dispatch. Only token ids are read on the host; the logits stay in the space's memory, and every backend
// applies the same edits to its own copy of the row (host and Kokkos: per-row scratch; Cuda: a device
// workspace), so each backend samples from the same adjusted logits.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "piecrust/config.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/kernels/sampling_params.hpp"

namespace piecrust {

/// What one row's penalties and logit bias read. Host memory, alive during the call.
struct SampleRowInputs {
  std::span<std::uint32_t const> recent;  // [n] the row's newest tokens, oldest first; the last penalties.last_n count
  std::span<LogitBias const> logit_bias;  // [b] distinct ids
};

/// One id's adjustment: l' = rep(l + bias) - sub, rep(x) = x > 0 ? x / repeat : x * repeat.
struct LogitEdit {
  std::uint32_t id;
  float bias;    // 0 when the id has no bias
  float repeat;  // 1 when the id was not seen
  float sub;     // c * frequency + presence for an id seen c > 0 times, else 0
};

PIECRUST_HOST_DEVICE inline float apply_logit_edit(LogitEdit const& e, float l) {
  float x = l + e.bias;
  x = x > 0.0f ? x / e.repeat : x * e.repeat;
  return x - e.sub;
}

/// The edits of one call, flattened: row r's are edits[offsets[r], offsets[r + 1]), ids ascending and
/// distinct. Empty offsets: no row has any.
struct LogitEdits {
  std::vector<std::uint32_t> offsets;  // [rows + 1] or empty
  std::vector<LogitEdit> edits;        // [offsets.back()]

  [[nodiscard]] bool empty() const noexcept { return edits.empty(); }
  [[nodiscard]] std::span<LogitEdit const> row(std::size_t r) const noexcept {
    if (offsets.empty()) return {};
    return std::span<LogitEdit const>(edits).subspan(offsets[r], offsets[r + 1] - offsets[r]);
  }
};

namespace detail {

/// Row r's edits appended to `out`: its bias entries and the ids of its penalty window, merged per id.
inline void append_row_edits(std::string_view op, std::size_t r, std::size_t vocab, Penalties const& pen,
                             SampleRowInputs const& in, std::vector<LogitEdit>& out) {
  std::size_t const first = out.size();
  for (std::size_t j = 0; j < in.logit_bias.size(); ++j) {
    LogitBias const& b = in.logit_bias[j];
    if (b.id >= vocab) fail<OutOfRange>(op, ": inputs[", r, "].logit_bias[", j, "].id = ", b.id, " >= vocab = ", vocab);
    if (std::isnan(b.bias) || b.bias == std::numeric_limits<float>::infinity()) {
      fail<InvalidArgument>(op, ": inputs[", r, "].logit_bias[", j, "].bias = ", b.bias, " must be finite or -inf");
    }
    out.push_back(LogitEdit{b.id, b.bias, 1.0f, 0.0f});
  }
  auto by_id = [](LogitEdit const& a, LogitEdit const& b) { return a.id < b.id; };
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), by_id);
  for (std::size_t j = first + 1; j < out.size(); ++j) {
    if (out[j].id == out[j - 1].id) fail<InvalidArgument>(op, ": inputs[", r, "].logit_bias lists id ", out[j].id, " twice");
  }
  std::size_t const biased = out.size();
  if (pen.active()) {
    std::size_t const n = std::min<std::size_t>(pen.last_n, in.recent.size());
    std::span<std::uint32_t const> const window = in.recent.last(n);
    std::vector<std::uint32_t> ids(window.begin(), window.end());
    for (std::size_t j = 0; j < ids.size(); ++j) {
      if (ids[j] >= vocab) {
        fail<OutOfRange>(op, ": inputs[", r, "].recent[", in.recent.size() - n + j, "] = ", ids[j], " >= vocab = ", vocab);
      }
    }
    std::sort(ids.begin(), ids.end());
    for (std::size_t j = 0; j < ids.size();) {
      std::size_t c = 1;
      while (j + c < ids.size() && ids[j + c] == ids[j]) ++c;
      float const sub = static_cast<float>(c) * pen.frequency + pen.presence;
      auto const hit = std::lower_bound(out.begin() + static_cast<std::ptrdiff_t>(first),
                                        out.begin() + static_cast<std::ptrdiff_t>(biased), LogitEdit{ids[j], 0, 0, 0}, by_id);
      if (hit != out.begin() + static_cast<std::ptrdiff_t>(biased) && hit->id == ids[j]) {
        hit->repeat = pen.repeat;
        hit->sub = sub;
      } else {
        out.push_back(LogitEdit{ids[j], 0.0f, pen.repeat, sub});
      }
      j += c;
    }
    std::inplace_merge(out.begin() + static_cast<std::ptrdiff_t>(first), out.begin() + static_cast<std::ptrdiff_t>(biased),
                       out.end(), by_id);
  }
}

}  // namespace detail

/// The edits of every row (inputs: [rows] or empty = none). Throws OutOfRange for an id >= vocab and
/// InvalidArgument for a repeated bias id or a NaN / +inf bias, naming the row and the entry.
[[nodiscard]] inline LogitEdits make_logit_edits(std::string_view op, std::span<SamplingParams const> params,
                                                 std::span<SampleRowInputs const> inputs, std::size_t vocab) {
  LogitEdits e;
  if (inputs.empty()) return e;
  if (inputs.size() != params.size()) {
    detail::fail<InvalidArgument>(op, ": inputs.size() (rows) = ", inputs.size(), ", expected ", params.size(), " (or 0)");
  }
  e.offsets.reserve(params.size() + 1);
  e.offsets.push_back(0);
  for (std::size_t r = 0; r < params.size(); ++r) {
    detail::append_row_edits(op, r, vocab, params[r].penalties, inputs[r], e.edits);
    if (e.edits.size() > std::numeric_limits<std::uint32_t>::max()) {
      detail::fail<LimitExceeded>(op, ": ", e.edits.size(), " logit edits exceed 2^32 - 1");
    }
    e.offsets.push_back(static_cast<std::uint32_t>(e.edits.size()));
  }
  if (e.edits.empty()) e.offsets.clear();
  return e;
}

}  // namespace piecrust
