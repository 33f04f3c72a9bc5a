// MaskInfo benchmarks (issue 3), each beside a naive version in the same run; every pair checks in its
// setup that both produce the same result.
//   1. from_segments + CuSeqlens::from_segment_ids + get_or_compute_positions, 8 x 32K tokens, vs per-token
//      scans: each token walks back to the start of its run for its position, each run start walks forward
//      to its end for its length (O(run length) per token). The fully dense naive (an 8 x 32K x 32K mask,
//      8 GiB as bytes) is not feasible in a benchmark.
//   2. mask_to_segment_ids on a 4K x 4K block-diagonal mask vs the all-pairs comparison: each row (and
//      each column, after one transpose) is compared with memcmp against every earlier one until a match.
//   3. block_sparse_summary of causal + sliding-window rows, 128 x 128 tiles, vs a dense scan of every
//      tile's cells. The dense 32K x 32K mask is 1 GiB as bytes, so the naive peer runs at 8K x 8K and
//      piecrust runs at both sizes; compare per-element rates (items/s = Q * K cells per second).
// Run: build-bench/bench/bench_mask_info --benchmark_min_time=0.2
#include <piecrust/mask_info.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace mi = piecrust::maskinfo;
using piecrust::AttentionMask;

// ------------------------------------------------------------------ 1. ids -> cu_seqlens + positions

constexpr std::int64_t kBatch = 8, kSeq = 32768;

/// Packed rows: runs of 256..8192 tokens with increasing ids, then 0..1024 padding tokens (-1).
mi::IntTensor packed_ids(std::uint32_t seed) {
  std::mt19937 rng(seed);
  mi::IntTensor ids(mi::Shape{kBatch, kSeq}, -1);  // [batch][seq]
  for (std::int64_t b = 0; b < kBatch; ++b) {
    std::int64_t const valid = kSeq - static_cast<std::int64_t>(rng() % 1025);
    std::int64_t pos = 0;
    std::int32_t id = 0;
    while (pos < valid) {
      std::int64_t const len = std::min<std::int64_t>(valid - pos, 256 + rng() % (8192 - 256 + 1));
      for (std::int64_t i = 0; i < len; ++i) ids.at(b, pos + i) = id;
      pos += len;
      ++id;
    }
  }
  return ids;
}

struct NaiveSegments {
  std::vector<std::int32_t> offsets;       // [num_sequences + 1]
  std::vector<std::int32_t> q_positions;   // [batch * seq], pad -1
  std::vector<std::int32_t> kv_positions;  // [batch * seq], pad int32 max
};

NaiveSegments naive_segments(mi::IntTensor const& ids) {
  std::int64_t const b = ids.dim(0), s = ids.dim(1);
  std::int32_t const* d = ids.data().data();
  NaiveSegments out;
  out.offsets.push_back(0);
  out.q_positions.resize(ids.size());
  out.kv_positions.resize(ids.size());
  for (std::int64_t r = 0; r < b; ++r) {
    std::int32_t const* row = d + r * s;
    for (std::int64_t i = 0; i < s; ++i) {
      std::size_t const at = static_cast<std::size_t>(r * s + i);
      if (row[i] < 0) {
        out.q_positions[at] = -1;
        out.kv_positions[at] = std::numeric_limits<std::int32_t>::max();
        continue;
      }
      std::int64_t start = i;  // walk back to the start of this run
      while (start > 0 && row[start - 1] == row[i]) --start;
      out.q_positions[at] = out.kv_positions[at] = static_cast<std::int32_t>(i - start);
      if (start == i) {  // a run starts here: walk forward to its end
        std::int64_t end = i;
        while (end < s && row[end] == row[i]) ++end;
        out.offsets.push_back(out.offsets.back() + static_cast<std::int32_t>(end - i));
      }
    }
  }
  return out;
}

void BM_from_segments_cu_positions_8x32k(benchmark::State& state) {
  mi::IntTensor const ids = packed_ids(1);
  {
    auto const ref = naive_segments(ids);
    auto const m = mi::from_segments(ids);
    auto const cu = mi::CuSeqlens::from_segment_ids(*m.fields().q_segment_ids);
    auto const pos = mi::get_or_compute_positions(m);
    if (!std::equal(cu.offsets().begin(), cu.offsets().end(), ref.offsets.begin(), ref.offsets.end()) ||
        pos.q->vector() != ref.q_positions || pos.kv->vector() != ref.kv_positions) {
      state.SkipWithError("piecrust and the naive scans disagree");
      return;
    }
    state.counters["sequences"] = static_cast<double>(cu.num_sequences());
  }
  for (auto _ : state) {
    auto const m = mi::from_segments(ids);  // copies the ids into the object, as a caller would
    auto const cu = mi::CuSeqlens::from_segment_ids(*m.fields().q_segment_ids);
    auto const pos = mi::get_or_compute_positions(m);
    benchmark::DoNotOptimize(cu.offsets().data());
    benchmark::DoNotOptimize(pos.q->data().data());
    benchmark::DoNotOptimize(pos.kv->data().data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch * kSeq);
}

void BM_naive_segments_per_token_scans_8x32k(benchmark::State& state) {
  mi::IntTensor const ids = packed_ids(1);
  for (auto _ : state) {
    auto const out = naive_segments(ids);
    benchmark::DoNotOptimize(out.offsets.data());
    benchmark::DoNotOptimize(out.q_positions.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch * kSeq);
}

// ------------------------------------------------------------------ 2. mask -> segment ids

constexpr std::int64_t kMaskLen = 4096;

/// A (Q, K) block-diagonal mask: segments of 32..512 tokens, the last ~5% rows/columns padding (all False).
mi::BoolTensor block_diagonal(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  mi::BoolTensor m(mi::Shape{n, n}, 0);  // [q][k]
  std::int64_t const valid = n - n / 20;
  std::int64_t pos = 0;
  while (pos < valid) {
    std::int64_t const len = std::min<std::int64_t>(valid - pos, 32 + rng() % (512 - 32 + 1));
    for (std::int64_t i = pos; i < pos + len; ++i)
      for (std::int64_t j = pos; j < pos + len; ++j) m.at(i, j) = 1;
    pos += len;
  }
  return m;
}

/// Upstream's grouping done naively: each line (n lines of len bytes, contiguous) gets the id of the
/// first earlier line with identical bits (memcmp against every earlier line), else a new id; all-False
/// lines get -1.
std::vector<std::int32_t> naive_group_lines(std::uint8_t const* d, std::int64_t n, std::int64_t len) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n), -1);
  std::int32_t next = 0;
  auto const line = [&](std::int64_t a) { return d + a * len; };
  for (std::int64_t a = 0; a < n; ++a) {
    if (std::none_of(line(a), line(a) + len, [](std::uint8_t v) { return v != 0; })) continue;
    for (std::int64_t c = 0; c < a; ++c) {
      if (ids[static_cast<std::size_t>(c)] >= 0 && std::memcmp(line(a), line(c), static_cast<std::size_t>(len)) == 0) {
        ids[static_cast<std::size_t>(a)] = ids[static_cast<std::size_t>(c)];
        break;
      }
    }
    if (ids[static_cast<std::size_t>(a)] < 0) ids[static_cast<std::size_t>(a)] = next++;
  }
  return ids;
}

std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>> naive_mask_to_segment_ids(mi::BoolTensor const& m) {
  std::int64_t const q = m.dim(0), k = m.dim(1);
  std::vector<std::uint8_t> t(m.size());  // [k][q]: columns as contiguous lines
  for (std::int64_t i = 0; i < q; ++i)
    for (std::int64_t j = 0; j < k; ++j) t[static_cast<std::size_t>(j * q + i)] = m[static_cast<std::size_t>(i * k + j)];
  return {naive_group_lines(m.data().data(), q, k), naive_group_lines(t.data(), k, q)};
}

void BM_mask_to_segment_ids_4k(benchmark::State& state) {
  mi::Array const mask(block_diagonal(kMaskLen, 2));
  {
    auto const ids = mi::mask_to_segment_ids(mask);
    auto const ref = naive_mask_to_segment_ids(mask.bools());
    if (ids.q.vector() != ref.first || ids.kv.vector() != ref.second) {
      state.SkipWithError("piecrust and the all-pairs comparison disagree");
      return;
    }
    state.counters["segments"] = static_cast<double>(*std::max_element(ref.first.begin(), ref.first.end()) + 1);
  }
  for (auto _ : state) {
    auto const ids = mi::mask_to_segment_ids(mask);
    benchmark::DoNotOptimize(ids.q.data().data());
    benchmark::DoNotOptimize(ids.kv.data().data());
  }
  state.SetItemsProcessed(state.iterations() * kMaskLen * kMaskLen);
}

void BM_naive_mask_to_segment_ids_all_pairs_4k(benchmark::State& state) {
  mi::BoolTensor const mask = block_diagonal(kMaskLen, 2);
  for (auto _ : state) {
    auto const ids = naive_mask_to_segment_ids(mask);
    benchmark::DoNotOptimize(ids.first.data());
    benchmark::DoNotOptimize(ids.second.data());
  }
  state.SetItemsProcessed(state.iterations() * kMaskLen * kMaskLen);
}

// ------------------------------------------------------------------ 3. block-sparse summary

constexpr std::int64_t kTile = 128;

/// Causal + sliding window of n/8 tokens: query i attends [max(0, i - w + 1), i].
std::vector<AttentionMask> causal_window_rows(std::int64_t n) {
  std::vector<AttentionMask> rows;  // [n]
  rows.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    rows.push_back(AttentionMask::window(static_cast<std::size_t>(i + 1), static_cast<std::size_t>(n / 8)));
  return rows;
}

mi::BoolTensor causal_window_dense(std::int64_t n) {
  mi::BoolTensor m(mi::Shape{n, n}, 0);  // [q][k], 1 = attend
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = std::max<std::int64_t>(0, i - n / 8 + 1); j <= i; ++j) m.at(i, j) = 1;
  return m;
}

/// Dense scan: count the attended cells of every tile, then classify.
std::vector<mi::BlockKind> naive_block_summary(mi::BoolTensor const& m, std::int64_t qb_size, std::int64_t kb_size) {
  std::int64_t const q = m.dim(0), k = m.dim(1);
  std::int64_t const nq = (q + qb_size - 1) / qb_size, nk = (k + kb_size - 1) / kb_size;
  std::uint8_t const* d = m.data().data();
  std::vector<mi::BlockKind> kinds(static_cast<std::size_t>(nq * nk));  // [nq][nk]
  for (std::int64_t qb = 0; qb < nq; ++qb) {
    std::int64_t const r0 = qb * qb_size, r1 = std::min(q, r0 + qb_size);
    for (std::int64_t kb = 0; kb < nk; ++kb) {
      std::int64_t const c0 = kb * kb_size, c1 = std::min(k, c0 + kb_size);
      std::int64_t count = 0;
      for (std::int64_t i = r0; i < r1; ++i)
        for (std::int64_t j = c0; j < c1; ++j) count += d[i * k + j];
      kinds[static_cast<std::size_t>(qb * nk + kb)] =
          count == 0 ? mi::BlockKind::empty : (count == (r1 - r0) * (c1 - c0) ? mi::BlockKind::full : mi::BlockKind::partial);
    }
  }
  return kinds;
}

void BM_block_sparse_summary_causal_window(benchmark::State& state) {
  std::int64_t const n = state.range(0);
  auto const rows = causal_window_rows(n);
  auto const check = mi::block_sparse_summary(rows, n, kTile, kTile);
  if (n <= 8192 && check.kinds != naive_block_summary(causal_window_dense(n), kTile, kTile)) {
    state.SkipWithError("piecrust and the dense scan disagree");
    return;
  }
  state.counters["partial_tiles"] = static_cast<double>(check.count(mi::BlockKind::partial));
  for (auto _ : state) benchmark::DoNotOptimize(mi::block_sparse_summary(rows, n, kTile, kTile).kinds.data());
  state.SetItemsProcessed(state.iterations() * n * n);
}

/// The same, building the AttentionMask rows (three runs each) inside the timed loop.
void BM_block_sparse_summary_causal_window_with_rows(benchmark::State& state) {
  std::int64_t const n = state.range(0);
  for (auto _ : state) {
    auto const rows = causal_window_rows(n);
    benchmark::DoNotOptimize(mi::block_sparse_summary(rows, n, kTile, kTile).kinds.data());
  }
  state.SetItemsProcessed(state.iterations() * n * n);
}

void BM_naive_block_summary_dense_scan(benchmark::State& state) {
  std::int64_t const n = state.range(0);
  mi::BoolTensor const m = causal_window_dense(n);
  for (auto _ : state) benchmark::DoNotOptimize(naive_block_summary(m, kTile, kTile).data());
  state.SetItemsProcessed(state.iterations() * n * n);
}

}  // namespace

BENCHMARK(BM_from_segments_cu_positions_8x32k)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_naive_segments_per_token_scans_8x32k)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_mask_to_segment_ids_4k)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_naive_mask_to_segment_ids_all_pairs_4k)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_block_sparse_summary_causal_window)->Arg(8192)->Arg(32768)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_block_sparse_summary_causal_window_with_rows)->Arg(32768)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_naive_block_summary_dense_scan)->Arg(8192)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
