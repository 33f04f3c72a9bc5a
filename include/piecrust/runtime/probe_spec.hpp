#pragma once
// Probes: what a forward pass reads at a position without choosing a token (Pie's Logits, Distribution,
// Logprob, Logprobs, Entropy). Probes read the model's raw distribution; the pass's LogitMask applies to
// samplers only.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace piecrust {

/// The raw logits row, [vocab] f32.
struct Logits {};
/// The top-k of softmax(logits / temperature), ids and probabilities in descending order; k = 0: the whole
/// vocabulary.
struct Distribution {
  float temperature = 1.0f;
  std::size_t k = 0;
};
/// log p(id) at temperature 1.
struct Logprob {
  std::uint32_t id = 0;
};
/// log p(id) for each id, at temperature 1.
struct Logprobs {
  std::vector<std::uint32_t> ids;
};
/// Entropy of softmax(logits / temperature), in nats.
struct Entropy {
  float temperature = 1.0f;
};

}  // namespace piecrust
