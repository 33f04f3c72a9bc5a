#pragma once
// SamplerSpec: what picks the token at a sampled position — one of the built-in samplers (run by the sampling
// kernel, after the pass's LogitMask) or a user type modelling the Sampler concept (called with the filtered
// full distribution, ids in descending probability).
//
// Built-ins (Pie's names): greedy (argmax), multinomial, top_p, top_k, min_p, top_k_top_p, and the reasoning
// preset top_k_top_p(k = 20, p = 0.95) at temperature 0.6. Randomness is Philox-keyed by (seed, context,
// step), so a program's tokens do not depend on what else the engine batches with it.
//
// Arguments are typed (Temperature, TopP, TopK, MinP; sampling_params.hpp) so that Pie's order
// `top_p(temperature, p)` and piecrust's `top_p(p, temperature)` both read right and a call with plain
// numbers does not compile: `samplers::top_p(TopP{0.9f}, Temperature{0.7f})` or
// `samplers::top_p(Temperature{0.7f}, TopP{0.9f})`. Any built-in takes logit bias and repetition /
// presence / frequency penalties on top (`with_penalties`, `with_logit_bias`), applied on the model's
// space before its filters; the engine hands the kernel each row's recent tokens from the context.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/sampling_params.hpp>
#include <piecrust/runtime/sampler_concept.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace piecrust {

class SamplerSpec {
 public:
  using CustomFn = std::function<std::uint32_t(std::span<std::uint32_t const>, std::span<float const>)>;

  /// A built-in sampler. Greedy by default.
  SamplerSpec(SamplingParams params = SamplingParams::greedy()) : params_(params) {}  // NOLINT: implicit by design

  /// A user sampler (anything modelling Sampler). It is copied into the spec. It is handed softmax(logits / T)
  /// over the ids the pass's logit mask allows, T = 1 here.
  template <Sampler S>
  static SamplerSpec custom(S sampler) {
    return custom(Temperature{1.0f}, std::move(sampler));
  }
  /// Pie's `Sampler::Custom { temperature, sampler }`: the user sampler is handed softmax(logits / t); t = 0
  /// is the limit, the single most likely allowed id with probability 1 (Pie's greedy). Throws
  /// InvalidArgument (naming the value) for a negative, infinite or NaN temperature.
  template <Sampler S>
  static SamplerSpec custom(Temperature t, S sampler) {
    if (!(t.value >= 0.0f && std::isfinite(t.value))) {
      detail::fail<InvalidArgument>("SamplerSpec::custom: temperature = ", t.value, " must be finite and >= 0");
    }
    SamplerSpec spec;
    auto shared = std::make_shared<S>(std::move(sampler));
    spec.custom_ = [shared](std::span<std::uint32_t const> ids, std::span<float const> probs) {
      return sample_with(*shared, ids, probs);
    };
    spec.custom_temperature_ = t.value;
    return spec;
  }

  [[nodiscard]] bool is_custom() const noexcept { return static_cast<bool>(custom_); }
  [[nodiscard]] SamplingParams const& params() const noexcept { return params_; }
  [[nodiscard]] CustomFn const& custom_fn() const noexcept { return custom_; }
  /// The temperature of the distribution a custom sampler is handed (0: the most likely id alone).
  [[nodiscard]] float custom_temperature() const noexcept { return custom_temperature_; }
  [[nodiscard]] std::span<LogitBias const> logit_bias() const noexcept { return logit_bias_; }

  /// This sampler with repetition / presence / frequency penalties over the context's last `pen.last_n`
  /// tokens (Penalties). Built-ins only: a custom sampler is handed the model's distribution unchanged.
  [[nodiscard]] SamplerSpec with_penalties(Penalties pen) const {
    SamplerSpec s = *this;
    s.params_.penalties = pen;
    return s;
  }
  /// This sampler with `bias` added to the listed ids' logits (distinct ids; -inf bans an id). Checked
  /// against the vocabulary when a pass uses it.
  [[nodiscard]] SamplerSpec with_logit_bias(std::vector<LogitBias> bias) const {
    SamplerSpec s = *this;
    s.logit_bias_ = std::move(bias);
    return s;
  }

 private:
  SamplingParams params_;
  CustomFn custom_;
  float custom_temperature_ = 1.0f;
  std::vector<LogitBias> logit_bias_;  // [b]
};

namespace samplers {
inline SamplerSpec greedy() { return SamplingParams::greedy(); }
inline SamplerSpec multinomial() { return SamplingParams::multinomial(); }
inline SamplerSpec temperature(Temperature t) { return SamplingParams::with_temperature(t); }
inline SamplerSpec top_k(TopK k, Temperature t = Temperature{1.0f}) { return SamplingParams::top_k_of(k, t); }
inline SamplerSpec top_k(Temperature t, TopK k) { return SamplingParams::top_k_of(k, t); }
inline SamplerSpec top_p(TopP p, Temperature t = Temperature{1.0f}) { return SamplingParams::top_p_of(p, t); }
inline SamplerSpec top_p(Temperature t, TopP p) { return SamplingParams::top_p_of(p, t); }
inline SamplerSpec min_p(MinP p, Temperature t = Temperature{1.0f}) { return SamplingParams::min_p_of(p, t); }
inline SamplerSpec min_p(Temperature t, MinP p) { return SamplingParams::min_p_of(p, t); }
inline SamplerSpec top_k_top_p(TopK k, TopP p, Temperature t = Temperature{1.0f}) {
  return SamplingParams::top_k_top_p_of(k, p, t);
}
inline SamplerSpec top_k_top_p(Temperature t, TopK k, TopP p) { return SamplingParams::top_k_top_p_of(k, p, t); }
/// top-k, then top-p, then min-p (llama.cpp's default filter chain).
inline SamplerSpec top_k_top_p(TopK k, TopP p, MinP m, Temperature t = Temperature{1.0f}) {
  return SamplingParams::top_k_top_p_of(k, p, m, t);
}
inline SamplerSpec top_k_top_p(Temperature t, TopK k, TopP p, MinP m) { return SamplingParams::top_k_top_p_of(k, p, m, t); }
/// Pie's reasoning preset: temperature 0.6, top-k 20, top-p 0.95.
inline SamplerSpec reasoning() { return SamplingParams::top_k_top_p_of(TopK{20}, TopP{0.95f}, Temperature{0.6f}); }
}  // namespace samplers

}  // namespace piecrust
