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

/// Strong types for the sampler arguments, so that Pie's argument order `(temperature, p)` and piecrust's
/// `(p, temperature)` can never be swapped silently: each wraps its value explicitly (`TopP{0.9f}`), and a
/// plain number converts to none of them.
struct Temperature {
  float value;
  constexpr explicit Temperature(float v) noexcept : value(v) {}
};
struct TopP {
  float value;
  constexpr explicit TopP(float v) noexcept : value(v) {}
};
struct MinP {
  float value;
  constexpr explicit MinP(float v) noexcept : value(v) {}
};
struct TopK {
  std::uint32_t value;
  constexpr explicit TopK(std::uint32_t v) noexcept : value(v) {}
};

/// Penalties on the ids seen in a row's recent tokens (its last `last_n`, prompt included), applied to the
/// logits before every filter and before temperature, as llama.cpp's penalties sampler applies them
/// (src/llama-sampling.cpp): for an id seen c > 0 times,
///   l = l > 0 ? l / repeat : l * repeat;   then   l -= c * frequency + presence
/// (presence and frequency as OpenAI's API defines them). Defaults: no penalty.
struct Penalties {
  float repeat = 1.0f;          // > 0; 1 = none
  float presence = 0.0f;        // finite
  float frequency = 0.0f;       // finite
  std::uint32_t last_n = 64;    // how many of the newest tokens count (0: none)

  [[nodiscard]] constexpr bool active() const noexcept {
    return last_n > 0 && (repeat != 1.0f || presence != 0.0f || frequency != 0.0f);
  }
};

/// Adds `bias` to the logit of `id` before the penalties (OpenAI's logit_bias; llama.cpp applies its
/// logit-bias sampler first too). -inf bans the id.
struct LogitBias {
  std::uint32_t id;
  float bias;
};

/// One row's sampler. The filtered distribution, after the row's LogitMask (forbidden ids never
/// count), with tokens ordered by logit descending then id ascending (deterministic ties):
///  * greedy: the first token of that order;
///  * multinomial: softmax(logits) (temperature 1); temperature: softmax(logits / temperature);
///  * top_k: the first k tokens, renormalized; top_p: the shortest prefix of the order whose mass
///    reaches top_p (at least one token); top_k_top_p: top_p applied to the top_k set;
///  * min_p: tokens with probability >= min_p * (largest probability); top_k_top_p with min_p > 0 keeps
///    only the tokens of its set that also pass that cut (llama.cpp's default chain: top-k, top-p, min-p).
/// The filters act on softmax(logits / temperature). The sample is the inverse CDF, walking the kept
/// ids in increasing id order, at u = uniform_from_key(key) (Philox): reproducible from (seed, row, step).
/// The logits are first adjusted by the row's logit bias and penalties (SampleRowInputs), greedy included.
struct SamplingParams {
  SamplingKind kind = SamplingKind::greedy;
  float temperature = 1.0f;
  std::uint32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  Penalties penalties{};

  static constexpr SamplingParams greedy() noexcept { return {}; }
  static constexpr SamplingParams multinomial() noexcept { return {SamplingKind::multinomial, 1.0f, 0, 1.0f, 0.0f}; }
  static constexpr SamplingParams with_temperature(Temperature t) noexcept {
    return {SamplingKind::temperature, t.value, 0, 1.0f, 0.0f};
  }
  static constexpr SamplingParams top_k_of(TopK k, Temperature t = Temperature{1.0f}) noexcept {
    return {SamplingKind::top_k, t.value, k.value, 1.0f, 0.0f};
  }
  static constexpr SamplingParams top_p_of(TopP p, Temperature t = Temperature{1.0f}) noexcept {
    return {SamplingKind::top_p, t.value, 0, p.value, 0.0f};
  }
  static constexpr SamplingParams min_p_of(MinP p, Temperature t = Temperature{1.0f}) noexcept {
    return {SamplingKind::min_p, t.value, 0, 1.0f, p.value};
  }
  static constexpr SamplingParams top_k_top_p_of(TopK k, TopP p, Temperature t = Temperature{1.0f}) noexcept {
    return {SamplingKind::top_k_top_p, t.value, k.value, p.value, 0.0f};
  }
  static constexpr SamplingParams top_k_top_p_of(TopK k, TopP p, MinP m, Temperature t = Temperature{1.0f}) noexcept {
    return {SamplingKind::top_k_top_p, t.value, k.value, p.value, m.value};
  }
  /// The same sampler with `pen` applied first.
  [[nodiscard]] constexpr SamplingParams with_penalties(Penalties pen) const noexcept {
    SamplingParams p = *this;
    p.penalties = pen;
    return p;
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
    if ((kind == SamplingKind::min_p || kind == SamplingKind::top_k_top_p) && !(min_p >= 0.0f && min_p <= 1.0f)) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].min_p = ", min_p, " must be in [0, 1]");
    }
    if (!(penalties.repeat > 0.0f && std::isfinite(penalties.repeat))) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].penalties.repeat = ", penalties.repeat, " must be finite and > 0");
    }
    if (!std::isfinite(penalties.presence)) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].penalties.presence = ", penalties.presence, " must be finite");
    }
    if (!std::isfinite(penalties.frequency)) {
      detail::fail<InvalidArgument>(op, ": params[", row, "].penalties.frequency = ", penalties.frequency, " must be finite");
    }
  }
};

}  // namespace piecrust
