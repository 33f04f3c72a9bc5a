#pragma once
// Checks shared by sample and the probes: rows of logits with optional per-row LogitMasks.

#include <cstddef>
#include <limits>
#include <span>
#include <string_view>

#include "piecrust/core/logit_mask.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust::detail {

inline void check_logit_masks(std::string_view op, std::size_t rows, std::size_t vocab, std::span<LogitMask const> masks) {
  if (vocab == 0) fail<InvalidArgument>(op, ": logits.extent(1) (vocab) = 0");
  if (!masks.empty()) check_extent(op, "masks.size() (rows)", masks.size(), rows);
  for (std::size_t r = 0; r < masks.size(); ++r) {
    if (masks[r].empty()) continue;
    if (masks[r].size() != vocab) {
      fail<InvalidArgument>(op, ": masks[", r, "].size() = ", masks[r].size(), ", expected vocab = ", vocab, " (or empty)");
    }
    if (masks[r].allowed_count(vocab) == 0) fail<InvalidArgument>(op, ": masks[", r, "] allows no token");
  }
}

inline void check_temperature(std::string_view op, float temperature) {
  if (!(temperature > 0.0f) || temperature == std::numeric_limits<float>::infinity()) {
    fail<InvalidArgument>(op, ": temperature = ", temperature, " must be finite and > 0");
  }
}

}  // namespace piecrust::detail
