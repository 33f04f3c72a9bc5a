#pragma once
// Constraint: restricts what a generation may sample, one step at a time.
//
//   constraint.mask()          -> LogitMask of the ids allowed next (1 = allowed; empty = anything)
//   constraint.advance(id)     -> record that `id` was sampled
// Several constraints apply at once by ANDing their masks (`combined_mask`). Samplers, whatever their kind,
// only ever see ids the mask allows.

#include <piecrust/core/logit_mask.hpp>

#include <concepts>
#include <cstdint>

namespace piecrust {

template <class C>
concept Constraint = requires(C& c, C const& cc, std::uint32_t id) {
  { cc.mask() } -> std::convertible_to<LogitMask>;
  c.advance(id);
};

/// The AND of every constraint's current mask.
template <Constraint... Cs>
LogitMask combined_mask(Cs const&... constraints) {
  LogitMask out;
  ((out &= constraints.mask()), ...);
  return out;
}

}  // namespace piecrust
