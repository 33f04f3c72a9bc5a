#pragma once
// The decode kernel: one query token per work item (a decode step), all the query heads of one KV
// head (its GQA group) per CTA, CUDA cores, f32 softmax. Portable (CUDA and HIP).
//
// Floor (H100 SXM, 3.35 TB/s HBM3): decode reads every visible K and V element once, so
//   time >= 2 * kv_len * num_kv_heads * head_dim * sizeof(T) * batch / 3.35e12 s;
//   B=64, L=4096, 8 KV heads x 128, bf16: 1.07 GB -> 0.32 ms; B=128, L=8192: 4.29 GB -> 1.28 ms;
//   SmolLM2 (3 KV heads x 64), B=64, L=4096: 0.20 GB -> 60 us.
// Arithmetic is 2 * group FLOP per element loaded (~1 FLOP/byte at group 8 in bf16): far under the
// 990 TFLOP/s tensor or 67 TFLOP/s f32 rates, so the kernel is built to keep HBM busy:
//  * GQA: the CTA loads each K/V row once for all `group` query heads (FlashInfer's decode does the
//    same with its bdy = group threads); the q vectors of the group live in registers;
//  * 16-byte vector loads: a K/V row of head_dim elements is read by head_dim / (16 / sizeof(T))
//    consecutive lanes, so a warp reads whole 128-byte lines;
//  * memory parallelism: each thread issues `unroll` K and V loads before the first use; with 4 warps
//    and 2+ CTAs per SM this keeps >= 16 KiB in flight per SM (Little's law: 25 B/ns/SM x ~700 ns);
//  * split-KV (TilePlan): when batch x KV heads CTAs cannot fill the SMs several times, each token's
//    KV tiles are cut into chunks whose partial states merge_partials combines (FlashInfer's
//    BatchDecodeWithPagedKVCache + merge_states);
//  * skipped tiles: a listed q-tile visits only tiles some row attends; masked positions inside a
//    visited tile are not loaded either (the load is predicated on the mask bit).
// Online softmax (Milakov & Gimelshein 2018) per thread over its positions in the log2 domain, one
// rescale per `unroll` positions; the row groups and warps merge through shared memory at the end.

#include "piecrust/config.hpp"
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/attention/device_utils.hpp"
#include "piecrust/backends/cuda/attention/kernel_args.hpp"
#include "piecrust/backends/cuda/attention/tile_plan.hpp"
#include "piecrust/backends/cuda/runtime.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust::cuda::attention {

/// Compile-time shape of the decode kernel for head_dim D, KV element T and up to GMax query heads
/// per CTA.
/// Threads per decode CTA (a named constant: __launch_bounds__ is a macro on HIP, so no template commas).
inline constexpr int decode_threads = 128;

template <int D, class T, int GMax>
struct DecodeConfig {
  static constexpr int threads = decode_threads;
  static constexpr int warps = threads / gpu::warp_size;
  static constexpr int vec = detail::vec_elems<T>;     // elements per 16-byte load
  static constexpr int tpr = D / vec < gpu::warp_size ? D / vec : gpu::warp_size;  // lanes per K/V row
  static constexpr int chunks = D / (vec * tpr);       // 16-byte loads per lane per row (2 for f32 at D = 256)
  static constexpr int elems = chunks * vec;           // the lane's contiguous slice of a row
  static constexpr int rows = gpu::warp_size / tpr;    // positions one warp covers per load
  static constexpr int groups = warps * rows;          // row groups of the CTA
  static constexpr int unroll = GMax >= 8 ? 2 : 4;     // loads in flight per thread (register budget)
  static constexpr int step = groups * unroll;         // positions per CTA step
  static_assert(tpr >= 1 && tpr <= gpu::warp_size && gpu::warp_size % tpr == 0 && chunks * vec * tpr == D);
  /// Shared memory of the final merge: [groups][GMax] m and l, [groups][GMax][D] accumulators.
  static constexpr std::size_t smem_floats = std::size_t{groups} * GMax * (D + 2);
};

namespace detail {

/// The positions of tile `tile` that token-row `lim` sees when causal by position (bit j: tile*64 + j).
__device__ __forceinline__ std::uint64_t causal_word(std::uint32_t tile, long long lim) {
  long long const n = lim - static_cast<long long>(tile) * kv_tile + 1;  // visible positions in the tile
  if (n <= 0) return 0;
  return n >= kv_tile ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
}

/// Positions of the tile inside [0, kv_len).
__device__ __forceinline__ std::uint64_t bound_word(std::uint32_t tile, std::uint32_t kv_len) {
  long long const n = static_cast<long long>(kv_len) - static_cast<long long>(tile) * kv_tile;
  if (n <= 0) return 0;
  return n >= kv_tile ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
}

}  // namespace detail

template <int D, class T, int GMax>
__global__ void __launch_bounds__(decode_threads) decode_kernel(KernelArgs<T> a) {
  using C = DecodeConfig<D, T, GMax>;
  constexpr int vec = C::vec;
  constexpr int chunks = C::chunks;
  constexpr int elems = C::elems;
  constexpr int unroll = C::unroll;
  __shared__ float smem[C::smem_floats];  // [groups][GMax] m, [groups][GMax] l, [groups][GMax][D] acc

  WorkItem const w = a.items[blockIdx.x];
  unsigned const kv_head = blockIdx.y / a.head_blocks;
  unsigned const g0 = (blockIdx.y % a.head_blocks) * GMax;
  unsigned const gcount = min(static_cast<unsigned>(GMax), a.group - g0);
  unsigned const head0 = kv_head * a.group + g0;  // first query head of the CTA
  RequestInfo const req = a.requests[w.request];
  unsigned const token = w.token_begin;
  long long const lim = static_cast<long long>(req.kv_len) - req.qo_len + (token - req.qo_begin);

  int const tid = static_cast<int>(threadIdx.x);
  int const warp = tid / gpu::warp_size;
  int const lane = tid % gpu::warp_size;
  int const r = lane / C::tpr;    // row inside the warp
  int const sub = lane % C::tpr;  // slice of the row: elements sub * elems .. + elems

  // q of the CTA's heads, this thread's slice: [GMax][elems]
  float qv[GMax][elems];
#pragma unroll
  for (int g = 0; g < GMax; ++g) {
    float const* src = a.q + (static_cast<std::size_t>(token) * a.qo_heads + head0 + g) * D + sub * elems;
#pragma unroll
    for (int k = 0; k < elems; k += 4) {
      float4 const x = g < static_cast<int>(gcount) ? *reinterpret_cast<float4 const*>(src + k) : make_float4(0, 0, 0, 0);
      qv[g][k] = x.x;
      qv[g][k + 1] = x.y;
      qv[g][k + 2] = x.z;
      qv[g][k + 3] = x.w;
    }
  }
  float m[GMax], l[GMax], acc[GMax][elems];
#pragma unroll
  for (int g = 0; g < GMax; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int k = 0; k < elems; ++k) acc[g][k] = 0.0f;
  }

  std::size_t const slot_stride = std::size_t{a.num_kv_heads} * D;
  std::size_t const page_stride = 2 * std::size_t{a.page_size} * slot_stride;
  std::size_t const v_offset = std::size_t{a.page_size} * slot_stride;
  T const* const base = a.kv + std::size_t{kv_head} * D + sub * elems;
  std::uint32_t const* const pages = a.pages + req.page_begin;

  for (std::uint32_t e = w.begin; e < w.end; ++e) {
    std::uint32_t tile = e;
    std::uint64_t word;
    if (w.listed != 0) {
      Entry const en = a.entries[e];
      tile = en.tile;
      word = en.bits == full_tile ? ~std::uint64_t{0} : a.words[en.bits];
    } else {
      word = detail::causal_word(tile, lim);
    }
    word &= detail::bound_word(tile, req.kv_len);
    std::uint32_t const c0 = tile * kv_tile;
    for (int step0 = 0; step0 < static_cast<int>(kv_tile); step0 += C::step) {
      uint4 kr[unroll][chunks], vr[unroll][chunks];
      bool ok[unroll];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        int const j = step0 + (u * C::warps + warp) * C::rows + r;
        ok[u] = j < static_cast<int>(kv_tile) && ((word >> j) & 1u) != 0;
        T const* p = base;
        if (ok[u]) {
          std::uint32_t const pos = c0 + static_cast<std::uint32_t>(j);
          p = base + pages[pos / a.page_size] * page_stride + (pos % a.page_size) * slot_stride;
        }
#pragma unroll
        for (int c = 0; c < chunks; ++c) {
          kr[u][c] = detail::load16(p + c * vec, ok[u]);
          vr[u][c] = detail::load16(p + v_offset + c * vec, ok[u]);
        }
      }
      float s[unroll][GMax];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        float kf[elems];
#pragma unroll
        for (int c = 0; c < chunks; ++c) detail::unpack<T>(kr[u][c], kf + c * vec);
#pragma unroll
        for (int g = 0; g < GMax; ++g) {
          float d = 0.0f;
#pragma unroll
          for (int k = 0; k < elems; ++k) d = fmaf(qv[g][k], kf[k], d);
          s[u][g] = d;
        }
      }
      // Sum the row's slices: xor butterflies inside each aligned group of tpr lanes.
#pragma unroll
      for (int off = C::tpr / 2; off > 0; off /= 2) {
#pragma unroll
        for (int u = 0; u < unroll; ++u) {
#pragma unroll
          for (int g = 0; g < GMax; ++g) s[u][g] += gpu::shfl_xor(s[u][g], off);
        }
      }
      float vf[unroll][elems];
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
#pragma unroll
        for (int c = 0; c < chunks; ++c) detail::unpack<T>(vr[u][c], vf[u] + c * vec);
      }
#pragma unroll
      for (int g = 0; g < GMax; ++g) {
        float mx = -INFINITY;
#pragma unroll
        for (int u = 0; u < unroll; ++u) {
          s[u][g] = ok[u] ? a.transform(s[u][g]) : -INFINITY;
          mx = fmaxf(mx, s[u][g]);
        }
        float const m_new = fmaxf(m[g], mx);
        if (m_new == -INFINITY) continue;  // nothing seen yet by this row group
        float const corr = exp2f(m[g] - m_new);  // 0 on the first visible position (m = -inf)
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < elems; ++k) acc[g][k] *= corr;
#pragma unroll
        for (int u = 0; u < unroll; ++u) {
          float const p = exp2f(s[u][g] - m_new);  // 0 for a masked slot
          sum += p;
#pragma unroll
          for (int k = 0; k < elems; ++k) acc[g][k] = fmaf(p, vf[u][k], acc[g][k]);
        }
        l[g] = l[g] * corr + sum;
        m[g] = m_new;
      }
    }
  }

  // Merge the row groups: every lane of a group holds the same m and l and its own slice of acc.
  float* const sm_m = smem;                          // [groups][GMax]
  float* const sm_l = smem + C::groups * GMax;       // [groups][GMax]
  float* const sm_acc = smem + 2 * C::groups * GMax;  // [groups][GMax][D]
  int const grp = warp * C::rows + r;
#pragma unroll
  for (int g = 0; g < GMax; ++g) {
    if (sub == 0) {
      sm_m[grp * GMax + g] = m[g];
      sm_l[grp * GMax + g] = l[g];
    }
#pragma unroll
    for (int k = 0; k < elems; ++k) sm_acc[(grp * GMax + g) * D + sub * elems + k] = acc[g][k];
  }
  __syncthreads();
  bool const split = w.num_splits > 1;
  std::size_t const slot = split ? a.part_offset[token] + w.split : token;
  float* const o_base = split ? a.part_v : a.out;
  float* const s_base = split ? a.part_s : a.lse;
  for (int idx = tid; idx < static_cast<int>(gcount) * D; idx += C::threads) {
    int const g = idx / D;
    int const d = idx % D;
    float mx = -INFINITY;
    for (int i = 0; i < C::groups; ++i) mx = fmaxf(mx, sm_m[i * GMax + g]);
    float o = 0.0f, sum = 0.0f;
    if (mx != -INFINITY) {
      for (int i = 0; i < C::groups; ++i) {
        float const f = exp2f(sm_m[i * GMax + g] - mx);
        sum += f * sm_l[i * GMax + g];
        o += f * sm_acc[(i * GMax + g) * D + d];
      }
    }
    std::size_t const row = slot * a.qo_heads + head0 + g;
    o_base[row * D + d] = sum > 0.0f ? o / sum : 0.0f;
    if (d == 0) s_base[row] = sum > 0.0f ? (mx + log2f(sum)) * detail::ln2 : -INFINITY;
  }
}

/// Heads per decode CTA for a GQA group: the whole group up to 8 (register budget), else blocks of 8.
inline int decode_heads_per_cta(std::size_t group) { return group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8; }

}  // namespace piecrust::cuda::attention

#endif  // PIECRUST_DEVICE_COMPILE
