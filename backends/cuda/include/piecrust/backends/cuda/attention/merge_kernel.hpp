#pragma once
// merge_kernel: combines partial attention states (normalized output + natural-log lse) per
// (token, head); used for split-KV inside paged_attention and as the merge_states op.
// Floor: reads states x heads x (head_dim + 1) floats per token and writes one state: pure bandwidth,
// a few microseconds for decode-sized batches; one warp per (token, head), lanes over head_dim.

#include "piecrust/config.hpp"
#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/attention/device_utils.hpp"
#include "piecrust/backends/cuda/runtime.hpp"

// Device code: compiled by nvcc / hipcc only (a plain C++ compile of this header sees the includes).
#if PIECRUST_DEVICE_COMPILE
namespace piecrust::cuda::attention {

inline constexpr int merge_threads = 128;

/// Block t merges token t. With `offsets` (split-KV): token t's states are slots
/// [offsets[t], offsets[t + 1]) of v [slots][heads][head_dim] / s [slots][heads], and a token with no
/// slots was written directly by its kernel (skipped). Without: `states` states per token,
/// v [tokens][states][heads][head_dim], s [tokens][states][heads] (merge_states' layout).
/// (A template only so that every translation unit may include it: one definition per instantiation.)
template <int Threads = merge_threads>
__global__ void __launch_bounds__(Threads)
    merge_kernel(float const* v, float const* s, std::uint32_t const* offsets, unsigned states, unsigned heads,
                 unsigned head_dim, float* v_out, float* s_out) {
  unsigned const t = blockIdx.x;
  std::size_t first = std::size_t{t} * states;
  unsigned count = states;
  if (offsets != nullptr) {
    first = offsets[t];
    count = offsets[t + 1] - offsets[t];
    if (count == 0) return;
  }
  unsigned const warp = threadIdx.x / gpu::warp_size;
  unsigned const lane = threadIdx.x % gpu::warp_size;
  constexpr unsigned warps = Threads / gpu::warp_size;
  for (unsigned h = warp; h < heads; h += warps) {
    detail::merge_one(v + (first * heads + h) * head_dim, std::size_t{heads} * head_dim, s + first * heads + h, heads,
                      count, head_dim, v_out + (std::size_t{t} * heads + h) * head_dim, s_out + std::size_t{t} * heads + h,
                      lane, gpu::warp_size);
  }
}

}  // namespace piecrust::cuda::attention

#endif  // PIECRUST_DEVICE_COMPILE
