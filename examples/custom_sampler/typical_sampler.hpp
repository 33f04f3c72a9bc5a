#pragma once
// A user-defined sampler: locally typical sampling (Meister, Pimentel, Wiher, Cotterell 2023, "Locally Typical
// Sampling", TACL; the `typical_p` of Hugging Face transformers). It keeps the tokens whose surprisal
// -log p is closest to the distribution's entropy H, smallest set first until their mass reaches `mass`,
// and samples among them in proportion to p.
//
// Any type with `sample(ids, probs) -> id` models piecrust::Sampler; SamplerSpec::custom(s) plugs it into
// Forward::sample or Context::generate. The runtime calls it with the whole filtered distribution (after the
// pass's logit mask), ids in descending probability.

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace piecrust::examples {

class TypicalSampler {
 public:
  explicit TypicalSampler(float mass = 0.9f, std::uint64_t seed = 0) : mass_(mass), rng_(seed) {}

  /// The typical set of (ids, probs): indices into `ids`, most typical first.
  [[nodiscard]] std::vector<std::size_t> typical_set(std::span<float const> probs) const {
    double entropy = 0;
    for (float const p : probs) {
      if (p > 0) entropy -= static_cast<double>(p) * std::log(static_cast<double>(p));
    }
    std::vector<std::size_t> order(probs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    auto const distance = [&](std::size_t i) {
      double const p = probs[i];
      return p > 0 ? std::abs(-std::log(p) - entropy) : std::numeric_limits<double>::infinity();
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return distance(a) < distance(b); });
    double acc = 0;
    std::size_t keep = 0;
    while (keep < order.size() && (keep == 0 || acc < mass_)) acc += probs[order[keep++]];
    order.resize(keep);
    return order;
  }

  std::uint32_t sample(std::span<std::uint32_t const> ids, std::span<float const> probs) {
    auto const set = typical_set(probs);
    std::vector<double> w;
    for (std::size_t const i : set) w.push_back(probs[i]);
    std::discrete_distribution<std::size_t> pick(w.begin(), w.end());
    return ids[set[pick(rng_)]];
  }

 private:
  float mass_;
  std::mt19937_64 rng_;
};

static_assert(Sampler<TypicalSampler>, "TypicalSampler must model piecrust::Sampler");

}  // namespace piecrust::examples
