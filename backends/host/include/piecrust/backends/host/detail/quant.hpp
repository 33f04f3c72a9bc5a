#pragma once
// Dequantization and float-activation dot products for GGUF weight rows on the host. Block layouts and
// decoding: kernels/quant_blocks.hpp.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::host::detail {

inline std::uint16_t load_u16(std::byte const* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// out[0..cols) = the f32 values of one weight row (any WeightType; layouts in kernels/quant_blocks.hpp).
inline void dequantize_row(WeightType type, std::byte const* row, float* out, std::size_t cols) noexcept {
  if (type == WeightType::f32) {
    std::memcpy(out, row, cols * sizeof(float));
    return;
  }
  quant::dequantize_row(type, reinterpret_cast<std::uint8_t const*>(row), out, cols);
}

/// sum_k x[k] * w[k] for one Q8_0 row of `cols` weights, without materializing the row.
inline float dot_q8_0(float const* x, std::byte const* row, std::size_t cols) noexcept {
  Vf acc = splat(0.0f);
  for (std::size_t b = 0; b < cols / 32; ++b) {
    std::byte const* blk = row + b * sizeof(BlockQ8_0);
    auto const* q = reinterpret_cast<std::int8_t const*>(blk + offsetof(BlockQ8_0, qs));  // read via memcpy only
    float const* xb = x + b * 32;
    Vf s = load(q) * load(xb);
    for (std::size_t j = lanes; j < 32; j += lanes) s += load(q + j) * load(xb + j);
    acc += splat(Half::to_float(load_u16(blk))) * s;
  }
  return hsum(acc);
}

/// sum_k x[k] * w[k] for one Q4_1 row: per block d * sum(q * x) + m * sum(x); xsum[b] = sum of x over
/// block b (computed once per activation row by block_sums).
inline float dot_q4_1(float const* x, float const* xsum, std::byte const* row, std::size_t cols) noexcept {
  Vf acc = splat(0.0f);
  float macc = 0.0f;
  for (std::size_t b = 0; b < cols / 32; ++b) {
    float const* xb = x + b * 32;
    std::byte const* blk = row + b * sizeof(BlockQ4_1);
    std::byte const* qs = blk + offsetof(BlockQ4_1, qs);
    Vf s = splat(0.0f);
    for (std::size_t j = 0; j < 16; j += lanes) {
      Vf low, high;
      load_nibbles(qs + j, low, high);
      s += low * load(xb + j) + high * load(xb + j + 16);
    }
    acc += splat(Half::to_float(load_u16(blk + offsetof(BlockQ4_1, d)))) * s;
    macc += Half::to_float(load_u16(blk + offsetof(BlockQ4_1, m))) * xsum[b];
  }
  return hsum(acc) + macc;
}

/// xsum[b] = sum of x over each block of 32.
inline void block_sums(float const* x, float* xsum, std::size_t cols) noexcept {
  for (std::size_t b = 0; b < cols / 32; ++b) {
    float const* xb = x + b * 32;
    Vf s = load(xb);
    for (std::size_t j = lanes; j < 32; j += lanes) s += load(xb + j);
    xsum[b] = hsum(s);
  }
}

}  // namespace piecrust::host::detail
