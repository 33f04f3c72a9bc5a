#pragma once
// Shared helpers of the kernel tests: seeded random inputs (never zeros), GGUF block quantizers, and
// tolerance checks against the double-precision references.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::test {

/// A fresh seed per test run (printed by Catch on failure via INFO in the callers).
inline std::uint64_t fresh_seed() {
  static std::uint64_t const base = std::random_device{}();
  static std::uint64_t counter = 0;
  return base * 0x9e3779b97f4a7c15ull + (++counter);
}

/// n floats uniform in [lo, hi), redrawn when exactly 0.
inline std::vector<float> random_floats(std::mt19937_64& rng, std::size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) {
    do {
      x = dist(rng);
    } while (x == 0.0f);
  }
  return v;
}

/// Largest |a - b| / (atol + rtol * |b|); <= 1 means within tolerance.
template <class A, class B>
double tolerance_ratio(std::span<A const> a, std::span<B const> b, double atol, double rtol) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double const da = static_cast<double>(a[i]);
    double const db = static_cast<double>(b[i]);
    if (da == db) continue;  // equal infinities included
    if (std::isnan(da) || std::isnan(db) || std::isinf(da) || std::isinf(db)) return INFINITY;
    worst = std::max(worst, std::abs(da - db) / (atol + rtol * std::abs(db)));
  }
  return worst;
}
template <class A, class B>
double tolerance_ratio(std::vector<A> const& a, std::vector<B> const& b, double atol, double rtol) {
  return tolerance_ratio(std::span<A const>(a), std::span<B const>(b), atol, rtol);
}

/// Quantizes a [rows][cols] f32 matrix to GGUF bytes of `type` (ggml's reference quantizers:
/// quantize_row_q8_0_ref, quantize_row_q4_1_ref in ggml-quants.c).
inline std::vector<std::byte> quantize(WeightType type, std::span<float const> w, std::size_t rows, std::size_t cols) {
  WeightMatrix const shape{type, nullptr, rows, cols};
  std::vector<std::byte> out(shape.size_bytes());
  for (std::size_t r = 0; r < rows; ++r) {
    std::byte* dst = out.data() + r * shape.row_bytes();
    float const* src = w.data() + r * cols;
    switch (type) {
      case WeightType::f32: std::memcpy(dst, src, cols * 4); break;
      case WeightType::f16:
        for (std::size_t c = 0; c < cols; ++c) {
          std::uint16_t const h = Half::from_float(src[c]);
          std::memcpy(dst + 2 * c, &h, 2);
        }
        break;
      case WeightType::bf16:
        for (std::size_t c = 0; c < cols; ++c) {
          std::uint16_t const h = BFloat16::from_float(src[c]);
          std::memcpy(dst + 2 * c, &h, 2);
        }
        break;
      case WeightType::q8_0:
        for (std::size_t b = 0; b < cols / 32; ++b) {
          float amax = 0;
          for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs(src[b * 32 + i]));
          float const d = amax / 127.0f;
          float const id = d != 0 ? 1.0f / d : 0.0f;
          BlockQ8_0 blk{};
          blk.d = Half::from_float(d);
          for (std::size_t i = 0; i < 32; ++i) blk.qs[i] = static_cast<std::int8_t>(std::lround(src[b * 32 + i] * id));
          std::memcpy(dst + b * sizeof blk, &blk, sizeof blk);
        }
        break;
      case WeightType::q4_1:
        for (std::size_t b = 0; b < cols / 32; ++b) {
          float mn = src[b * 32], mx = src[b * 32];
          for (std::size_t i = 0; i < 32; ++i) {
            mn = std::min(mn, src[b * 32 + i]);
            mx = std::max(mx, src[b * 32 + i]);
          }
          float const d = (mx - mn) / 15.0f;
          float const id = d != 0 ? 1.0f / d : 0.0f;
          BlockQ4_1 blk{};
          blk.d = Half::from_float(d);
          blk.m = Half::from_float(mn);
          for (std::size_t i = 0; i < 16; ++i) {
            auto q = [&](std::size_t j) {
              return static_cast<std::uint8_t>(std::min(15L, std::lround((src[b * 32 + j] - mn) * id)));
            };
            blk.qs[i] = static_cast<std::uint8_t>(q(i) | (q(i + 16) << 4));
          }
          std::memcpy(dst + b * sizeof blk, &blk, sizeof blk);
        }
        break;
    }
  }
  return out;
}

}  // namespace piecrust::test
