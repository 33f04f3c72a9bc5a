#pragma once
// SamplerSpec: what picks the token at a sampled position — one of the built-in samplers (run by the sampling
// kernel, after the pass's LogitMask) or a user type modelling the Sampler concept (called with the filtered
// full distribution, ids in descending probability).
//
// Built-ins (Pie's names): greedy (argmax), multinomial, top_p, top_k, min_p, top_k_top_p, and the reasoning
// preset top_k_top_p(k = 20, p = 0.95) at temperature 0.6. Randomness is Philox-keyed by (seed, context,
// step), so a program's tokens do not depend on what else the engine batches with it.

#include <piecrust/kernels/sampling_params.hpp>
#include <piecrust/runtime/sampler_concept.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>

namespace piecrust {

class SamplerSpec {
 public:
  using CustomFn = std::function<std::uint32_t(std::span<std::uint32_t const>, std::span<float const>)>;

  /// A built-in sampler. Greedy by default.
  SamplerSpec(SamplingParams params = SamplingParams::greedy()) : params_(params) {}  // NOLINT: implicit by design

  /// A user sampler (anything modelling Sampler). It is copied into the spec.
  template <Sampler S>
  static SamplerSpec custom(S sampler) {
    SamplerSpec spec;
    auto shared = std::make_shared<S>(std::move(sampler));
    spec.custom_ = [shared](std::span<std::uint32_t const> ids, std::span<float const> probs) {
      return sample_with(*shared, ids, probs);
    };
    return spec;
  }

  [[nodiscard]] bool is_custom() const noexcept { return static_cast<bool>(custom_); }
  [[nodiscard]] SamplingParams const& params() const noexcept { return params_; }
  [[nodiscard]] CustomFn const& custom_fn() const noexcept { return custom_; }

 private:
  SamplingParams params_;
  CustomFn custom_;
};

namespace samplers {
inline SamplerSpec greedy() { return SamplingParams::greedy(); }
inline SamplerSpec multinomial() { return SamplingParams::multinomial(); }
inline SamplerSpec temperature(float t) { return SamplingParams::with_temperature(t); }
inline SamplerSpec top_k(std::uint32_t k, float t = 1.0f) { return SamplingParams::top_k_of(k, t); }
inline SamplerSpec top_p(float p, float t = 1.0f) { return SamplingParams::top_p_of(p, t); }
inline SamplerSpec min_p(float p, float t = 1.0f) { return SamplingParams::min_p_of(p, t); }
inline SamplerSpec top_k_top_p(std::uint32_t k, float p, float t = 1.0f) { return SamplingParams::top_k_top_p_of(k, p, t); }
/// Pie's reasoning preset: temperature 0.6, top-k 20, top-p 0.95.
inline SamplerSpec reasoning() { return SamplingParams::top_k_top_p_of(20, 0.95f, 0.6f); }
}  // namespace samplers

}  // namespace piecrust
