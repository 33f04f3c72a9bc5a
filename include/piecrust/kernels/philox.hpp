#pragma once
// Philox4x32-10: the counter-based random number generator of Salmon et al., "Parallel Random Numbers:
// As Easy as 1, 2, 3" (SC'11), constants and round structure from Random123's philox.h. A draw is a
// pure function of (key, counter): no state, identical on every backend and thread.

#include <array>
#include <cstdint>

#include "piecrust/config.hpp"

namespace piecrust {

struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  static constexpr std::uint32_t m0 = 0xD2511F53u;
  static constexpr std::uint32_t m1 = 0xCD9E8D57u;
  static constexpr std::uint32_t w0 = 0x9E3779B9u;  // golden ratio
  static constexpr std::uint32_t w1 = 0xBB67AE85u;  // sqrt(3) - 1

  /// The 10-round Philox4x32 bijection of `ctr` under `key`.
  PIECRUST_HOST_DEVICE static constexpr Counter generate(Counter ctr, Key key) noexcept {
    for (int round = 0; round < 10; ++round) {
      if (round > 0) {
        key[0] += w0;
        key[1] += w1;
      }
      std::uint64_t const p0 = std::uint64_t{m0} * ctr[0];
      std::uint64_t const p1 = std::uint64_t{m1} * ctr[2];
      ctr = Counter{static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<std::uint32_t>(p1),
                    static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    }
    return ctr;
  }
};

/// The identity of one random draw: a sampler's seed, a stream (the row's identity chosen by the
/// caller, e.g. a context id, not its index in the batch) and a step (e.g. the decode step).
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint64_t row = 0;
  std::uint64_t step = 0;
};

/// A uniform double in [0, 1) with 53 random bits: Philox(key = seed, counter = (row, step)).
PIECRUST_HOST_DEVICE constexpr double uniform_from_key(SampleKey const& k) noexcept {
  Philox4x32::Counter const out = Philox4x32::generate(
      {static_cast<std::uint32_t>(k.row), static_cast<std::uint32_t>(k.row >> 32), static_cast<std::uint32_t>(k.step),
       static_cast<std::uint32_t>(k.step >> 32)},
      {static_cast<std::uint32_t>(k.seed), static_cast<std::uint32_t>(k.seed >> 32)});
  std::uint64_t const bits = ((std::uint64_t{out[0]} << 32) | out[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

}  // namespace piecrust
