#pragma once
// Cuda implementation of qkv_rope_append: one block per token adds the biases, rotates q in place and k into
// the pool, and copies v into the pool. RoPE exactly as rope_kernel (double angles, separately rounded
// products), so the result equals the composition of the separate ops bit for bit.
// Floor: reads q, k, v (4 bytes per element) and writes q (4) and K/V (sizeof(T)) once; the composition
// also writes and re-reads every element of q, k and v in f32 (16 more bytes per K/V element).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/cuda/rope.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_kv.hpp"
#include "piecrust/kernels/qkv_rope_append.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

inline constexpr int qkv_threads = 128;

/// Token t: q [T][H][D] (+ bq) rotated in place; k [T][KH][D] (+ bk) rotated and v (+ bv) copied into the
/// pool at slots[t]. Biases may be null (none).
template <class KvT>
__global__ void __launch_bounds__(qkv_threads)
    qkv_rope_append_kernel(float* q, float const* k, float const* v, float const* bq, float const* bk, float const* bv,
                           std::uint32_t const* positions, std::uint32_t const* slots, double const* inv_freq,
                           std::size_t heads, std::size_t kv_heads, std::size_t head_dim, std::size_t half, bool adjacent,
                           PagedKv<KvT> kv) {
  __shared__ float cs[2 * rope_max_half];  // [2][half] cos then sin
  std::size_t const t = blockIdx.x;
  rope_fill_cos_sin(cs, positions[t], inv_freq, half);
  __syncthreads();
  float* qt = q + t * heads * head_dim;
  float const* kt = k + t * kv_heads * head_dim;
  std::size_t const page = slots[t] / kv.page_size;
  std::size_t const slot = slots[t] % kv.page_size;
  // Element c of head h of q (h < heads) or of k (h >= heads), bias added as add_bias does.
  auto value = [&](std::size_t h, std::size_t d) {
    if (h < heads) {
      std::size_t const c = h * head_dim + d;
      return bq != nullptr ? qt[c] + bq[c] : qt[c];
    }
    std::size_t const c = (h - heads) * head_dim + d;
    return bk != nullptr ? kt[c] + bk[c] : kt[c];
  };
  // Rotated pairs of q and k heads. Each pair is read and written by one thread, so q may be updated in place.
  for (std::size_t e = threadIdx.x; e < (heads + kv_heads) * half; e += blockDim.x) {
    std::size_t const h = e / half;  // q heads first, then k heads
    std::size_t const i = e % half;
    std::size_t const a = adjacent ? 2 * i : i;
    std::size_t const b = adjacent ? 2 * i + 1 : i + half;
    float const x0 = value(h, a);
    float const x1 = value(h, b);
    float y0 = 0.0f, y1 = 0.0f;
    rope_rotate(x0, x1, cs[i], cs[rope_max_half + i], y0, y1);
    if (h < heads) {
      qt[h * head_dim + a] = y0;
      qt[h * head_dim + b] = y1;
    } else {
      KvT* kd = kv.at(page, 0, slot, h - heads);
      kd[a] = from_float<KvT>(y0);
      kd[b] = from_float<KvT>(y1);
    }
  }
  // Dimensions past rotary_dim (partial rotary), as they are.
  std::size_t const rest = head_dim - 2 * half;
  for (std::size_t e = threadIdx.x; e < (heads + kv_heads) * rest; e += blockDim.x) {
    std::size_t const h = e / rest;
    std::size_t const d = 2 * half + e % rest;
    float const x = value(h, d);
    if (h < heads) {
      qt[h * head_dim + d] = x;
    } else {
      kv.at(page, 0, slot, h - heads)[d] = from_float<KvT>(x);
    }
  }
  // V.
  float const* vt = v + t * kv_heads * head_dim;
  KvT* vd = kv.at(page, 1, slot, 0);
  for (std::size_t e = threadIdx.x; e < kv_heads * head_dim; e += blockDim.x) {
    vd[e] = from_float<KvT>(bv != nullptr ? vt[e] + bv[e] : vt[e]);
  }
}

}  // namespace gpu::detail

template <>
struct KernelImpl<ops::QkvRopeAppend, Cuda> {
  template <class T>
  static void run(Cuda const& space, ShapedView<float, 3> q, ShapedView<float, 3> k, ShapedView<float, 3> v,
                  QkvBias const& bias, std::span<std::uint32_t const> positions, RopeParams const& params,
                  std::size_t rotary_dim, PagedKv<T> kv, std::span<std::uint32_t const> slots) {
    std::size_t const half = rotary_dim / 2;
    if (half > gpu::detail::rope_max_half) {
      detail::fail<Unsupported>("qkv_rope_append: rotary_dim = ", rotary_dim, " exceeds the Cuda kernel's limit of ",
                                2 * gpu::detail::rope_max_half);
    }
    if (q.extent(0) == 0) return;
    std::vector<double> const inv_freq = detail::rope_inv_freq(params, rotary_dim);  // [half]
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    auto const pos = scratch.upload(positions);
    auto const sl = scratch.upload(slots);
    auto const inv = scratch.upload(std::span<double const>(inv_freq));
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::qkv_rope_append_kernel<T>, static_cast<unsigned>(q.extent(0)),
                        gpu::detail::qkv_threads, 0, space.stream(), q.data(), k.data(), v.data(), bias.q.data(),
                        bias.k.data(), bias.v.data(), scratch.get(pos), scratch.get(sl), scratch.get(inv), q.extent(1),
                        k.extent(1), q.extent(2), half, params.style == RopeStyle::adjacent_pairs, kv);
    gpu::check_launch("qkv_rope_append_kernel");
  }
};

}  // namespace piecrust
#endif
