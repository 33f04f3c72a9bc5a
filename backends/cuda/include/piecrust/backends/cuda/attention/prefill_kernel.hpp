#pragma once
// The prefill kernel: a tile of query rows against 64-position KV tiles on tensor cores
// (mma.sync m16n8k16, bf16 inputs, f32 accumulators), FlashAttention-2's structure (Dao 2023): Q in
// registers, S = Q K^T and O += P V per KV tile with the online softmax in between, P kept in registers
// (the m16n8 accumulator layout is the m16n8k16 A-operand layout), l reduced once at the end.
// CUDA only (PTX); HIP routes every token to the decode kernel instead (see TilePlan).
//
// Rows: packed GQA (FlashInfer's prefill does the same): the CTA serves one KV head and 64 rows =
// tokens_per_qtile tokens x group query heads, row r = token r / group, head r % group. Each K/V tile is
// loaded once for all of them, and decode rows of a mixed batch still fill `group` rows of the tile.
//
// Numerics: q (f32 in the interface) and, for an f32 pool, K and V are rounded to bf16 when staged;
// P is rounded to bf16 before P V; all accumulation and the softmax stay in f32. Expected deviation from
// the f32 host result: |out| error ~ 2^-8 relative per input, observed bound used by the tests:
// max abs error <= 2e-2 on unit-scale data, lse within 2e-2.
//
// Floor (H100 SXM, 990 TFLOP/s dense bf16): 4 * rows * visible positions * head_dim FLOP per head;
// causal S = 8192, 32 heads, D = 128: 4 * 32 * 8192^2 / 2 * 128 = 0.55 TFLOP -> 0.56 ms; D = 64 with
// 9 heads ~ 0.08 ms. mma.sync reaches ~ 60-70% of that peak on sm_90 (wgmma is needed beyond: not
// here); KV bytes (each tile read once per 64-row tile) stay under the FLOP time for D = 128.
// Skipped tiles: tiles that no row of the q-tile attends are not in the item's list, so sink + window
// (4 + 1024 of 8192) computes ~ 1/4 of the causal tiles.

#include "piecrust/config.hpp"
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/attention/decode_kernel.hpp"
#include "piecrust/backends/cuda/attention/device_utils.hpp"
#include "piecrust/backends/cuda/attention/kernel_args.hpp"
#include "piecrust/backends/cuda/attention/tile_plan.hpp"
#include "piecrust/backends/cuda/runtime.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust::cuda::attention {

template <int D>
struct PrefillConfig {
  static constexpr int warps = 4;
  static constexpr int threads = 128;  // 4 warps x 16 rows (mma.sync m16) = 64 rows (== __launch_bounds__)
  static constexpr int rows = 64;
  static constexpr int kv = static_cast<int>(kv_tile);
  /// bf16 elements per shared-memory row: D + 8 pads each row by 16 bytes, so the 8 rows one ldmatrix
  /// phase reads start in different 16-byte bank groups (no conflicts; CUTLASS's padded layouts).
  static constexpr int stride = D + 8;
  static constexpr int tile_elems = kv * stride;
  static constexpr int chunks = kv * D / 8;  // 16-byte bf16 chunks per K (or V) tile
  static_assert(chunks % threads == 0);
  /// Two stages x (K, V) tiles of bf16: 69,632 bytes for D = 128, 36,864 for D = 64.
  static constexpr std::size_t smem_bytes = std::size_t{2} * 2 * tile_elems * 2;
};

#if PIECRUST_ATTENTION_TENSOR_CORES

namespace detail {

/// Issues the loads of one K/V tile into `k_s` / `v_s` ([64][stride] bf16 each). bf16 pools go through
/// cp.async (asynchronous, zero-fill past kv_len); f32 pools are loaded, rounded and stored.
template <int D, class T>
__device__ __forceinline__ void load_tile(KernelArgs<T> const& a, RequestInfo const& req, std::uint32_t tile,
                                          unsigned kv_head, std::uint16_t* k_s, std::uint16_t* v_s) {
  using C = PrefillConfig<D>;
  std::size_t const slot_stride = std::size_t{a.num_kv_heads} * D;
  std::size_t const page_stride = 2 * std::size_t{a.page_size} * slot_stride;
  std::size_t const v_offset = std::size_t{a.page_size} * slot_stride;
  std::uint32_t const* const pages = a.pages + req.page_begin;
#pragma unroll
  for (int i = 0; i < C::chunks / C::threads; ++i) {
    int const c = static_cast<int>(threadIdx.x) + i * C::threads;
    int const row = c / (D / 8);
    int const col = (c % (D / 8)) * 8;
    std::uint32_t const pos = tile * kv_tile + static_cast<std::uint32_t>(row);
    bool const valid = pos < req.kv_len;
    T const* src = a.kv;
    if (valid) {
      src = a.kv + pages[pos / a.page_size] * page_stride + (pos % a.page_size) * slot_stride + std::size_t{kv_head} * D + col;
    }
    if constexpr (sizeof(T) == 2) {
      cp_async16(k_s + row * C::stride + col, src, valid);
      cp_async16(v_s + row * C::stride + col, valid ? src + v_offset : src, valid);
    } else {
      uint4 kb = make_uint4(0u, 0u, 0u, 0u), vb = kb;
      if (valid) {
        float4 const k0 = reinterpret_cast<float4 const*>(src)[0];
        float4 const k1 = reinterpret_cast<float4 const*>(src)[1];
        float4 const v0 = reinterpret_cast<float4 const*>(src + v_offset)[0];
        float4 const v1 = reinterpret_cast<float4 const*>(src + v_offset)[1];
        kb = make_uint4(pack_bf16(k0.x, k0.y), pack_bf16(k0.z, k0.w), pack_bf16(k1.x, k1.y), pack_bf16(k1.z, k1.w));
        vb = make_uint4(pack_bf16(v0.x, v0.y), pack_bf16(v0.z, v0.w), pack_bf16(v1.x, v1.y), pack_bf16(v1.z, v1.w));
      }
      *reinterpret_cast<uint4*>(k_s + row * C::stride + col) = kb;
      *reinterpret_cast<uint4*>(v_s + row * C::stride + col) = vb;
    }
  }
  cp_async_commit();
}

}  // namespace detail

template <int D, class T>
__global__ void __launch_bounds__(128) prefill_kernel(KernelArgs<T> a) {
  using C = PrefillConfig<D>;
  constexpr int ksteps = D / 16;  // k-steps of Q K^T
  constexpr int dtiles = D / 8;   // n-tiles of O
  constexpr int ntiles = C::kv / 8;  // n-tiles of S
  extern __shared__ uint4 smem_raw[];
  auto* const smem = reinterpret_cast<std::uint16_t*>(smem_raw);  // [2 stages][K, V][64][stride] bf16

  WorkItem const w = a.items[blockIdx.x];
  unsigned const kv_head = blockIdx.y;
  RequestInfo const req = a.requests[w.request];
  int const warp = static_cast<int>(threadIdx.x) / gpu::warp_size;
  int const lane = static_cast<int>(threadIdx.x) % gpu::warp_size;
  int const gr = lane / 4;  // accumulator row inside the m16 tile (and + 8)
  int const tq = lane % 4;  // accumulator column pair
  unsigned const rows_used = w.token_count * a.group;

  // The thread's two rows (gr and gr + 8 of the warp's 16): token, head, causal limit, validity.
  bool row_ok[2];
  unsigned row_token[2];  // token index inside the q-tile
  long long lim[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    unsigned const rr = static_cast<unsigned>(warp * 16 + gr + 8 * h);
    row_ok[h] = rr < rows_used;
    row_token[h] = row_ok[h] ? rr / a.group : 0;
    lim[h] = static_cast<long long>(req.kv_len) - req.qo_len + (w.token_begin - req.qo_begin) + row_token[h];
  }

  // Q as A fragments (bf16), straight from global: a0 (row gr, k 2tq..), a1 (row gr+8), a2 / a3 (k + 8).
  unsigned qa[ksteps][4];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    unsigned const rr = static_cast<unsigned>(warp * 16 + gr + 8 * h);
    float const* qrow = nullptr;
    if (row_ok[h]) {
      unsigned const token = w.token_begin + rr / a.group;
      unsigned const head = kv_head * a.group + rr % a.group;
      qrow = a.q + (static_cast<std::size_t>(token) * a.qo_heads + head) * D;
    }
#pragma unroll
    for (int ks = 0; ks < ksteps; ++ks) {
      float2 x = make_float2(0.0f, 0.0f), y = x;
      if (qrow != nullptr) {
        x = *reinterpret_cast<float2 const*>(qrow + ks * 16 + 2 * tq);
        y = *reinterpret_cast<float2 const*>(qrow + ks * 16 + 8 + 2 * tq);
      }
      qa[ks][h] = detail::pack_bf16(x.x, x.y);
      qa[ks][2 + h] = detail::pack_bf16(y.x, y.y);
    }
  }

  float o[dtiles][4];
#pragma unroll
  for (int i = 0; i < dtiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};

  auto tile_of = [&](std::uint32_t e) { return w.listed != 0 ? a.entries[e].tile : e; };
  std::uint32_t const n = w.end - w.begin;
  if (n > 0) detail::load_tile<D>(a, req, tile_of(w.begin), kv_head, smem, smem + C::tile_elems);
  for (std::uint32_t it = 0; it < n; ++it) {
    int const stage = static_cast<int>(it & 1u);
    std::uint16_t const* const k_s = smem + stage * 2 * C::tile_elems;
    std::uint16_t const* const v_s = k_s + C::tile_elems;
    if (it + 1 < n) {
      std::uint16_t* const nk = smem + (stage ^ 1) * 2 * C::tile_elems;
      detail::load_tile<D>(a, req, tile_of(w.begin + it + 1), kv_head, nk, nk + C::tile_elems);
      detail::cp_async_wait<1>();
    } else {
      detail::cp_async_wait<0>();
    }
    __syncthreads();

    // This tile's visible positions for the thread's two rows (bit j = position tile*64 + j).
    std::uint32_t const e = w.begin + it;
    std::uint32_t tile = e;
    std::uint64_t word[2];
    if (w.listed != 0) {
      Entry const en = a.entries[e];
      tile = en.tile;
#pragma unroll
      for (int h = 0; h < 2; ++h) word[h] = en.bits == full_tile ? ~std::uint64_t{0} : a.words[en.bits + row_token[h]];
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) word[h] = detail::causal_word(tile, lim[h]);
    }
    std::uint64_t const bound = detail::bound_word(tile, req.kv_len);
#pragma unroll
    for (int h = 0; h < 2; ++h) word[h] = row_ok[h] ? (word[h] & bound) : 0;

    // S = Q K^T: 16 rows x 64 positions per warp.
    float s[ntiles][4];
#pragma unroll
    for (int i = 0; i < ntiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < ksteps; ++ks) {
#pragma unroll
      for (int np = 0; np < ntiles / 2; ++np) {
        // Matrices: (pos n0.., d k0..), (pos n0.., d k0+8..), (pos n0+8.., d k0..), (pos n0+8.., d k0+8..).
        int const pos = np * 16 + (lane % 8) + (lane / 16) * 8;
        int const d = ks * 16 + ((lane / 8) % 2) * 8;
        unsigned b[4];
        detail::ldmatrix_x4(b, k_s + pos * C::stride + d);
        detail::mma_bf16(s[2 * np], qa[ks], b[0], b[1]);
        detail::mma_bf16(s[2 * np + 1], qa[ks], b[2], b[3]);
      }
    }

    // Scale / soft-cap, mask, online softmax (rows gr: elements 0, 1; gr + 8: elements 2, 3).
    bool const all_visible = (word[0] & word[1]) == ~std::uint64_t{0};
#pragma unroll
    for (int i = 0; i < ntiles; ++i) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        int const col = i * 8 + 2 * tq + (k & 1);
        bool const vis = all_visible || ((word[k / 2] >> col) & 1u) != 0;
        s[i][k] = vis ? a.transform(s[i][k]) : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int i = 0; i < ntiles; ++i) mx = fmaxf(mx, fmaxf(s[i][2 * h], s[i][2 * h + 1]));
      mx = fmaxf(mx, gpu::shfl_xor(mx, 1));
      mx = fmaxf(mx, gpu::shfl_xor(mx, 2));
      float const m_new = fmaxf(m[h], mx);
      float const m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with nothing visible yet stays 0
      float const corr = exp2f(m[h] - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int i = 0; i < ntiles; ++i) {
        s[i][2 * h] = exp2f(s[i][2 * h] - m_use);
        s[i][2 * h + 1] = exp2f(s[i][2 * h + 1] - m_use);
        sum += s[i][2 * h] + s[i][2 * h + 1];
      }
      l[h] = l[h] * corr + sum;  // this lane's columns only; the 4 lanes of a row add up at the end
      m[h] = m_new;
#pragma unroll
      for (int i = 0; i < dtiles; ++i) {
        o[i][2 * h] *= corr;
        o[i][2 * h + 1] *= corr;
      }
    }

    // O += P V: P's accumulator layout is the A layout of m16n8k16 (n-tiles 2kk, 2kk + 1 -> k-step kk).
#pragma unroll
    for (int kk = 0; kk < ntiles / 2; ++kk) {
      unsigned pa[4];
      pa[0] = detail::pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = detail::pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = detail::pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = detail::pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < dtiles / 2; ++dp) {
        // Transposed matrices: (pos k0.., d n0..), (pos k0+8.., d n0..), (pos k0.., d n0+8..), (pos k0+8.., d n0+8..).
        int const pos = kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        int const d = dp * 16 + (lane / 16) * 8;
        unsigned b[4];
        detail::ldmatrix_x4_trans(b, v_s + pos * C::stride + d);
        detail::mma_bf16(o[2 * dp], pa, b[0], b[1]);
        detail::mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this stage
  }

  // Finish: l over the 4 lanes of each row, normalize, write out / lse or the partial state.
  bool const split = w.num_splits > 1;
  float* const o_base = split ? a.part_v : a.out;
  float* const s_base = split ? a.part_s : a.lse;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += gpu::shfl_xor(sum, 1);
    sum += gpu::shfl_xor(sum, 2);
    if (!row_ok[h]) continue;
    unsigned const rr = static_cast<unsigned>(warp * 16 + gr + 8 * h);
    unsigned const token = w.token_begin + rr / a.group;
    unsigned const head = kv_head * a.group + rr % a.group;
    std::size_t const slot = split ? a.part_offset[token] + w.split : token;
    std::size_t const row = slot * a.qo_heads + head;
    float const inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int i = 0; i < dtiles; ++i) {
      *reinterpret_cast<float2*>(o_base + row * D + i * 8 + 2 * tq) = make_float2(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
    }
    if (tq == 0) s_base[row] = sum > 0.0f ? (m[h] + log2f(sum)) * detail::ln2 : -INFINITY;
  }
}

#endif  // PIECRUST_ATTENTION_TENSOR_CORES

}  // namespace piecrust::cuda::attention

#endif  // PIECRUST_DEVICE_COMPILE
