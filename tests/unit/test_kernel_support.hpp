#pragma once
// Shared helpers of the kernel tests: the space under test and the moves of test data into and out of its
// memory, seeded random inputs (never zeros), GGUF block quantizers, and tolerance checks against the
// double-precision references.
//
// The kernel tests are written once and run on every space that is built, like the runtime tests
// (tests/support/tiny_runtime.hpp): a build compiles them again with PIECRUST_TEST_SPACE_HEADER naming a
// header that defines `piecrust::testing::TestSpace` and `piecrust::testing::make_test_space()`
// (tests/kokkos/kokkos_test_space.hpp). Without it the space is Host. Inputs go to the space's memory and
// results come back through the library's own copy op, so a test never reads the space's memory directly.

#if defined(PIECRUST_TEST_SPACE_HEADER)
#include PIECRUST_TEST_SPACE_HEADER
#endif

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <type_traits>
#include <stdexcept>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::test {

/// The space under test: testing::TestSpace where PIECRUST_TEST_SPACE_HEADER names one, else Host.
#if defined(PIECRUST_TEST_SPACE_HEADER)
using Space = testing::TestSpace;
inline Space make_space() { return testing::make_test_space(); }
#else
using Space = Host;
inline Host make_space() { return Host{}; }
#endif
/// True in the host build: the condition of the checks of host-only paths (thread pool, AVX2 kernels).
inline constexpr bool space_is_host = std::is_same_v<Space, Host>;

/// A copy of `host` in the space's memory.
template <ExecutionSpace S, class T>
[[nodiscard]] Buffer<T, typename S::memory_space> upload(S const& space, std::vector<T> const& host) {
  return to_space(space, std::span<T const>(host));
}

/// n elements of the space's memory holding `fill` (written from the host, so any value, NaN included,
/// can mark what a kernel must overwrite or leave alone).
template <ExecutionSpace S, class T>
[[nodiscard]] Buffer<T, typename S::memory_space> filled(S const& space, std::size_t n, T fill) {
  return upload(space, std::vector<T>(n, fill));
}

/// The elements of `dev` (the space's memory) as a host vector.
template <ExecutionSpace S, class T, class Mem>
[[nodiscard]] std::vector<T> download(S const& space, Buffer<T, Mem> const& dev) {
  return to_host_vector(space, std::span<T const>(dev.data(), dev.size()));
}

/// A fresh seed per test run (printed by Catch on failure via INFO in the callers). PIECRUST_TEST_SEED=S
/// replays a failure: every call returns S (run the failing test case alone, e.g. by its name).
inline std::uint64_t fresh_seed() {
  static char const* const replay = std::getenv("PIECRUST_TEST_SEED");
  if (replay != nullptr) return std::strtoull(replay, nullptr, 10);
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
      default: throw std::invalid_argument("test::quantize: no quantizer for this type");
    }
  }
  return out;
}

}  // namespace piecrust::test
