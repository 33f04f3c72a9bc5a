// Kernel benchmarks with their peers measured in the same binary and run:
//  * decode paged attention (bytes of KV read per second) vs a STREAM-like read (stream_read, the goal's
//    peer) and vs the same pages read whole in the page tables' order (paged_read); the same kernel on
//    one thread over cache-resident KV vs the FMA-chain peak (its compute ceiling), and its AVX2 score and
//    value micro-kernels alone on L2-resident data vs the same peak;
//  * sampling (V = 49,152 / 128,256, batch 1 / 64) vs the sort-based sampler;
//  * gemm GFLOP/s (f32 via OpenBLAS; q4_1 / q8_0 / bf16 direct, panels, dequantized-at-load) vs the
//    AVX2 FMA-chain peak.
// Counters: "bytes_per_second" / "items_per_second" from Google Benchmark; "GFLOPS" for gemm.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels_baselines.hpp"
#include "random_quant_blocks.hpp"
#include "piecrust/backends/host.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels.hpp"

using namespace piecrust;

namespace {

std::vector<float> normal_floats(std::size_t n, float stddev, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

/// Runs the benchmark loop timing `peer` then `kernel` in every iteration (the iteration's time is the
/// kernel's), so a ratio of the two compares them under the same machine load; adds their seconds to
/// peer_s and kernel_s.
template <class Peer, class Kernel>
void time_with_peer(benchmark::State& state, Peer&& peer, Kernel&& kernel, double& peer_s, double& kernel_s) {
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    auto const t0 = Clock::now();
    peer();
    auto const t1 = Clock::now();
    kernel();
    auto const t2 = Clock::now();
    peer_s += std::chrono::duration<double>(t1 - t0).count();
    kernel_s += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t1).count());
  }
}

/// FMA lanes per second of one thread running `fma_iters`-iteration FMA chains, `iterations` times in
/// `fma_s` seconds.
double fma_lanes_per_s(double iterations, std::size_t fma_iters, double fma_s) {
  return iterations * bench::fma_peak().flops_per_iter / 2 * static_cast<double>(fma_iters) / fma_s;
}

/// The attention kernels that run for KV type T (paged_attention's kernel_path).
template <class T>
std::string attention_label() {
  return host::detail::attention_path_name(host::detail::kernel_path<T>(host::detail::attention_path()));
}

// ---------------------------------------------------------------- memory bandwidth peer
void BM_StreamRead(benchmark::State& state) {
  std::size_t const bytes = static_cast<std::size_t>(state.range(0)) << 20;
  Buffer<float> buf(bytes / sizeof(float), 1.0f);  // [bytes / 4]
  for (auto _ : state) benchmark::DoNotOptimize(bench::stream_read(bench::host(), buf.data(), buf.size()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_StreamRead)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------- decode attention
// args: batch, kv_len per request, kv_heads, group, head_dim, bf16 (0/1). One query token per request.
template <class T>
void decode_attention(benchmark::State& state) {
  std::size_t const batch = static_cast<std::size_t>(state.range(0));
  std::size_t const kv_len = static_cast<std::size_t>(state.range(1));
  std::size_t const kvh = static_cast<std::size_t>(state.range(2));
  std::size_t const group = static_cast<std::size_t>(state.range(3));
  std::size_t const hd = static_cast<std::size_t>(state.range(4));
  std::size_t const ps = 16;
  std::size_t const pages_per = (kv_len + ps - 1) / ps;
  std::size_t const pages = batch * pages_per;
  PagedKv<T> const shape{nullptr, pages, ps, kvh, hd};
  Buffer<T> pool(shape.size());  // [pages][2][ps][kvh][hd]
  {
    auto const vals = normal_floats(4096, 1.0f, 1);
    for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = from_float<T>(vals[i % vals.size()]);
  }
  std::vector<std::uint32_t> qo_indptr(batch + 1), kv_indptr(batch + 1), kv_indices(pages), last(batch);
  std::iota(qo_indptr.begin(), qo_indptr.end(), 0u);
  for (std::size_t b = 0; b <= batch; ++b) kv_indptr[b] = static_cast<std::uint32_t>(b * pages_per);
  std::iota(kv_indices.begin(), kv_indices.end(), 0u);
  std::shuffle(kv_indices.begin(), kv_indices.end(), std::mt19937_64(2));  // pages scattered over the pool
  for (auto& l : last) l = static_cast<std::uint32_t>(kv_len - (pages_per - 1) * ps);
  auto const q = normal_floats(batch * kvh * group * hd, 1.0f, 3);  // [batch][qo_heads][hd]
  std::vector<float> out(q.size()), lse(batch * kvh * group);
  PagedKv<T const> const kv{pool.data(), pages, ps, kvh, hd};
  PagedBatch const pb{qo_indptr, kv_indptr, kv_indices, last};
  // Each iteration also reads the same pool with the STREAM-like kernel (the goal's peer) and with the
  // paged read (every KV page whole, in the page tables' order: the same scattered access pattern with
  // no arithmetic) right before the attention, so the ratios compare them under the same machine load.
  using Clock = std::chrono::steady_clock;
  double stream_s = 0, paged_s = 0, attn_s = 0;
  auto const* pool_floats = reinterpret_cast<float const*>(pool.data());
  std::size_t const page_floats = pool.size_bytes() / pages / sizeof(float);  // K and V of one page
  for (auto _ : state) {
    auto const t0 = Clock::now();
    benchmark::DoNotOptimize(bench::stream_read(bench::host(), pool_floats, pool.size_bytes() / sizeof(float)));
    auto const tp = Clock::now();
    benchmark::DoNotOptimize(bench::paged_read(bench::host(), pool_floats, page_floats, kv_indices));
    auto const t1 = Clock::now();
    paged_attention(bench::host(), ShapedView<float const, 3>(q.data(), batch, kvh * group, hd), kv, pb,
                    ShapedView<float, 3>(out.data(), batch, kvh * group, hd), ShapedView<float, 2>(lse.data(), batch, kvh * group));
    benchmark::DoNotOptimize(out.data());
    auto const t2 = Clock::now();
    stream_s += std::chrono::duration<double>(tp - t0).count();
    paged_s += std::chrono::duration<double>(t1 - tp).count();
    attn_s += std::chrono::duration<double>(t2 - t1).count();
    state.SetIterationTime(std::chrono::duration<double>(t2 - t1).count());
  }
  std::size_t const kv_bytes = batch * kv_len * 2 * kvh * hd * sizeof(T);
  double const n = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kv_bytes));
  state.counters["KV_MiB"] = static_cast<double>(kv_bytes) / (1 << 20);
  state.counters["attn_GBps"] = n * static_cast<double>(kv_bytes) / attn_s * 1e-9;
  state.counters["stream_GBps"] = n * static_cast<double>(pool.size_bytes()) / stream_s * 1e-9;
  state.counters["vs_stream"] = (static_cast<double>(kv_bytes) / attn_s) / (static_cast<double>(pool.size_bytes()) / stream_s);
  state.SetLabel(attention_label<T>());
  state.counters["paged_GBps"] = n * static_cast<double>(pool.size_bytes()) / paged_s * 1e-9;
  state.counters["vs_paged"] = (static_cast<double>(kv_bytes) / attn_s) / (static_cast<double>(pool.size_bytes()) / paged_s);
}
void BM_DecodeAttention_f32(benchmark::State& s) { decode_attention<float>(s); }
void BM_DecodeAttention_bf16(benchmark::State& s) { decode_attention<BFloat16>(s); }
// 256 MiB of KV: Llama-3-8B-like heads (8 KV heads, GQA 4, head_dim 128), 16 requests.
BENCHMARK(BM_DecodeAttention_f32)->Args({16, 2048, 8, 4, 128})->Args({16, 4096, 8, 4, 128})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_DecodeAttention_bf16)->Args({16, 4096, 8, 4, 128})->Args({16, 8192, 8, 4, 128})->Unit(benchmark::kMillisecond)->UseManualTime();
// SmolLM2-135M heads (3 KV heads, GQA 3, head_dim 64), 64 requests x 8K tokens = 288 MiB in f32.
BENCHMARK(BM_DecodeAttention_f32)->Args({64, 8192, 3, 3, 64})->Unit(benchmark::kMillisecond)->UseManualTime();

// ---------------------------------------------------------------- decode attention, compute only
// The same kernel on one thread over a cache-resident pool (one request, kv_len tokens, <= 512 KiB of KV),
// against the FMA peak of the same thread measured in the same iteration: how fast the arithmetic runs
// when memory costs nothing. Each KV element costs `group` FMA lanes (q . k for the group's query heads,
// then p v), so lanes/s over the FMA-chain peak is the fraction of the peak the kernel uses, and
// elements/s x bytes per element x threads is the bandwidth the kernel could consume at most.
// args: kv_len, kv_heads, group, head_dim.
template <class T>
void decode_attention_compute(benchmark::State& state) {
  static Host const one(1);
  std::size_t const kv_len = static_cast<std::size_t>(state.range(0));
  std::size_t const kvh = static_cast<std::size_t>(state.range(1));
  std::size_t const group = static_cast<std::size_t>(state.range(2));
  std::size_t const hd = static_cast<std::size_t>(state.range(3));
  std::size_t const ps = 16, pages = (kv_len + ps - 1) / ps;
  PagedKv<T> const shape{nullptr, pages, ps, kvh, hd};
  Buffer<T> pool(shape.size());  // [pages][2][ps][kvh][hd]
  {
    auto const vals = normal_floats(4096, 1.0f, 4);
    for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = from_float<T>(vals[i % vals.size()]);
  }
  std::vector<std::uint32_t> const qo_indptr{0, 1}, kv_indptr{0, static_cast<std::uint32_t>(pages)};
  std::vector<std::uint32_t> kv_indices(pages);
  std::iota(kv_indices.begin(), kv_indices.end(), 0u);
  std::vector<std::uint32_t> const last{static_cast<std::uint32_t>(kv_len - (pages - 1) * ps)};
  auto const q = normal_floats(kvh * group * hd, 1.0f, 5);  // [1][qo_heads][hd]
  std::vector<float> out(q.size()), lse(kvh * group);
  PagedKv<T const> const kv{pool.data(), pages, ps, kvh, hd};
  PagedBatch const pb{qo_indptr, kv_indptr, kv_indices, last};
  std::size_t const fma_iters = 1 << 14;
  double fma_s = 0, attn_s = 0;
  time_with_peer(
      state, [&] { benchmark::DoNotOptimize(bench::fma_peak().chains(fma_iters)); },
      [&] {
        paged_attention(one, ShapedView<float const, 3>(q.data(), 1, kvh * group, hd), kv, pb,
                        ShapedView<float, 3>(out.data(), 1, kvh * group, hd), ShapedView<float, 2>(lse.data(), 1, kvh * group));
        benchmark::DoNotOptimize(out.data());
      },
      fma_s, attn_s);
  double const n = static_cast<double>(state.iterations());
  double const elements = static_cast<double>(kv_len * 2 * kvh * hd);  // K and V
  double const peak_lanes = fma_lanes_per_s(n, fma_iters, fma_s);
  double const elements_per_s = n * elements / attn_s;
  state.counters["Gel_per_s"] = elements_per_s * 1e-9;
  state.counters["vs_fma_peak"] = elements_per_s * static_cast<double>(group) / peak_lanes;
  state.counters["GBps_2_threads"] = 2 * elements_per_s * sizeof(T) * 1e-9;  // at this rate on two cores
  state.SetLabel(attention_label<T>() + " vs " +
                 bench::fma_peak().isa + " fma");
}
void BM_DecodeAttentionCompute_f32(benchmark::State& s) { decode_attention_compute<float>(s); }
void BM_DecodeAttentionCompute_bf16(benchmark::State& s) { decode_attention_compute<BFloat16>(s); }
// The decode benchmarks' head shapes: 512 KiB of f32 or bf16 for GQA 4 / d 128, 384 KiB of f32 for SmolLM2's.
BENCHMARK(BM_DecodeAttentionCompute_f32)->Args({64, 8, 4, 128})->Args({256, 3, 3, 64})->Unit(benchmark::kMicrosecond)->UseManualTime();
BENCHMARK(BM_DecodeAttentionCompute_bf16)->Args({128, 8, 4, 128})->Unit(benchmark::kMicrosecond)->UseManualTime();

// ---------------------------------------------------------------- prefill attention, compute-bound
// One sequence's causal prefill (n query rows over its own n KV slots), all threads, against the FMA-chain
// peak of all threads timed in the same iteration. FLOPs: q.k and p.v over the slots each row sees,
// 4 * head_dim * qo_heads * n (n + 1) / 2. args: n, KV heads, GQA group, head_dim.
template <class T>
void prefill_attention(benchmark::State& state) {
  std::size_t const n = static_cast<std::size_t>(state.range(0));
  std::size_t const kvh = static_cast<std::size_t>(state.range(1));
  std::size_t const group = static_cast<std::size_t>(state.range(2));
  std::size_t const hd = static_cast<std::size_t>(state.range(3));
  std::size_t const ps = 16, pages = (n + ps - 1) / ps, heads = kvh * group;
  PagedKv<T> const shape{nullptr, pages, ps, kvh, hd};
  Buffer<T> pool(shape.size());  // [pages][2][ps][kvh][hd]
  {
    auto const vals = normal_floats(4096, 1.0f, 11);
    for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = from_float<T>(vals[i % vals.size()]);
  }
  std::vector<std::uint32_t> const qo_indptr{0, static_cast<std::uint32_t>(n)}, kv_indptr{0, static_cast<std::uint32_t>(pages)};
  std::vector<std::uint32_t> kv_indices(pages);
  std::iota(kv_indices.begin(), kv_indices.end(), 0u);
  std::vector<std::uint32_t> const last{static_cast<std::uint32_t>(n - (pages - 1) * ps)};
  auto const q = normal_floats(n * heads * hd, 1.0f, 12);  // [n][heads][hd]
  std::vector<float> out(q.size()), lse(n * heads);      // [n][heads][hd], [n][heads]
  PagedKv<T const> const kv{pool.data(), pages, ps, kvh, hd};
  PagedBatch const pb{qo_indptr, kv_indptr, kv_indices, last};
  std::size_t const fma_iters = 1 << 16;
  double fma_s = 0, attn_s = 0;
  time_with_peer(
      state,
      [&] {
        bench::host().parallel_for(bench::host().concurrency(), [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i < e; ++i) benchmark::DoNotOptimize(bench::fma_peak().chains(fma_iters));
        });
      },
      [&] {
        paged_attention(bench::host(), ShapedView<float const, 3>(q.data(), n, heads, hd), kv, pb,
                        ShapedView<float, 3>(out.data(), n, heads, hd), ShapedView<float, 2>(lse.data(), n, heads));
        benchmark::DoNotOptimize(out.data());
      },
      fma_s, attn_s);
  double const it = static_cast<double>(state.iterations());
  double const flops = 4.0 * static_cast<double>(hd * heads) * static_cast<double>(n) * static_cast<double>(n + 1) / 2;
  double const peak = it * bench::fma_peak().flops_per_iter * static_cast<double>(fma_iters) *
                      static_cast<double>(bench::host().concurrency()) / fma_s;
  state.counters["GFLOPS"] = it * flops / attn_s * 1e-9;
  state.counters["peak_GFLOPS"] = peak * 1e-9;
  state.counters["vs_fma_peak"] = it * flops / attn_s / peak;
  state.SetLabel(attention_label<T>() + " vs " +
                 bench::fma_peak().isa + " fma");
}
void BM_PrefillAttention_f32(benchmark::State& s) { prefill_attention<float>(s); }
void BM_PrefillAttention_bf16(benchmark::State& s) { prefill_attention<BFloat16>(s); }
// SmolLM2's heads (3 KV heads, GQA 3, d 64) and Gemma 3 270M's (1 KV head, GQA 4, d 256) at 512 and 2048 rows.
BENCHMARK(BM_PrefillAttention_f32)->Args({512, 3, 3, 64})->Args({2048, 3, 3, 64})->Args({512, 1, 4, 256})->Args({2048, 1, 4, 256})->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(BM_PrefillAttention_bf16)->Args({2048, 3, 3, 64})->Args({2048, 1, 4, 256})->Unit(benchmark::kMillisecond)->UseManualTime();

// ---------------------------------------------------------------- attention micro-kernels, cache-resident
// The AVX2 score and value micro-kernels alone (no softmax, no page walk, no prefetch), one thread, on 64
// slots of 8 KV heads (GQA 4, d 128: 128 KiB of bf16, 256 KiB of f32, in L2), against the FMA-chain peak of the same
// thread in the same iteration: how close the inner loops get to the FMA pipes. Counter: elements/s of
// K (scores) or V (values) and the fraction of the FMA peak (G = 4 lanes per element).
// args: which (0 scores, 1 values).
template <class T>
void attention_micro_kernel(benchmark::State& state) {
#if PIECRUST_HOST_ATTENTION_AVX2
  if (!host::detail::attention_avx2_available()) {
    state.SkipWithError("this CPU has no AVX2+FMA");
    return;
  }
  constexpr std::size_t G = 4, D = 128, kvh = 8, n = 64, chunk = 64;
  bool const values = state.range(0) == 1;
  auto const vals = normal_floats(n * kvh * D, 1.0f, 6);
  std::vector<T> kv(vals.size());  // [n][kvh][D]
  for (std::size_t i = 0; i < kv.size(); ++i) kv[i] = from_float<T>(vals[i]);
  auto const q = normal_floats(kvh * G * D, 1.0f, 7);      // [kvh][G][D]
  auto const p = normal_floats(kvh * G * chunk, 0.1f, 8);  // [kvh][G][chunk]
  std::vector<float> acc(kvh * G * D, 0.0f), scores(kvh * G * chunk);
  std::vector<void const*> const ahead(n, nullptr);  // no prefetch
  std::size_t const fma_iters = 1 << 12;
  double fma_s = 0, kernel_s = 0;
  time_with_peer(
      state, [&] { benchmark::DoNotOptimize(bench::fma_peak().chains(fma_iters)); },
      [&] {
        for (int r = 0; r < 16; ++r) {
          if (values) {
            host::detail::attention_values_avx2<G, D>(acc.data(), G * D, p.data(), G * chunk, chunk, kv.data(), kvh * D,
                                                      kvh, n, 4, ahead.data());
          } else {
            host::detail::attention_scores_avx2<G, D>(q.data(), G * D, kv.data(), kvh * D, kvh, n, scores.data(),
                                                      G * chunk, chunk, 0.1f, ahead.data());
          }
        }
        benchmark::DoNotOptimize(acc.data());
        benchmark::DoNotOptimize(scores.data());
      },
      fma_s, kernel_s);
  double const it = static_cast<double>(state.iterations());
  double const elements_per_s = it * 16.0 * static_cast<double>(n * kvh * D) / kernel_s;
  double const peak_lanes = fma_lanes_per_s(it, fma_iters, fma_s);
  state.counters["Gel_per_s"] = elements_per_s * 1e-9;
  state.counters["vs_fma_peak"] = elements_per_s * static_cast<double>(G) / peak_lanes;
#else
  state.SkipWithError("AVX2 micro-kernels are x86-64 only");
#endif
}
void BM_AttentionMicroKernel_f32(benchmark::State& s) { attention_micro_kernel<float>(s); }
void BM_AttentionMicroKernel_bf16(benchmark::State& s) { attention_micro_kernel<BFloat16>(s); }
BENCHMARK(BM_AttentionMicroKernel_f32)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseManualTime();
BENCHMARK(BM_AttentionMicroKernel_bf16)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseManualTime();

// ---------------------------------------------------------------- sampling
// args: vocab, batch, sampler (0 top_k_top_p(50, 0.9), 1 top_p(0.9), 2 multinomial, 3 greedy, 4 min_p(0.05))
SamplingParams sampler_of(std::int64_t s) {
  switch (s) {
    case 0: return SamplingParams::top_k_top_p_of(TopK{50}, TopP{0.9f});
    case 1: return SamplingParams::top_p_of(TopP{0.9f});
    case 2: return SamplingParams::multinomial();
    case 3: return SamplingParams::greedy();
    default: return SamplingParams::min_p_of(MinP{0.05f});
  }
}
// Logits ~ N(0, 3^2): a long-tailed, LLM-like spread (top-p 0.9 keeps tens to hundreds of tokens).
void BM_Sample(benchmark::State& state) {
  std::size_t const vocab = static_cast<std::size_t>(state.range(0));
  std::size_t const batch = static_cast<std::size_t>(state.range(1));
  auto const logits = normal_floats(vocab * batch, 3.0f, 5);
  std::vector<SamplingParams> params(batch, sampler_of(state.range(2)));
  std::vector<SampleKey> keys(batch);
  std::vector<std::uint32_t> out(batch);
  std::uint64_t step = 0;
  for (auto _ : state) {
    for (std::size_t r = 0; r < batch; ++r) keys[r] = {7, r, step};
    ++step;
    sample(bench::host(), ShapedView<float const, 2>(logits.data(), batch, vocab), params, {}, keys, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
// The sort-based reference (top-k 50 + top-p 0.9), rows spread over the same pool.
void BM_SampleSortReference(benchmark::State& state) {
  std::size_t const vocab = static_cast<std::size_t>(state.range(0));
  std::size_t const batch = static_cast<std::size_t>(state.range(1));
  auto const logits = normal_floats(vocab * batch, 3.0f, 5);
  std::vector<std::uint32_t> out(batch);
  std::uint64_t step = 0;
  for (auto _ : state) {
    bench::host().parallel_for(batch, [&](std::size_t b, std::size_t e) {
      std::vector<std::pair<float, std::uint32_t>> buf;
      for (std::size_t r = b; r < e; ++r) {
        out[r] = bench::sort_sample(logits.data() + r * vocab, vocab, state.range(2) == 0 ? 50 : 0, 0.9f, 1.0f,
                                    uniform_from_key({7, r, step}), buf);
      }
    });
    ++step;
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
void sample_args(benchmark::internal::Benchmark* b, int max_sampler) {
  for (std::int64_t v : {49152, 128256}) {
    for (std::int64_t batch : {1, 64}) {
      for (std::int64_t s = 0; s <= max_sampler; ++s) b->Args({v, batch, s});
    }
  }
}
BENCHMARK(BM_Sample)->Apply([](auto* b) { sample_args(b, 4); })->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_SampleSortReference)->Apply([](auto* b) { sample_args(b, 1); })->Unit(benchmark::kMicrosecond)->UseRealTime();

// ---------------------------------------------------------------- gemm
void BM_FmaPeak(benchmark::State& state) {
  std::size_t const iters = 1 << 22;
  for (auto _ : state) {
    bench::host().parallel_for(bench::host().concurrency(), [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) benchmark::DoNotOptimize(bench::fma_peak().chains(iters));
    });
  }
  double const flops = bench::fma_peak().flops_per_iter * static_cast<double>(iters) * static_cast<double>(bench::host().concurrency());
  state.SetLabel(bench::fma_peak().isa);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond)->UseRealTime();

// args: m, n, k, type (WeightType value), path (0 auto, 1 direct, 2 panels, 3 dequantized at load + sgemm)
void BM_Gemm(benchmark::State& state) {
  std::size_t const m = static_cast<std::size_t>(state.range(0));
  std::size_t const n = static_cast<std::size_t>(state.range(1));
  std::size_t const k = static_cast<std::size_t>(state.range(2));
  auto const type = static_cast<WeightType>(state.range(3));
  std::int64_t const path = state.range(4);
  auto const w_f32 = normal_floats(n * k, 0.05f, 9);  // [n][k]
  WeightMatrix const shape{type, nullptr, n, k};
  std::vector<std::byte> bytes(shape.size_bytes());
  // Quantize by writing simple valid blocks (scale 1/64, q from the f32 values): the values do not
  // matter for speed, only the layout and size.
  for (std::size_t r = 0; r < n; ++r) {
    std::byte* row = bytes.data() + r * shape.row_bytes();
    for (std::size_t c = 0; c < shape.row_bytes(); ++c) row[c] = static_cast<std::byte>((r * 31 + c * 7) & 0x3f);
    if (type == WeightType::f32) std::memcpy(row, w_f32.data() + r * k, k * 4);
  }
  WeightMatrix const w{type, bytes.data(), n, k};
  Buffer<float> deq(path == 3 ? n * k : 0);  // [n][k]
  if (path == 3) dequantize(bench::host(), w, ShapedView<float, 2>(deq.data(), n, k));
  WeightMatrix const w_deq{WeightType::f32, deq.data(), n, k};
  auto const x = normal_floats(m * k, 1.0f, 10);  // [m][k]
  std::vector<float> y(m * n);                    // [m][n]
  ShapedView<float const, 2> const xv(x.data(), m, k);
  ShapedView<float, 2> const yv(y.data(), m, n);
  for (auto _ : state) {
    switch (path) {
      case 1: KernelImpl<ops::Gemm, Host>::direct(bench::host(), xv, w, yv, 0.0f); break;
      case 2: KernelImpl<ops::Gemm, Host>::panels(bench::host(), xv, w, yv, 0.0f); break;
      case 3: gemm(bench::host(), xv, w_deq, yv); break;
      default: gemm(bench::host(), xv, w, yv); break;
    }
    benchmark::DoNotOptimize(y.data());
  }
  double const flops = 2.0 * static_cast<double>(m * n * k);
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight_MiB"] = static_cast<double>(path == 3 ? n * k * 4 : w.size_bytes()) / (1 << 20);
}
void gemm_args(benchmark::internal::Benchmark* b) {
  // SmolLM2-135M shapes: MLP up/gate (1536 x 576) and the tied LM head (49152 x 576).
  for (std::int64_t m : {1, 8, 16, 64, 512}) b->Args({m, 1536, 576, static_cast<std::int64_t>(WeightType::f32), 0});
  for (auto t : {WeightType::q4_1, WeightType::q8_0, WeightType::bf16}) {
    for (std::int64_t m : {1, 8, 16, 64, 512}) {
      for (std::int64_t path : {1, 2, 3}) b->Args({m, 1536, 576, static_cast<std::int64_t>(t), path});
    }
  }
  for (auto t : {WeightType::q8_0, WeightType::q4_1}) {
    for (std::int64_t path : {1, 3}) b->Args({1, 49152, 576, static_cast<std::int64_t>(t), path});
  }
  b->Args({512, 2048, 2048, static_cast<std::int64_t>(WeightType::f32), 0});
}
BENCHMARK(BM_Gemm)->Apply(gemm_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

// ---------------------------------------------------------------- 8-bit-activation matmul (the model's decode path)
// args: m, n, k, type (WeightType value). Each iteration times the interleaved layout (the model's
// default) and, right before it, the GGUF-order (row-major) kernel on the same weights and activations:
// vs_rowmajor is their speed ratio, weight_GBps the interleaved kernel's weight bytes read per second.
void BM_Q8Gemm(benchmark::State& state) {
  std::size_t const m = static_cast<std::size_t>(state.range(0));
  std::size_t const n = static_cast<std::size_t>(state.range(1));
  std::size_t const k = static_cast<std::size_t>(state.range(2));
  auto const type = static_cast<WeightType>(state.range(3));
  auto const rw = testing::random_weights(type, n, k, 11);  // [n][k / 32] blocks, finite f16 scales
  WeightMatrix const& w = rw.matrix;
  auto const packed = detail::InterleavedQuant::from(w);
  auto const x = normal_floats(m * k, 1.0f, 12);  // [m][k]
  detail::QuantizedActivations a;
  a.quantize(x.data(), m, k, true, false, detail::best_quant_level());
  std::vector<float> y(m * n);  // [m][n]
  auto pf = [](std::size_t len, auto&& f) { bench::host().parallel_for(len, f, 2); };
  detail::QuantGemmOutput const rowmajor{&w, y.data(), 0.0f};
  detail::InterleavedQuantOutput const out{&packed, y.data(), 0.0f};
  double row_s = 0, int_s = 0;
  time_with_peer(
      state,
      [&] {
        detail::quant_gemm_many(pf, a, std::span(&rowmajor, 1));
        benchmark::DoNotOptimize(y.data());
      },
      [&] {
        detail::interleaved_quant_gemm_many(pf, a, std::span(&out, 1));
        benchmark::DoNotOptimize(y.data());
      },
      row_s, int_s);
  double const iters = static_cast<double>(state.iterations());
  state.counters["weight_GBps"] = iters * static_cast<double>(w.size_bytes()) / int_s * 1e-9;
  state.counters["vs_rowmajor"] = row_s / int_s;
}
void q8_gemm_args(benchmark::internal::Benchmark* b) {
  // SmolLM2-135M shapes: MLP gate/up (1536 x 576, Q4_1) and the tied LM head (49152 x 576, Q8_0).
  for (std::int64_t m : {1, 8, 64}) b->Args({m, 1536, 576, static_cast<std::int64_t>(WeightType::q4_1)});
  for (std::int64_t m : {1, 8}) b->Args({m, 49152, 576, static_cast<std::int64_t>(WeightType::q8_0)});
}
BENCHMARK(BM_Q8Gemm)->Apply(q8_gemm_args)->Unit(benchmark::kMicrosecond)->UseManualTime();

}  // namespace

BENCHMARK_MAIN();
