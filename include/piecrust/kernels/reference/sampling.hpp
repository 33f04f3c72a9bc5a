#pragma once
// Naive double-precision references of sampling's filtered distributions and of the probes: a full
// sort of the vocabulary, then the definitions of SamplingParams applied literally.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <span>
#include <vector>

#include "piecrust/core/logit_mask.hpp"
#include "piecrust/kernels/logit_edits.hpp"
#include "piecrust/kernels/sampling_params.hpp"

namespace piecrust::reference {

/// Allowed ids sorted by the token order (logit descending, id ascending).
inline std::vector<std::uint32_t> token_order(std::span<float const> logits, LogitMask const& mask) {
  std::vector<std::uint32_t> ids;
  for (std::uint32_t i = 0; i < logits.size(); ++i) {
    if (mask.allows(i)) ids.push_back(i);
  }
  std::stable_sort(ids.begin(), ids.end(), [&](std::uint32_t a, std::uint32_t b) { return logits[a] > logits[b]; });
  return ids;
}

/// The exact distribution a sampler draws from: p[id] (0 for ids it never returns).
inline std::vector<double> filtered_distribution(std::span<float const> logits, SamplingParams const& p, LogitMask const& mask) {
  std::vector<double> dist(logits.size(), 0.0);
  std::vector<std::uint32_t> const order = token_order(logits, mask);
  if (p.kind == SamplingKind::greedy) {
    dist[order.front()] = 1.0;
    return dist;
  }
  double const t = p.effective_temperature();
  double const lmax = logits[order.front()];
  auto w = [&](std::uint32_t id) { return std::exp((logits[id] - lmax) / t); };
  std::vector<std::uint32_t> kept = order;
  if (p.kind == SamplingKind::top_k || p.kind == SamplingKind::top_k_top_p) {
    kept.resize(std::min<std::size_t>(kept.size(), p.top_k));
  }
  if (p.kind == SamplingKind::top_p || p.kind == SamplingKind::top_k_top_p) {
    double total = 0;
    for (auto id : kept) total += w(id);
    double cum = 0;
    std::size_t n = 0;
    while (n < kept.size() && cum < p.top_p * total) cum += w(kept[n++]);
    kept.resize(std::max<std::size_t>(n, 1));
  }
  if (p.kind == SamplingKind::min_p || (p.kind == SamplingKind::top_k_top_p && p.min_p > 0.0f)) {
    std::erase_if(kept, [&](std::uint32_t id) { return (logits[id] - lmax) / t < std::log(double{p.min_p}); });
  }
  double total = 0;
  for (auto id : kept) total += w(id);
  for (auto id : kept) dist[id] = w(id) / total;
  return dist;
}

/// The logits a row samples from, literally as llama.cpp's samplers apply them: first the logit bias
/// (l += bias), then, for each id seen c > 0 times in the last penalties.last_n recent tokens,
/// l = l > 0 ? l / repeat : l * repeat, then l -= c * frequency + presence.
inline std::vector<float> penalized_logits(std::span<float const> logits, SamplingParams const& p, SampleRowInputs const& in) {
  std::vector<float> l(logits.begin(), logits.end());
  for (LogitBias const& b : in.logit_bias) l[b.id] = l[b.id] + b.bias;
  Penalties const& pen = p.penalties;
  if (!pen.active()) return l;
  std::map<std::uint32_t, std::size_t> seen;
  std::size_t const n = std::min<std::size_t>(pen.last_n, in.recent.size());
  for (std::size_t j = in.recent.size() - n; j < in.recent.size(); ++j) ++seen[in.recent[j]];
  for (auto const& [id, c] : seen) {
    float x = l[id];
    if (x > 0.0f) {
      x = x / pen.repeat;
    } else {
      x = x * pen.repeat;
    }
    x = x - (static_cast<float>(c) * pen.frequency + pen.presence);
    l[id] = x;
  }
  return l;
}

/// filtered_distribution of the penalized logits.
inline std::vector<double> filtered_distribution(std::span<float const> logits, SamplingParams const& p, LogitMask const& mask,
                                                 SampleRowInputs const& in) {
  std::vector<float> const l = penalized_logits(logits, p, in);
  return filtered_distribution(l, p, mask);
}

/// softmax(logits / T) over the allowed ids (0 elsewhere).
inline std::vector<double> softmax(std::span<float const> logits, double temperature, LogitMask const& mask) {
  SamplingParams p = SamplingParams::with_temperature(Temperature{static_cast<float>(temperature)});
  return filtered_distribution(logits, p, mask);
}

/// Entropy in nats of softmax(logits / T) over the allowed ids.
inline double entropy(std::span<float const> logits, double temperature, LogitMask const& mask) {
  double h = 0;
  for (double const q : softmax(logits, temperature, mask)) {
    if (q > 0) h -= q * std::log(q);
  }
  return h;
}

}  // namespace piecrust::reference
