// GPU benchmark of piecrust's paged attention (and sampling) on CUDA, for bench/gpu/run.sh.
// Timing: CUDA events around each call (no host synchronization between calls, so host planning
// overlaps the previous call's GPU work, as in a model step), warm-up first, median of N.
// Output: one tab-separated line per measurement, joined by peers.py with the peers' numbers:
//   BENCH <case> piecrust <median_us> <bytes> <flops>
//   INFO  <case> <key> <value>
// <bytes> is the KV (or logits) traffic the floor counts, <flops> the attention FLOPs (4 per visible
// (row, position, dim) pair, QK^T and PV). The case names are the ones peers.py uses.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <piecrust/backends/cuda/attention/paged_attention.hpp>
#include <piecrust/backends/cuda/attention/tile_plan.hpp>
#include <piecrust/backends/cuda/copy.hpp>
#include <piecrust/backends/cuda/sample.hpp>
#include <piecrust/backends/cuda/space.hpp>
#include <piecrust/core/attention_mask.hpp>
#include <piecrust/kernels/bfloat16.hpp>

namespace {

using namespace piecrust;

int g_iters = 50;
int g_warmup = 10;

/// Fills n bf16 with a hash of the index, uniform in [-1, 1) (never zeros: see METHOD).
__global__ void fill_bf16(std::uint16_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    float const f = static_cast<float>(h & 0xffffffu) / 8388608.0f - 1.0f;
    p[i] = static_cast<std::uint16_t>(__float_as_uint(f) >> 16);
  }
}
__global__ void fill_f32(float* p, std::size_t n, std::uint32_t seed, float scale) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = scale * (static_cast<float>(h & 0xffffffu) / 8388608.0f - 1.0f);
  }
}

/// The bandwidth floor: a read-only sweep with 16-byte loads, 4 in flight per thread (STREAM-like).
__global__ void read_kernel(uint4 const* p, std::size_t n, unsigned magic, unsigned* sink) {
  unsigned acc = 0;
  std::size_t const stride = std::size_t{gridDim.x} * blockDim.x;
  std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 const a = p[i], b = p[i + stride], c = p[i + 2 * stride], d = p[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) acc ^= p[i].x ^ p[i].y ^ p[i].z ^ p[i].w;
  if (acc == magic) *sink = acc;  // never true in practice; keeps the loads alive
}

template <class F>
double median_us(Cuda const& space, F&& call) {
  for (int i = 0; i < g_warmup; ++i) call();
  std::vector<gpu::event_t> start(g_iters), stop(g_iters);
  for (int i = 0; i < g_iters; ++i) {
    gpu::check(cudaEventCreate(&start[i]), "EventCreate");
    gpu::check(cudaEventCreate(&stop[i]), "EventCreate");
  }
  for (int i = 0; i < g_iters; ++i) {
    gpu::check(cudaEventRecord(start[i], space.stream()), "EventRecord");
    call();
    gpu::check(cudaEventRecord(stop[i], space.stream()), "EventRecord");
  }
  space.fence();
  std::vector<double> us(g_iters);
  for (int i = 0; i < g_iters; ++i) {
    float ms = 0;
    gpu::check(cudaEventElapsedTime(&ms, start[i], stop[i]), "EventElapsedTime");
    us[i] = 1000.0 * ms;
    (void)cudaEventDestroy(start[i]);
    (void)cudaEventDestroy(stop[i]);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void emit(std::string const& name, double us, double bytes, double flops) {
  std::printf("BENCH\t%s\tpiecrust\t%.2f\t%.0f\t%.0f\n", name.c_str(), us, bytes, flops);
  std::fflush(stdout);
}
void info(std::string const& name, char const* key, double value) {
  std::printf("INFO\t%s\t%s\t%.4g\n", name.c_str(), key, value);
}

/// A batch of `batch` requests, request b with qo_lens[b] new tokens and kv_lens[b] positions, pages
/// allocated in order (page p of request b = b * max_pages + p).
struct PagedSetup {
  std::vector<std::uint32_t> qo_indptr{0}, kv_indptr{0}, kv_indices, last;
  std::size_t num_pages = 0;
  PagedSetup(std::vector<std::size_t> const& qo_lens, std::vector<std::size_t> const& kv_lens, std::size_t ps) {
    for (std::size_t b = 0; b < kv_lens.size(); ++b) {
      std::size_t const np = (kv_lens[b] + ps - 1) / ps;
      for (std::size_t p = 0; p < np; ++p) kv_indices.push_back(static_cast<std::uint32_t>(num_pages++));
      qo_indptr.push_back(static_cast<std::uint32_t>(qo_indptr.back() + qo_lens[b]));
      kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
      last.push_back(static_cast<std::uint32_t>(kv_lens[b] - (np - 1) * ps));
    }
  }
  [[nodiscard]] PagedBatch batch() const { return {qo_indptr, kv_indptr, kv_indices, last}; }
};

/// One attention measurement: allocates q / pool / out, times paged_attention, reports the host plan time.
void bench_attention(Cuda const& space, std::string const& name, std::size_t hq, std::size_t hkv, std::size_t d,
                     std::vector<std::size_t> const& qo_lens, std::vector<std::size_t> const& kv_lens,
                     std::vector<AttentionMask> const& masks, double visible_pairs) {
  constexpr std::size_t ps = 16;
  PagedSetup const setup(qo_lens, kv_lens, ps);
  std::size_t const tokens = setup.qo_indptr.back();
  Buffer<float, CudaMemory> q(tokens * hq * d, space.memory());                                 // [tokens][hq][d]
  Buffer<BFloat16, CudaMemory> kv(setup.num_pages * 2 * ps * hkv * d, space.memory());           // pool
  Buffer<float, CudaMemory> out(tokens * hq * d, space.memory()), lse(tokens * hq, space.memory());
  fill_f32<<<1024, 256, 0, space.stream()>>>(q.data(), q.size(), 1u, 1.0f);
  fill_bf16<<<4096, 256, 0, space.stream()>>>(reinterpret_cast<std::uint16_t*>(kv.data()), kv.size(), 2u);
  gpu::check_launch("fill");
  space.fence();
  PagedKv<BFloat16 const> const pool{kv.data(), setup.num_pages, ps, hkv, d};
  AttentionSelection const sel{masks, {}};
  PagedBatch const batch = setup.batch();
  auto call = [&] {
    paged_attention(space, ShapedView<float const, 3>(q.data(), tokens, hq, d), pool, batch,
                    ShapedView<float, 3>(out.data(), tokens, hq, d), ShapedView<float, 2>(lse.data(), tokens, hq), {}, sel);
  };
  double const us = median_us(space, call);
  // Bytes the floor counts: each visible K/V row once per KV head (decode); for prefill the floor is FLOPs.
  double kv_bytes = 0;
  for (std::size_t const l : kv_lens) kv_bytes += 2.0 * static_cast<double>(l) * static_cast<double>(hkv * d) * 2.0;
  emit(name, us, kv_bytes, 4.0 * visible_pairs * static_cast<double>(hq * d));
  // Host planning alone (tile lists, split-KV): part of every call.
  cuda::attention::PlanShape shape;
  shape.page_size = ps;
  shape.tokens_per_qtile = cuda::attention::prefill_tokens_per_qtile(hq / hkv);
  auto const t0 = std::chrono::steady_clock::now();
  int const reps = 5;
  std::size_t visited = 0;
  for (int i = 0; i < reps; ++i) visited = cuda::attention::build_tile_plan(batch, sel, shape).visited_tiles();
  double const plan_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  info(name, "host_plan_us", plan_us);
  info(name, "visited_kv_tiles", static_cast<double>(visited));
}

void bench_sampling(Cuda const& space, std::size_t rows, std::size_t vocab) {
  std::string const name = "sample_topk_topp_v128k_b" + std::to_string(rows);
  Buffer<float, CudaMemory> logits(rows * vocab, space.memory());  // [rows][vocab]
  Buffer<std::uint32_t, CudaMemory> out(rows, space.memory());
  fill_f32<<<1024, 256, 0, space.stream()>>>(logits.data(), logits.size(), 3u, 8.0f);
  gpu::check_launch("fill");
  space.fence();
  std::vector<SamplingParams> const params(rows, SamplingParams::top_k_top_p_of(TopK{50}, TopP{0.9f}));
  std::vector<SampleKey> keys(rows);
  for (std::size_t r = 0; r < rows; ++r) keys[r] = SampleKey{42, r, 0};
  double const us = median_us(space, [&] {
    sample(space, ShapedView<float const, 2>(logits.data(), rows, vocab), params, {}, keys,
           std::span<std::uint32_t>(out.data(), rows));
  });
  emit(name, us, static_cast<double>(rows * vocab * sizeof(float)), 0);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  }
  if (quick) {
    g_iters = 5;
    g_warmup = 2;
  }
  Cuda const space;
  int sms = 0;
  gpu::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, space.device()), "DeviceGetAttribute");
  cudaDeviceProp prop{};
  gpu::check(cudaGetDeviceProperties(&prop, space.device()), "GetDeviceProperties");
  std::printf("INFO\tdevice\tname\t%s\nINFO\tdevice\tsms\t%d\n", prop.name, sms);

  {  // Read bandwidth floor: 4 GiB, well past L2.
    std::size_t const bytes = std::size_t{4} << 30;
    Buffer<uint4, CudaMemory> buf(bytes / 16, space.memory());
    Buffer<unsigned, CudaMemory> sink(1, space.memory());
    fill_bf16<<<4096, 256, 0, space.stream()>>>(reinterpret_cast<std::uint16_t*>(buf.data()), bytes / 2, 7u);
    gpu::check_launch("fill");
    double const us = median_us(space, [&] {
      read_kernel<<<sms * 8, 256, 0, space.stream()>>>(buf.data(), buf.size(), 0x9e3779b9u, sink.data());
    });
    emit("stream_read_4gib", us, static_cast<double>(bytes), 0);
  }

  // Decode: one new token per request, causal, bf16 pool, page 16 (issue 7's shapes).
  struct Decode {
    char const* name;
    std::size_t batch, len, hq, hkv, d;
  };
  Decode const decodes[] = {{"decode_h32_8_d128_b64_l4096", 64, 4096, 32, 8, 128},
                            {"decode_h32_8_d128_b128_l8192", 128, 8192, 32, 8, 128},
                            {"decode_h9_3_d64_b64_l4096", 64, 4096, 9, 3, 64},
                            {"decode_h9_3_d64_b128_l8192", 128, 8192, 9, 3, 64}};
  for (Decode const& c : decodes) {
    bench_attention(space, c.name, c.hq, c.hkv, c.d, std::vector<std::size_t>(c.batch, 1),
                    std::vector<std::size_t>(c.batch, c.len), {}, static_cast<double>(c.batch * c.len));
  }

  // Prefill, causal, one request of S tokens.
  std::size_t const s = 8192;
  double const causal_pairs = static_cast<double>(s) * static_cast<double>(s + 1) / 2.0;
  bench_attention(space, "prefill_causal_h32_8_d128_s8192", 32, 8, 128, {s}, {s}, {}, causal_pairs);
  bench_attention(space, "prefill_causal_h32_8_d64_s8192", 32, 8, 64, {s}, {s}, {}, causal_pairs);

  {  // Masked prefill: sink 4 + window 1024 (Pie's attention-sink example), one request of S tokens.
    std::vector<AttentionMask> rows;
    double pairs = 0;
    for (std::size_t i = 0; i < s; ++i) {
      rows.push_back(AttentionMask::sink_window(i + 1, 4, 1024));
      pairs += static_cast<double>(rows.back().attended_count());
    }
    bench_attention(space, "masked_sinkwin_h32_8_d128_s8192", 32, 8, 128, {s}, {s}, rows, pairs);
  }
  {  // Tree masks (speculative decoding): 16 requests, prefix 4096, a 64-token binary tree each; token i
     // sees the prefix, its ancestors (parent (i - 1) / 2) and itself.
    std::size_t const b = 16, prefix = 4096, tree = 64;
    std::vector<AttentionMask> rows;
    double pairs = 0;
    for (std::size_t r = 0; r < b; ++r) {
      for (std::size_t i = 0; i < tree; ++i) {
        std::vector<std::uint8_t> bits(prefix + i + 1, 1);  // 1 = masked
        std::fill(bits.begin(), bits.begin() + static_cast<std::ptrdiff_t>(prefix), 0);
        for (std::size_t a = i;; a = (a - 1) / 2) {
          bits[prefix + a] = 0;
          if (a == 0) break;
        }
        rows.push_back(AttentionMask(Brle::from_bits(bits)));
        pairs += static_cast<double>(rows.back().attended_count());
      }
    }
    bench_attention(space, "masked_tree_h32_8_d128_b16_p4096_t64", 32, 8, 128, std::vector<std::size_t>(b, tree),
                    std::vector<std::size_t>(b, prefix + tree), rows, pairs);
  }

  for (std::size_t const rows : {std::size_t{1}, std::size_t{64}, std::size_t{128}}) bench_sampling(space, rows, 128256);
  return 0;
}
