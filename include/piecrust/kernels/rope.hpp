#pragma once
// rope: rotary position embedding at explicit per-token positions, with Llama-3 frequency scaling.
// Source: Su et al., "RoFormer" (2021); inv_freq[i] = theta^(-2i/rotary_dim); the Llama-3 scaling is
// transformers' _compute_llama3_parameters (modeling_rope_utils.py); pairing conventions from
// llama.cpp's ggml_rope (NORM mode: adjacent pairs, used for GGUF Llama models whose Q/K weights the
// converter permuted) and transformers' rotate_half (NEOX mode: pairs (i, i + rotary_dim/2)).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct Rope {};
}  // namespace ops

/// Which dimensions rotate together.
enum class RopeStyle {
  adjacent_pairs,  // (x[2i], x[2i+1]): GGUF / llama.cpp Llama (LLAMA_ROPE_TYPE_NORM)
  half_split,      // (x[i], x[i + rotary_dim/2]): Hugging Face rotate_half, GPT-NeoX
};

/// Llama-3 ("llama3" rope_type) frequency scaling. factor <= 1 disables it.
struct Llama3RopeScaling {
  float factor = 1.0f;              // 8 for Llama 3.1
  float low_freq_factor = 1.0f;     // 1 for Llama 3.1
  float high_freq_factor = 4.0f;    // 4 for Llama 3.1
  std::uint32_t original_max_position = 8192;
  [[nodiscard]] constexpr bool enabled() const noexcept { return factor > 1.0f; }
};

struct RopeParams {
  float theta = 10000.0f;
  RopeStyle style = RopeStyle::adjacent_pairs;
  std::size_t rotary_dim = 0;  // dimensions rotated from the start of each head; 0 = the whole head
  Llama3RopeScaling llama3{};
};

namespace detail {
/// inv_freq[i] for i < rotary_dim / 2, in double, Llama-3 scaling applied. The one place the
/// frequencies are defined; every backend and the reference use it.
inline std::vector<double> rope_inv_freq(RopeParams const& p, std::size_t rotary_dim) {
  std::vector<double> inv(rotary_dim / 2);  // [rotary_dim / 2]
  for (std::size_t i = 0; i < inv.size(); ++i) {
    double f = std::pow(static_cast<double>(p.theta), -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    if (p.llama3.enabled()) {
      double const old_len = p.llama3.original_max_position;
      double const low_wavelen = old_len / p.llama3.low_freq_factor;
      double const high_wavelen = old_len / p.llama3.high_freq_factor;
      double const wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f = f / p.llama3.factor;
      } else if (wavelen >= high_wavelen) {
        double const smooth = (old_len / wavelen - p.llama3.low_freq_factor) /
                              (p.llama3.high_freq_factor - p.llama3.low_freq_factor);
        f = (1.0 - smooth) * f / p.llama3.factor + smooth * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

/// Checks rope's arguments for `tokens` tokens of heads of `head_dim`; returns the rotary dimension.
inline std::size_t check_rope(char const* op, std::size_t tokens, std::size_t head_dim,
                              std::span<std::uint32_t const> positions, RopeParams const& params) {
  check_extent(op, "positions.size()", positions.size(), tokens);
  std::size_t const rotary_dim = params.rotary_dim == 0 ? head_dim : params.rotary_dim;
  if (rotary_dim % 2 != 0 || rotary_dim > head_dim) {
    fail<InvalidArgument>(op, ": rotary_dim = ", rotary_dim, " must be even and <= head_dim = ", head_dim);
  }
  if (!(params.theta > 0.0f)) fail<InvalidArgument>(op, ": theta = ", params.theta, " must be > 0");
  if (params.llama3.enabled() && !(params.llama3.high_freq_factor > params.llama3.low_freq_factor)) {
    fail<InvalidArgument>(op, ": llama3.high_freq_factor = ", params.llama3.high_freq_factor,
                          " must be > low_freq_factor = ", params.llama3.low_freq_factor);
  }
  return rotary_dim;
}
}  // namespace detail

/// Rotates x in place: token t rotates by angle positions[t] * inv_freq[i] on pair i of every head.
///   x         [tokens][heads][head_dim]
///   positions [tokens]
/// Throws InvalidArgument for odd or oversized rotary_dim, theta <= 0, or a positions length mismatch.
template <ExecutionSpace S>
void rope(S const& space, ShapedView<float, 3> x, std::span<std::uint32_t const> positions, RopeParams const& params = {}) {
  static_assert(HasKernel<ops::Rope, S>,
                "piecrust::rope: this execution space does not implement op Rope "
                "(no KernelImpl<ops::Rope, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Rope, S>) {
    std::size_t const rotary_dim = detail::check_rope("rope", x.extent(0), x.extent(2), positions, params);
    KernelImpl<ops::Rope, S>::run(space, x, positions, params, rotary_dim);
  }
}

}  // namespace piecrust
