#pragma once
// HIP entry point of the shared dialect. The kernels under backends/cuda use only piecrust::gpu names;
// under hipcc (__HIPCC__) piecrust/backends/cuda/runtime.hpp maps them to HIP:
//   * runtime calls: PIECRUST_GPU_API(Name) pastes hipName for cudaName (MallocFromPoolAsync, FreeAsync,
//     MemcpyAsync, StreamSynchronize, DeviceGetDefaultMemPool, MemPoolSetAttribute, PointerGetAttributes,
//     GetLastError, ...), types likewise (hipStream_t, hipMemPool_t, hipError_t, ...);
//   * types whose names differ beyond the prefix: gpu::pointer_attributes_t (hipPointerAttribute_t);
//   * warp intrinsics: gpu::shfl / gpu::shfl_xor (HIP's __shfl / __shfl_xor take no lane mask);
//   * the warp size: gpu::warp_size = __AMDGCN_WAVEFRONT_SIZE (64 on CDNA: gfx90a, gfx942), never 32.
// Triple-chevron launches, __syncthreads, atomics, __fmul_rn / __fadd_rn and the float bit casts are
// spelled the same in both dialects.
#include <piecrust/backends/cuda/runtime.hpp>
