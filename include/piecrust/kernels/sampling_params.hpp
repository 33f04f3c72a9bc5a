#pragma once
// SamplingParams: what one row's sampler does, and the exact distribution it samples from.

#include <cmath>
#include <cstdint>
#include <string_view>

#include "piecrust/core/error.hpp"

namespace piecrust {

enum class SamplingKind : std::uint8_t { greedy, temperature, top_k, top_p, min_p, top_k_top_p, multinomial };

[[nodiscard]] constexpr std::string_view sampling_kind_name(SamplingKind k) noexcept {
  switch (k) {
    case SamplingKind::greedy: return "greedy";
    case SamplingKind::temperature: return "temperature";
    case SamplingKind::top_k: return "top_k";
    case SamplingKind::top_p: return "top_p";
    case SamplingKind::min_p: return "min_p";
    case SamplingKind::top_k_top_p: return "top_k_top_p";
    case SamplingKind::multinomial: return "multinomial";
  }
  return "unknown";
}

/// One row's sampler. The filtered distribution, after the row's LogitMask (forbidden ids never
/// count), with tokens ordered by logit descending then id ascending (deterministic ties):
///  * greedy: the first token of that order;
///  * multinomial: softmax(logits) (temperature 1); temperature: softmax(logits / temperature);
///  * top_k: the first k tokens, renormalized; top_p: the shortest prefix of the order whose mass
///    reaches top_p (at least one token); top_k_top_p: top_p applied to the top_k set;
///  * min_p: tokens with probability >= min_p * (largest probability).
/// The filters act on softmax(logits / temperature). The sample is the inverse CDF, walking the kept
/// ids in increasing id order, at u = uniform_from_key(key) (Philox): reproducible from (seed, row, step).
struct SamplingParams {
  SamplingKind kind = SamplingKind::greedy;
  float temperature = 1.0f;
  std::uint32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;

  static constexpr SamplingParams greedy() noexcept { return {}; }
  static constexpr SamplingParams multinomial() noexcept { return {SamplingKind::multinomial, 1.0f, 0, 1.0f, 0.0f}; }
  static constexpr SamplingParams with_temperature(float t) noexcept { return {SamplingKind::temperature, t, 0, 1.0f, 0.0f}; }
  static constexpr SamplingParams top_k_of(std::uint32_t k, float t = 1.0f) noexcept { return {SamplingKind::top_k, t, k, 1.0f, 0.0f}; }
  static constexpr SamplingParams top_p_of(float p, float t = 1.0f) noexcept { return {SamplingKind::top_p, t, 0, p, 0.0f}; }
  static constexpr SamplingParams min_p_of(float p, float t = 1.0f) noexcept { return {SamplingKind::min_p, t, 0, 1.0f, p}; }
  static constexpr SamplingParams top_k_top_p_of(std::uint32_t k, float p, float t = 1.0f) noexcept {
    return {SamplingKind::top_k_top_p, t, k, p, 0.0f};
  }

  /// The temperature the kernels use (1 for multinomial and greedy).
  [[nodiscard]] constexpr float effective_temperature() const noexcept {
    return (kind == SamplingKind::multinomial || kind == SamplingKind::greedy) ? 1.0f : temperature;
  }

  /// Throws InvalidArgument naming the row and the bad field.
  void validate(std::string_view op, std::size_t row) const {
    switch (kind) {
      case SamplingKind::greedy:
      case SamplingKind::temperature:
      case SamplingKind::top_k:
      case SamplingKind::top_p:
      case SamplingKind::min_p:
      case SamplingKind::top_k_top_p:
      case SamplingKind::multinomial: break;
      default: detail::fail<InvalidArgument>(op, ": params[", row, "].kind = ", static_cast<int>(kind), " is unknown");
    }
    if (kind != SamplingKind::greedy && kind != SamplingKind::multinomial && !(temperature > 0.0f && std::isfinite(temperature))) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].temperature = ", temperature, " must be finite and > 0 (",
                                    sampling_kind_name(kind), "; use greedy for temperature 0)");
    }
    if ((kind == SamplingKind::top_k || kind == SamplingKind::top_k_top_p) && top_k == 0) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].top_k = 0 must be >= 1");
    }
    if ((kind == SamplingKind::top_p || kind == SamplingKind::top_k_top_p) && !(top_p > 0.0f && top_p <= 1.0f)) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].top_p = ", top_p, " must be in (0, 1]");
    }
    if (kind == SamplingKind::min_p && !(min_p >= 0.0f && min_p <= 1.0f)) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].min_p = ", min_p, " must be in [0, 1]");
    }
  }
};

}  // namespace piecrust
