#pragma once
// Random weight matrices of any WeightType, for tests and benchmarks: every byte random except the f16
// scale fields (quant::f16_fields), which get a random sign and a magnitude in [2^-10, 2^-7), so every
// block decodes to finite weights of a moderate size. Plain types get values uniform in [-1/8, 1/8).
// Layouts are read only through kernels/quant_blocks.hpp and kernels/weight_type.hpp.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/weight_matrix.hpp"
#include "piecrust/kernels/weight_type.hpp"

namespace piecrust::testing {

/// splitmix64: fast enough to fill hundreds of MiB, and every seed gives a different stream.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) noexcept : s_(seed) {}
  std::uint64_t operator()() noexcept {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  float symmetric() noexcept { return static_cast<float>(static_cast<double>((*this)() >> 11) * 0x1p-52 - 1.0); }

 private:
  std::uint64_t s_;
};

/// An f16 bit pattern with a random sign and a magnitude in [2^-10, 2^-7) (biased exponents 5..7).
inline std::uint16_t random_moderate_f16(SplitMix64& rng) noexcept {
  std::uint64_t const r = rng();
  auto const sign = static_cast<std::uint16_t>((r & 1u) << 15);
  auto const exponent = static_cast<std::uint16_t>((5 + (r >> 1) % 3) << 10);
  auto const mantissa = static_cast<std::uint16_t>((r >> 8) & 0x3ffu);
  return static_cast<std::uint16_t>(sign | exponent | mantissa);
}

/// Fills `bytes` (whole blocks of `type`; for plain types whole elements) with random valid content.
///   bytes [n_blocks][weight_block_bytes(type)]
inline void fill_random_blocks(WeightType type, std::byte* bytes, std::size_t size, std::uint64_t seed) {
  SplitMix64 rng(seed);
  std::size_t const block = weight_block_bytes(type);
  std::size_t const n = size / block;
  if (!is_quantized(type)) {
    for (std::size_t i = 0; i < n; ++i) {
      float const v = rng.symmetric() * 0.125f;
      if (type == WeightType::f32) {
        std::memcpy(bytes + 4 * i, &v, 4);
      } else {
        std::uint16_t const h = type == WeightType::f16 ? Half::from_float(v) : BFloat16::from_float(v);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
    }
    return;
  }
  for (std::size_t i = 0; i + 8 <= size; i += 8) {
    std::uint64_t const r = rng();
    std::memcpy(bytes + i, &r, 8);
  }
  for (std::size_t i = size / 8 * 8; i < size; ++i) bytes[i] = static_cast<std::byte>(rng() & 0xffu);
  quant::HalfFields const f = quant::f16_fields(type);
  for (std::size_t b = 0; b < n; ++b) {
    for (std::size_t j = 0; j < f.count; ++j) {
      std::uint16_t const h = random_moderate_f16(rng);
      std::byte* p = bytes + b * block + f.at[j];
      p[0] = static_cast<std::byte>(h & 0xffu);  // little-endian, as GGUF stores it
      p[1] = static_cast<std::byte>(h >> 8);
    }
  }
}

/// A random weight matrix of `type` with `rows` rows of `cols` weights (cols a multiple of the block size).
struct RandomWeights {
  std::vector<std::byte> bytes;  // [rows][row_bytes]
  WeightMatrix matrix;           // reads `bytes` (a move of the struct keeps it valid)
};

inline RandomWeights random_weights(WeightType type, std::size_t rows, std::size_t cols, std::uint64_t seed) {
  RandomWeights w;
  WeightMatrix const shape{type, nullptr, rows, cols};
  w.bytes.resize(shape.size_bytes());
  fill_random_blocks(type, w.bytes.data(), w.bytes.size(), seed);
  w.matrix = WeightMatrix{type, w.bytes.data(), rows, cols};
  return w;
}

}  // namespace piecrust::testing
