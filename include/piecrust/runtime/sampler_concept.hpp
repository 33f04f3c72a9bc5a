#pragma once
// The Sampler concept: a user-defined sampler picks one id from a candidate distribution.
//   sampler.sample(ids, probs) -> token id
// `ids` and `probs` have equal length; probs are the filtered, renormalized probabilities of those ids in
// descending order (Pie's custom-sampler contract: sample(ids, probs) -> id).

#include <piecrust/core/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>

namespace piecrust {

template <class S>
concept Sampler = requires(S& sampler, std::span<std::uint32_t const> ids, std::span<float const> probs) {
  { sampler.sample(ids, probs) } -> std::convertible_to<std::uint32_t>;
};

/// Runs a user sampler over a candidate distribution and checks its answer is one of the candidates.
/// Throws InvalidArgument if ids and probs differ in length or are empty, and InvalidState if the sampler
/// returns an id that was not offered.
template <Sampler S>
std::uint32_t sample_with(S& sampler, std::span<std::uint32_t const> ids, std::span<float const> probs) {
  if (ids.size() != probs.size()) {
    detail::fail<InvalidArgument>("sample_with: ids.size() = ", ids.size(), " != probs.size() = ", probs.size());
  }
  if (ids.empty()) detail::fail<InvalidArgument>("sample_with: no candidate ids");
  auto const id = static_cast<std::uint32_t>(sampler.sample(ids, probs));
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
    detail::fail<InvalidState>("sample_with: the sampler returned id ", id, ", which is not among the ", ids.size(),
                               " candidates");
  }
  return id;
}

}  // namespace piecrust
