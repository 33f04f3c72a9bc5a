// Core bookkeeping benchmarks, each beside a naive version in the same run:
//   Brle decode and AND (runs) vs the same on a plain bit vector;
//   fork of a 32K-token context (O(pages) bookkeeping) vs copying per-token metadata and every page;
//   TrimPlan on 128K-token rows (O(runs + pages)) vs a per-position scan.
// Run: build/release/bench/bench_core --benchmark_min_time=0.2
#include <piecrust/core.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

using piecrust::AttentionMask;
using piecrust::Brle;

// A sink+window style row with some page-aligned holes: realistic run counts (tens of runs).
Brle make_row(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Brle b;
  std::size_t pos = 0;
  while (pos < n) {
    std::size_t const len = std::min<std::size_t>(n - pos, 512 + rng() % 4096);
    b.append((rng() & 1) != 0, len);
    pos += len;
  }
  return b;
}

void BM_brle_decode(benchmark::State& state) {
  Brle const b = make_row(static_cast<std::size_t>(state.range(0)), 1);
  for (auto _ : state) benchmark::DoNotOptimize(b.to_bits());
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_brle_and(benchmark::State& state) {
  Brle const a = make_row(static_cast<std::size_t>(state.range(0)), 1);
  Brle const b = make_row(static_cast<std::size_t>(state.range(0)), 2);
  for (auto _ : state) benchmark::DoNotOptimize(a & b);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_naive_bits_and(benchmark::State& state) {
  auto const a = make_row(static_cast<std::size_t>(state.range(0)), 1).to_bits();
  auto const b = make_row(static_cast<std::size_t>(state.range(0)), 2).to_bits();
  for (auto _ : state) {
    std::vector<std::uint8_t> out(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) out[i] = a[i] & b[i];
    benchmark::DoNotOptimize(Brle::from_bits(out));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_fork_32k(benchmark::State& state) {
  std::uint32_t const ps = 16;
  std::size_t const tokens = 32768;
  piecrust::PagePool pool(tokens / ps * 2 + 64, ps);
  piecrust::PageTable t(pool);
  t.reserve_working_pages(tokens / ps + 1);
  std::vector<piecrust::TokenMeta> meta(tokens + 5);
  for (std::size_t i = 0; i < meta.size(); ++i) meta[i] = {static_cast<std::uint32_t>(i % 1000), static_cast<std::uint32_t>(i), false};
  t.append_working_tokens(meta);
  t.commit_working_pages(tokens / ps);
  for (auto _ : state) {
    auto f = t.fork();
    benchmark::DoNotOptimize(f.copies.data());
  }
  state.counters["pages"] = static_cast<double>(t.committed_pages().size());
}

// What a fork costs without sharing: copy each token's metadata and every committed page's K/V bytes
// (SmolLM2: 30 layers x 2 x 16 tokens x 3 heads x 64 dims x 2 bytes = 368,640 bytes per page).
void BM_naive_fork_32k_copy_everything(benchmark::State& state) {
  std::size_t const tokens = 32768, ps = 16, page_bytes = 30 * 2 * ps * 3 * 64 * 2;
  std::vector<piecrust::TokenMeta> meta(tokens);
  std::vector<std::uint8_t> kv(tokens / ps * page_bytes, 1);
  for (auto _ : state) {
    std::vector<piecrust::TokenMeta> meta_copy(meta);
    std::vector<std::uint8_t> kv_copy(kv);
    benchmark::DoNotOptimize(meta_copy.data());
    benchmark::DoNotOptimize(kv_copy.data());
  }
}

std::vector<AttentionMask> sink_rows(std::size_t kv_len, std::size_t n) {
  std::vector<AttentionMask> rows;
  for (std::size_t i = 0; i < n; ++i) rows.push_back(AttentionMask::sink_window(kv_len - n + i + 1, 64, 4096));
  return rows;
}

void BM_trim_plan_128k(benchmark::State& state) {
  std::size_t const kv_len = 131072, n = static_cast<std::size_t>(state.range(0));
  auto const rows = sink_rows(kv_len, n);
  for (auto _ : state) benchmark::DoNotOptimize(piecrust::TrimPlan::compute(16, kv_len - n, n, rows));
}

void BM_naive_trim_plan_128k(benchmark::State& state) {
  std::size_t const kv_len = 131072, n = static_cast<std::size_t>(state.range(0)), ps = 16;
  auto const rows = sink_rows(kv_len, n);
  std::vector<std::vector<std::uint8_t>> bits;
  for (auto const& r : rows) bits.push_back(r.bits().to_bits());
  for (auto _ : state) {
    std::vector<std::uint32_t> kept;
    std::size_t const pages = (kv_len + ps - 1) / ps, first_write = (kv_len - n) / ps;
    for (std::size_t p = 0; p < pages; ++p) {
      bool dead = p < first_write && p + 1 < pages;
      for (auto const& b : bits) {
        for (std::size_t pos = p * ps; dead && pos < (p + 1) * ps; ++pos) dead = pos >= b.size() || b[pos] != 0;
      }
      if (!dead) kept.push_back(static_cast<std::uint32_t>(p));
    }
    benchmark::DoNotOptimize(kept.data());
  }
}

}  // namespace

BENCHMARK(BM_brle_decode)->Arg(131072);
BENCHMARK(BM_brle_and)->Arg(131072);
BENCHMARK(BM_naive_bits_and)->Arg(131072);
BENCHMARK(BM_fork_32k)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_naive_fork_32k_copy_everything)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_trim_plan_128k)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_naive_trim_plan_128k)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
