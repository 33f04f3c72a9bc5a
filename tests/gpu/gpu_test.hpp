#pragma once
// A minimal test harness for the GPU tests (no Catch2: the tests are nvcc translation units and run on
// a machine with a GPU, outside ctest). Each test is a function registered with PIECRUST_GPU_TEST; any
// tests/gpu/test_*.cu file is compiled into the same executable (piecrust_gpu_tests), so more tests
// are added by adding files. The main prints every failure, then "N passed, M failed", and exits
// non-zero when a test failed. `piecrust_gpu_tests <substring>` runs only the tests whose name contains it.
//
//   PIECRUST_GPU_TEST(rms_norm_matches_host) {
//     t.check(worst <= 1.0, "rms_norm: worst tolerance ratio ", worst);   // t: piecrust::gpu_test::Test&
//   }

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iostream>

#include <piecrust/backends/cuda/copy.hpp>
#include <piecrust/backends/cuda/space.hpp>

#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace piecrust::gpu_test {

/// True in the host emulation (tests/gpu/emulation), which runs every GPU thread on one CPU core: the tests
/// use smaller sizes there.
#if defined(PIECRUST_GPU_EMULATION)
inline constexpr bool emulated = true;
#else
inline constexpr bool emulated = false;
#endif

/// What a test body gets: the space, a seeded generator (the seed is printed with every failure), and
/// check(), which records a failure with a message and lets the test continue.
class Test {
 public:
  Test(std::string name, Cuda space, std::uint64_t seed)
      : name_(std::move(name)), space_(std::move(space)), seed_(seed), rng_(seed) {}

  [[nodiscard]] Cuda const& space() const noexcept { return space_; }
  [[nodiscard]] std::mt19937_64& rng() noexcept { return rng_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  [[nodiscard]] std::size_t failures() const noexcept { return failures_; }

  template <class... Args>
  bool check(bool ok, Args const&... what) {
    ++checks_;
    if (!ok) {
      ++failures_;
      if (failures_ <= 20) {
        std::ostringstream out;
        (out << ... << what);
        std::cout << "  FAILED " << name_ << " (seed " << seed_ << "): " << out.str() << "\n";
      }
    }
    return ok;
  }

  /// n floats uniform in [lo, hi), never exactly 0.
  std::vector<float> random_floats(std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) {
      do {
        x = dist(rng_);
      } while (x == 0.0f);
    }
    return v;
  }

 private:
  std::string name_;
  Cuda space_;
  std::uint64_t seed_;
  std::mt19937_64 rng_;
  std::size_t checks_ = 0;
  std::size_t failures_ = 0;
};

using TestFn = void (*)(Test&);

struct Registered {
  char const* name;
  TestFn fn;
};

inline std::vector<Registered>& registry() {
  static std::vector<Registered> tests;
  return tests;
}

struct Registrar {
  Registrar(char const* name, TestFn fn) { registry().push_back({name, fn}); }
};

/// Largest |a - b| / (atol + rtol * |b|) over the elements (<= 1: within tolerance; equal values,
/// equal infinities included, count as 0; a NaN or a lone infinity gives +inf).
template <class A, class B>
double tolerance_ratio(std::span<A const> a, std::span<B const> b, double atol, double rtol) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double const da = static_cast<double>(a[i]);
    double const db = static_cast<double>(b[i]);
    if (da == db) continue;
    if (std::isnan(da) || std::isnan(db) || std::isinf(da) || std::isinf(db)) return INFINITY;
    double const r = std::abs(da - db) / (atol + rtol * std::abs(db));
    worst = r > worst ? r : worst;
  }
  return worst;
}
template <class A, class B>
double tolerance_ratio(std::vector<A> const& a, std::vector<B> const& b, double atol, double rtol) {
  return tolerance_ratio(std::span<A const>(a), std::span<B const>(b), atol, rtol);
}

}  // namespace piecrust::gpu_test

#define PIECRUST_GPU_TEST_CAT2(a, b) a##b
#define PIECRUST_GPU_TEST_CAT(a, b) PIECRUST_GPU_TEST_CAT2(a, b)
/// Defines and registers a test: PIECRUST_GPU_TEST(name) { ...body using `t`... }
#define PIECRUST_GPU_TEST(name)                                                                       \
  static void name(::piecrust::gpu_test::Test& t);                                                    \
  static ::piecrust::gpu_test::Registrar const PIECRUST_GPU_TEST_CAT(name, _registrar){#name, &name}; \
  static void name([[maybe_unused]] ::piecrust::gpu_test::Test& t)
