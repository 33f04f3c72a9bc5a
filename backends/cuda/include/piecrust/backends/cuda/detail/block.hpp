#pragma once
// Block-level reductions and scans in the shared CUDA/HIP dialect. Every reduction here combines
// values in a fixed order (lane tree, then warp tree), so results do not depend on scheduling: the
// samplers rely on that for reproducibility.

#include "piecrust/backends/cuda/runtime.hpp"

#if PIECRUST_DEVICE_COMPILE
#include <cstdint>

namespace piecrust::gpu::detail {

/// Largest number of warps in a block of up to 1024 threads.
inline constexpr int max_warps = 1024 / warp_size;

template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) v = op(v, shfl_xor(v, offset));
  return v;
}

/// Reduces v over the block; every thread gets the result. `tmp` holds max_warps entries of shared
/// memory; the call begins and ends with a barrier, so tmp may be reused right after.
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* tmp) {
  int const lane = static_cast<int>(threadIdx.x) % warp_size;
  int const warp = static_cast<int>(threadIdx.x) / warp_size;
  int const warps = static_cast<int>((blockDim.x + warp_size - 1) / warp_size);
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) tmp[warp] = v;
  __syncthreads();
  T r = tmp[0];
  for (int w = 1; w < warps; ++w) r = op(r, tmp[w]);
  __syncthreads();
  return r;
}

/// Inclusive scan of v over the lanes of a warp (lane order).
template <class T>
__device__ __forceinline__ T warp_inclusive_scan(T v) {
  int const lane = static_cast<int>(threadIdx.x) % warp_size;
  for (int offset = 1; offset < warp_size; offset *= 2) {
    T const up = shfl(v, lane >= offset ? lane - offset : lane);
    if (lane >= offset) v += up;
  }
  return v;
}

/// Exclusive scan of v over the block in thread order; `total` receives the block sum. tmp: max_warps
/// entries of shared memory. Begins and ends with a barrier.
template <class T>
__device__ __forceinline__ T block_exclusive_scan(T v, T& total, T* tmp) {
  int const lane = static_cast<int>(threadIdx.x) % warp_size;
  int const warp = static_cast<int>(threadIdx.x) / warp_size;
  int const warps = static_cast<int>((blockDim.x + warp_size - 1) / warp_size);
  T const inclusive = warp_inclusive_scan(v);
  // The lane before's inclusive sum, not inclusive - v: exact for floating-point T too, so neighbouring
  // threads' ranges [exclusive, exclusive + v) meet where the scan put them.
  T exclusive = shfl(inclusive, lane > 0 ? lane - 1 : 0);
  if (lane == 0) exclusive = T{};
  __syncthreads();
  if (lane == warp_size - 1) tmp[warp] = inclusive;
  __syncthreads();
  T before = T{};
  T sum = T{};
  for (int w = 0; w < warps; ++w) {
    if (w < warp) before += tmp[w];
    sum += tmp[w];
  }
  __syncthreads();
  total = sum;
  return before + exclusive;
}

struct Sum {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  __device__ __forceinline__ float operator()(float a, float b) const { return a > b ? a : b; }
};

}  // namespace piecrust::gpu::detail
#endif
