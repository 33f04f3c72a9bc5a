#pragma once
// The device dialect that CUDA and HIP share. Kernel sources under backends/cuda use only the names
// defined here (piecrust::gpu::*), never a vendor prefix directly, so that hipcc compiles them unchanged
// through backends/hip/include/piecrust/backends/hip/runtime.hpp.

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>
#else
#include <cuda_runtime.h>
#endif

#include <piecrust/core/error.hpp>

namespace piecrust::gpu {

#if defined(__HIPCC__)
using error_t = hipError_t;
using stream_t = hipStream_t;
inline constexpr error_t success = hipSuccess;
inline char const* error_string(error_t e) { return hipGetErrorString(e); }
#else
using error_t = cudaError_t;
using stream_t = cudaStream_t;
inline constexpr error_t success = cudaSuccess;
inline char const* error_string(error_t e) { return cudaGetErrorString(e); }
#endif

/// Threads in a warp (wavefront): 32 on NVIDIA, 64 on AMD CDNA. Kernels use this, never a literal.
#if defined(__HIPCC__) && defined(__AMDGCN_WAVEFRONT_SIZE)
inline constexpr int warp_size = __AMDGCN_WAVEFRONT_SIZE;
#elif defined(__HIPCC__)
inline constexpr int warp_size = 64;
#else
inline constexpr int warp_size = 32;
#endif

/// Throws piecrust::Error naming the call when a runtime call fails.
inline void check(error_t e, char const* what) {
  if (e != success) detail::fail<Error>("GPU runtime call ", what, " failed: ", error_string(e));
}

}  // namespace piecrust::gpu
