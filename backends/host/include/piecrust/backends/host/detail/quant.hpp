#pragma once
// Dequantization and quantized dot products for GGUF weight rows on the host.
// Block formats: ggml-common.h (block_q8_0, block_q4_1); dequantization as ggml-quants.c
// dequantize_row_q8_0 / dequantize_row_q4_1.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/backends/host/detail/simd.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::host::detail {

inline std::uint16_t load_u16(std::byte const* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// out[0..cols) = the f32 values of one weight row.
inline void dequantize_row(WeightType type, std::byte const* row, float* out, std::size_t cols) noexcept {
  switch (type) {
    case WeightType::f32: std::memcpy(out, row, cols * sizeof(float)); return;
    case WeightType::f16:
      for (std::size_t i = 0; i < cols; ++i) {
        std::uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        out[i] = Half::to_float(h);
      }
      return;
    case WeightType::bf16:
      for (std::size_t i = 0; i < cols; ++i) {
        std::uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        out[i] = BFloat16::to_float(h);
      }
      return;
    case WeightType::q8_0:
      for (std::size_t b = 0; b < cols / 32; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, row + b * sizeof(BlockQ8_0), sizeof blk);
        float const d = Half::to_float(blk.d);
        for (std::size_t i = 0; i < 32; ++i) out[b * 32 + i] = d * static_cast<float>(blk.qs[i]);
      }
      return;
    case WeightType::q4_1:
      for (std::size_t b = 0; b < cols / 32; ++b) {
        BlockQ4_1 blk;
        std::memcpy(&blk, row + b * sizeof(BlockQ4_1), sizeof blk);
        float const d = Half::to_float(blk.d);
        float const m = Half::to_float(blk.m);
        for (std::size_t i = 0; i < 16; ++i) {
          out[b * 32 + i] = d * static_cast<float>(blk.qs[i] & 0x0f) + m;
          out[b * 32 + i + 16] = d * static_cast<float>(blk.qs[i] >> 4) + m;
        }
      }
      return;
  }
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
