#pragma once
// The benchmarks' thread pool, and the peers and physical limits that bench_kernels and bench_quant measure in
// the same run as the kernels:
//  * stream_read: a STREAM-like read (sum of a large array) on the same thread pool: the memory-read
//    bandwidth a bandwidth-bound kernel can hope for;
//  * paged_read: the same sum over fixed-size blocks visited in a given order (a KV pool's pages in
//    the order a batch's page tables list them): what the memory system gives for that access pattern
//    (scattered blocks, each read front to back), with no attention arithmetic;
//  * fma_peak: independent FMA chains of the CPU's widest vectors (AVX-512 where present, else AVX2): the
//    f32 compute peak of a thread;
//  * sort_sample: the textbook sort-based top-k/top-p sampler (sort the whole vocabulary, softmax,
//    cut, inverse CDF), the reference the sampling kernel is compared with.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "piecrust/backends/host.hpp"

namespace piecrust::bench {

/// The benchmarks' pool: one thread per hardware thread, or PIECRUST_BENCH_THREADS.
inline Host const& host() {
  static Host const h = [] {
    char const* env = std::getenv("PIECRUST_BENCH_THREADS");
    return env != nullptr ? Host(static_cast<std::size_t>(std::atoi(env))) : Host();
  }();
  return h;
}

/// Four independent vector sums over floats read front to back (four add chains, so the loads, not the add
/// latency, set the pace).
struct ReadSum {
  static constexpr std::size_t step = 4 * host::detail::lanes;  // floats per iteration
  host::detail::Vf a0 = host::detail::splat(0), a1 = a0, a2 = a0, a3 = a0;
  /// Adds the first n / step * step floats of p.
  void add(float const* p, std::size_t n) {
    constexpr std::size_t w = host::detail::lanes;
    for (std::size_t i = 0; i + step <= n; i += step) {
      a0 += host::detail::load(p + i);
      a1 += host::detail::load(p + i + w);
      a2 += host::detail::load(p + i + 2 * w);
      a3 += host::detail::load(p + i + 3 * w);
    }
  }
  /// Adds the sum so far to `total` (shared by the pool's threads).
  void publish(std::atomic<double>& total) const {
    double const s = host::detail::hsum((a0 + a1) + (a2 + a3));
    double cur = total.load();
    while (!total.compare_exchange_weak(cur, cur + s)) {
    }
  }
};

/// Fills a read-bandwidth buffer with values that differ from page to page and are never zero: pages of
/// identical bytes (a buffer of ones) can be merged or served from a shared page by a virtual machine's
/// host, and then the read measures a cache, not memory.
inline void fill_distinct(float* data, std::size_t n) {
  std::uint32_t x = 0x9e3779b9u;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;  // LCG: cheap, and no two pages alike
    data[i] = 1.0f + static_cast<float>(x >> 8) * 0x1p-24f;
  }
}

/// Sum of `n` floats split across the pool; returns the sum so the reads cannot be elided.
inline double stream_read(Host const& host, float const* data, std::size_t n) {
  std::atomic<double> total{0.0};
  std::size_t const parts = host.concurrency();
  host.parallel_for(parts, [&](std::size_t b, std::size_t e) {
    for (std::size_t p = b; p < e; ++p) {
      std::size_t const lo = n * p / parts / ReadSum::step * ReadSum::step;
      std::size_t const hi = p + 1 == parts ? n : n * (p + 1) / parts / ReadSum::step * ReadSum::step;
      ReadSum sum;
      sum.add(data + lo, hi - lo);
      sum.publish(total);
    }
  });
  return total.load();
}

/// Sum of the `block_floats`-float blocks block_order[0], block_order[1], ... of `data`, each read front to
/// back, the order split across the pool in contiguous parts; returns the sum.
///   data [blocks][block_floats] (block_floats a multiple of 4 * lanes), block_order [n] block indices
inline double paged_read(Host const& host, float const* data, std::size_t block_floats,
                         std::vector<std::uint32_t> const& block_order) {
  std::atomic<double> total{0.0};
  host.parallel_for(block_order.size(), [&](std::size_t b, std::size_t e) {
    ReadSum sum;
    for (std::size_t i = b; i < e; ++i) sum.add(data + static_cast<std::size_t>(block_order[i]) * block_floats, block_floats);
    sum.publish(total);
  });
  return total.load();
}

/// Flops of `iters` iterations of 10 independent 8-wide FMA chains (2 flops per lane).
__attribute__((target("avx2,fma"))) inline float fma_chains(std::size_t iters) {
  __m256 a[10];
  for (int j = 0; j < 10; ++j) a[j] = _mm256_set1_ps(0.001f * static_cast<float>(j));
  __m256 const b = _mm256_set1_ps(0.999999f);
  __m256 const c = _mm256_set1_ps(1e-7f);
  for (std::size_t i = 0; i < iters; ++i) {
#pragma GCC unroll 10
    for (int j = 0; j < 10; ++j) a[j] = _mm256_fmadd_ps(a[j], b, c);  // 10 chains cover FMA latency x 2 ports
  }
  __m256 s = a[0];
  for (int j = 1; j < 10; ++j) s = _mm256_add_ps(s, a[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0] + out[7];
}
inline constexpr double fma_chain_flops_per_iter = 10 * 8 * 2;

/// The same with 16-wide AVX-512 chains.
__attribute__((target("avx512f"))) inline float fma_chains_avx512(std::size_t iters) {
  __m512 a[10];
  for (int j = 0; j < 10; ++j) a[j] = _mm512_set1_ps(0.001f * static_cast<float>(j));
  __m512 const b = _mm512_set1_ps(0.999999f);
  __m512 const c = _mm512_set1_ps(1e-7f);
  for (std::size_t i = 0; i < iters; ++i) {
#pragma GCC unroll 10
    for (int j = 0; j < 10; ++j) a[j] = _mm512_fmadd_ps(a[j], b, c);
  }
  __m512 s = a[0];
  for (int j = 1; j < 10; ++j) s = _mm512_add_ps(s, a[j]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + out[15];
}

/// The FMA peak's peer on this CPU: the widest chains it runs, whatever PIECRUST_HOST_SIMD caps the
/// kernels to (the peak is the machine's).
struct FmaPeak {
  char const* isa;
  double flops_per_iter;          // of one call's iteration, all chains
  float (*chains)(std::size_t);  // runs `iters` iterations
};
inline FmaPeak const& fma_peak() {
  static FmaPeak const p = piecrust::detail::cpu_features().avx512f
                               ? FmaPeak{"avx512", 10 * 16 * 2, &fma_chains_avx512}
                               : FmaPeak{"avx2", fma_chain_flops_per_iter, &fma_chains};
  return p;
}

/// The sort-based top-k + top-p sampler over one row (k = 0: no top-k; p = 1: no top-p).
inline std::uint32_t sort_sample(float const* logits, std::size_t vocab, std::size_t k, float p, float temperature, double u,
                                 std::vector<std::pair<float, std::uint32_t>>& buf) {
  buf.resize(vocab);
  for (std::uint32_t i = 0; i < vocab; ++i) buf[i] = {logits[i], i};
  std::sort(buf.begin(), buf.end(), [](auto const& a, auto const& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  std::size_t n = k == 0 ? vocab : std::min(k, vocab);
  float const lmax = buf[0].first;
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    buf[i].first = std::exp((buf[i].first - lmax) / temperature);
    total += buf[i].first;
  }
  double cum = 0;
  std::size_t keep = 0;
  while (keep < n && cum < p * total) cum += buf[keep++].first;
  double const target = u * cum;
  double run = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    run += buf[i].first;
    if (run > target) return buf[i].second;
  }
  return buf[keep - 1].second;
}

}  // namespace piecrust::bench
