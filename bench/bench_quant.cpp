// Matmul of every WeightType through the public API (load_linear + linear on the host, default LinearOptions:
// the 8-bit-activation integer path where the host has one), beside the STREAM-like read in the same run:
//  * shapes: a 2048 x 2048 weight and an LM-head-like 262144 x 640 one (262144 x 768 for the types with
//    256-weight blocks, since 640 is not a multiple of 256); rows x cols = outputs x inputs;
//  * decode-shaped (1 activation row) and prefill-shaped (512 rows).
// Each iteration reads a buffer of 4x the last-level cache (at least 64 MiB) with bench::stream_read, then
// runs the matmul `repeats` times (decode: as many calls as take about as long as one stream read; prefill:
// one), so the ratio compares the two under the same machine load. The weights are random
// valid blocks (tests/support/random_quant_blocks.hpp); speed does not depend on their values.
// Counters: weight_GBps (weight bytes read per second), stream_GBps, vs_stream (their ratio), GFLOPS
// (prefill), weight_MiB, in_llc (1 when the weight fits the last-level cache, so repeats read it from there),
// repeats.
//   bench_quant [--benchmark_filter=...]   threads: one per hardware thread, or PIECRUST_BENCH_THREADS

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "kernels_baselines.hpp"
#include "piecrust/backends/host.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels.hpp"
#include "random_quant_blocks.hpp"

using namespace piecrust;

namespace {

/// Bytes of the largest cache level (sysfs; 32 MiB when it cannot be read). glibc's sysconf is not used:
/// on some virtual machines it reports the whole package's L3 rather than the slice a core sees.
std::size_t last_level_cache_bytes() {
  std::size_t best_level = 0, best = 0;
  for (int i = 0; i < 10; ++i) {
    std::string const dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size");
    std::size_t level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size) || size.empty()) continue;
    std::size_t v = std::strtoull(size.c_str(), nullptr, 10);
    if (size.back() == 'K') v <<= 10;
    if (size.back() == 'M') v <<= 20;
    if (level >= best_level) {
      best_level = level;
      best = v;
    }
  }
  return best > 0 ? best : std::size_t{32} << 20;
}

std::size_t const llc_bytes = last_level_cache_bytes();

/// The STREAM peer's buffer: 4x the last-level cache, at least 64 MiB, of distinct pages.
Buffer<float> const& stream_buffer() {
  static Buffer<float> const buf = [] {
    Buffer<float> b(std::max(4 * llc_bytes, std::size_t{64} << 20) / sizeof(float), 0.0f);  // [n]
    bench::fill_distinct(b.data(), b.size());
    return b;
  }();
  return buf;
}

// The weight of the benchmark being run, kept for the next one of the same type and shape (decode and
// prefill share it) and freed before another is made, so at most one large weight lives at a time.
struct CachedWeight {
  WeightType type{};
  std::size_t rows = 0, cols = 0;
  std::unique_ptr<testing::RandomWeights> bytes;
  std::unique_ptr<LinearWeight<Host>> loaded;
};

LinearWeight<Host> const& weight(WeightType type, std::size_t rows, std::size_t cols) {
  static CachedWeight c;
  if (c.loaded == nullptr || c.type != type || c.rows != rows || c.cols != cols) {
    c.loaded.reset();
    c.bytes.reset();
    c.bytes = std::make_unique<testing::RandomWeights>(
        testing::random_weights(type, rows, cols, 1000 + static_cast<std::uint64_t>(type)));
    c.loaded.reset(new LinearWeight<Host>(load_linear(bench::host(), c.bytes->matrix)));
    c.type = type, c.rows = rows, c.cols = cols;
  }
  return *c.loaded;
}

/// args: m (activation rows); the type and shape are bound at registration.
void quant_linear(benchmark::State& state, WeightType type, std::size_t n, std::size_t k) {
  std::size_t const m = static_cast<std::size_t>(state.range(0));
  auto const& w = weight(type, n, k);
  std::size_t const weight_bytes = w.matrix.size_bytes();
  auto const& stream = stream_buffer();
  std::vector<float> x(m * k);  // [m][k]
  testing::SplitMix64 rng(7);
  for (auto& v : x) v = rng.symmetric();
  std::vector<float> y(m * n);  // [m][n]
  ShapedView<float const, 2> const xv(x.data(), m, k);
  ShapedView<float, 2> const yv(y.data(), m, n);

  // Decode: one untimed call and one stream read (first touches, scratch growth) size the repeats so that
  // the kernel's share of an iteration about equals the peer's. Prefill (seconds a call on the LM head)
  // runs once per iteration, with no untimed call.
  using Clock = std::chrono::steady_clock;
  std::size_t repeats = 1;
  if (m == 1) {
    auto const c0 = Clock::now();
    linear(bench::host(), xv, w, yv);
    auto const c1 = Clock::now();
    benchmark::DoNotOptimize(bench::stream_read(bench::host(), stream.data(), stream.size()));
    auto const c2 = Clock::now();
    double const ratio = std::chrono::duration<double>(c2 - c1).count() / std::chrono::duration<double>(c1 - c0).count();
    repeats = static_cast<std::size_t>(std::clamp(std::round(ratio), 1.0, 1000.0));
  }
  double stream_s = 0, kernel_s = 0;
  for (auto _ : state) {
    auto const t0 = Clock::now();
    benchmark::DoNotOptimize(bench::stream_read(bench::host(), stream.data(), stream.size()));
    auto const t1 = Clock::now();
    for (std::size_t r = 0; r < repeats; ++r) {
      linear(bench::host(), xv, w, yv);
      benchmark::DoNotOptimize(y.data());
    }
    auto const t2 = Clock::now();
    stream_s += std::chrono::duration<double>(t1 - t0).count();
    kernel_s += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t1).count());
  }
  // Random valid blocks decode to moderate weights: a non-finite output is a broken kernel, not a timing.
  for (std::size_t i : {std::size_t{0}, n - 1, m * n - 1}) {
    if (!std::isfinite(y[i])) {
      state.SkipWithError("non-finite output");
      return;
    }
  }
  double const calls = static_cast<double>(state.iterations()) * static_cast<double>(repeats);
  double const weight_Bps = calls * static_cast<double>(weight_bytes) / kernel_s;
  double const stream_Bps = static_cast<double>(state.iterations()) * static_cast<double>(stream.size_bytes()) / stream_s;
  state.counters["weight_GBps"] = weight_Bps * 1e-9;
  state.counters["stream_GBps"] = stream_Bps * 1e-9;
  state.counters["vs_stream"] = weight_Bps / stream_Bps;
  state.counters["weight_MiB"] = static_cast<double>(weight_bytes) / (1 << 20);
  state.counters["in_llc"] = weight_bytes <= llc_bytes ? 1 : 0;
  state.counters["repeats"] = static_cast<double>(repeats);
  if (m > 1) state.counters["GFLOPS"] = calls * 2.0 * static_cast<double>(m * n * k) / kernel_s * 1e-9;
}

/// The STREAM-like read alone (bench/bench_model.py runs this one for its weight-read floor).
void BM_StreamRead(benchmark::State& state) {
  auto const& stream = stream_buffer();
  for (auto _ : state) benchmark::DoNotOptimize(bench::stream_read(bench::host(), stream.data(), stream.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size_bytes()));
  state.counters["stream_MiB"] = static_cast<double>(stream.size_bytes()) / (1 << 20);
}

// The order: the plain types, then the quantized ones.
constexpr std::array<WeightType, 15> bench_types{
    WeightType::f32,  WeightType::f16,  WeightType::bf16, WeightType::q4_0, WeightType::q4_1,
    WeightType::q5_0, WeightType::q5_1, WeightType::q8_0, WeightType::q2_k, WeightType::q3_k,
    WeightType::q4_k, WeightType::q5_k, WeightType::q6_k, WeightType::iq4_nl, WeightType::iq4_xs};
static_assert(bench_types.size() == all_weight_types.size());

void register_benchmarks() {
  benchmark::RegisterBenchmark("BM_StreamRead", BM_StreamRead)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (WeightType t : bench_types) {
    std::size_t const lm_cols = weight_block_size(t) == 256 ? 768 : 640;
    std::array<std::array<std::size_t, 2>, 2> const shapes{{{2048, 2048}, {262144, lm_cols}}};
    for (auto const& [n, k] : shapes) {
      std::string const name = "BM_QuantLinear/" + std::string(weight_type_name(t)) + "/" + std::to_string(n) + "x" + std::to_string(k);
      benchmark::RegisterBenchmark(name.c_str(), [t, n = n, k = k](benchmark::State& s) { quant_linear(s, t, n, k); })
          ->ArgName("m")
          ->Arg(1)
          ->Arg(512)
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_benchmarks();
  // 0.2 s per benchmark unless the command line says otherwise: 61 benchmarks, some of seconds per call.
  std::vector<char*> args(argv, argv + argc);
  std::string min_time = "--benchmark_min_time=0.2";
  if (std::none_of(args.begin(), args.end(), [](char const* a) { return std::string(a).starts_with("--benchmark_min_time"); })) {
    args.insert(args.begin() + 1, min_time.data());
  }
  int n_args = static_cast<int>(args.size());
  benchmark::Initialize(&n_args, args.data());
  if (benchmark::ReportUnrecognizedArguments(n_args, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
