#pragma once
// The device dialect that CUDA and HIP share. Kernel sources under backends/cuda use only the names
// defined here (piecrust::gpu::*), never a vendor prefix directly, so that hipcc compiles them unchanged
// through backends/hip/include/piecrust/backends/hip/runtime.hpp.
//
// Host-side runtime calls are thin wrappers (gpu::malloc_async, gpu::memcpy_async, ...) over
// PIECRUST_GPU_API(Name), which pastes the vendor prefix (cudaName / hipName). Device-side names
// (warp shuffles, the warp size, bf16 conversions) are functions in the same namespace.

#if defined(__HIPCC__)
#include <hip/hip_runtime.h>
#define PIECRUST_GPU_API(name) hip##name
#else
#include <cuda_runtime.h>
#define PIECRUST_GPU_API(name) cuda##name
#endif

/// Launches `kernel` on `stream` (the one spelling of a launch in the backend). With
/// PIECRUST_GPU_EMULATION (tests only: tests/gpu/emulation compiles the kernels as plain C++ and runs
/// each block's threads cooperatively on the host) the emulator provides the launch.
#if defined(PIECRUST_GPU_EMULATION)
#define PIECRUST_GPU_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::piecrust_emulation::launch(kernel, grid, block, smem, stream, __VA_ARGS__)
#else
#define PIECRUST_GPU_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

#include <cstddef>
#include <cstdint>

#include <piecrust/config.hpp>
#include <piecrust/core/error.hpp>

namespace piecrust::gpu {

using error_t = PIECRUST_GPU_API(Error_t);
using stream_t = PIECRUST_GPU_API(Stream_t);
using event_t = PIECRUST_GPU_API(Event_t);
using mem_pool_t = PIECRUST_GPU_API(MemPool_t);
using graph_t = PIECRUST_GPU_API(Graph_t);
using graph_exec_t = PIECRUST_GPU_API(GraphExec_t);
#if defined(__HIPCC__)
using pointer_attributes_t = hipPointerAttribute_t;
#else
using pointer_attributes_t = cudaPointerAttributes;
#endif
inline constexpr error_t success = PIECRUST_GPU_API(Success);
inline char const* error_string(error_t e) { return PIECRUST_GPU_API(GetErrorString)(e); }

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

/// Checks the last kernel launch (a bad launch configuration is reported here, not at the next sync).
inline void check_launch(char const* kernel) { check(PIECRUST_GPU_API(GetLastError)(), kernel); }

// ---- host-side runtime calls -------------------------------------------------------------------

inline int current_device() {
  int d = 0;
  check(PIECRUST_GPU_API(GetDevice)(&d), "GetDevice");
  return d;
}
inline int device_count() {
  int n = 0;
  check(PIECRUST_GPU_API(GetDeviceCount)(&n), "GetDeviceCount");
  return n;
}

/// Makes `device` current for the scope and restores the previous device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(current_device()) {
    if (device != previous_) check(PIECRUST_GPU_API(SetDevice)(device), "SetDevice");
  }
  DeviceGuard(DeviceGuard const&) = delete;
  DeviceGuard& operator=(DeviceGuard const&) = delete;
  ~DeviceGuard() { (void)PIECRUST_GPU_API(SetDevice)(previous_); }

 private:
  int previous_;
};

inline void stream_synchronize(stream_t s) { check(PIECRUST_GPU_API(StreamSynchronize)(s), "StreamSynchronize"); }

/// Stream-ordered copy; the direction is inferred from the pointers (unified virtual addressing).
inline void memcpy_async(void* dst, void const* src, std::size_t bytes, stream_t s) {
  if (bytes == 0) return;
  check(PIECRUST_GPU_API(MemcpyAsync)(dst, src, bytes, PIECRUST_GPU_API(MemcpyDefault), s), "MemcpyAsync");
}
inline void memset_async(void* dst, int value, std::size_t bytes, stream_t s) {
  if (bytes == 0) return;
  check(PIECRUST_GPU_API(MemsetAsync)(dst, value, bytes, s), "MemsetAsync");
}

/// Page-locked host memory: copies from it are true DMA (asynchronous to the host, capturable in a graph).
inline void* malloc_host(std::size_t bytes) {
  void* p = nullptr;
#if defined(__HIPCC__)
  check(hipHostMalloc(&p, bytes, 0), "HostMalloc");
#else
  check(cudaMallocHost(&p, bytes), "MallocHost");
#endif
  return p;
}
inline void free_host(void* p) noexcept {
  if (p == nullptr) return;
#if defined(__HIPCC__)
  (void)hipHostFree(p);
#else
  (void)cudaFreeHost(p);
#endif
}

/// Events without timing: only to learn that the work queued before them has finished.
inline event_t event_create() {
  event_t e{};
  check(PIECRUST_GPU_API(EventCreateWithFlags)(&e, PIECRUST_GPU_API(EventDisableTiming)), "EventCreateWithFlags");
  return e;
}
inline void event_record(event_t e, stream_t s) { check(PIECRUST_GPU_API(EventRecord)(e, s), "EventRecord"); }
inline void event_synchronize(event_t e) { check(PIECRUST_GPU_API(EventSynchronize)(e), "EventSynchronize"); }
/// Waits for the event's work, then destroys it. Never throws (called from destructors).
inline void event_destroy(event_t e) noexcept {
  if (e == nullptr) return;
  (void)PIECRUST_GPU_API(EventSynchronize)(e);
  (void)PIECRUST_GPU_API(EventDestroy)(e);
}

/// The device's default memory pool (stream-ordered allocator).
inline mem_pool_t default_mem_pool(int device) {
  mem_pool_t pool{};
  check(PIECRUST_GPU_API(DeviceGetDefaultMemPool)(&pool, device), "DeviceGetDefaultMemPool");
  return pool;
}
inline void set_release_threshold(mem_pool_t pool, std::uint64_t bytes) {
  check(PIECRUST_GPU_API(MemPoolSetAttribute)(pool, PIECRUST_GPU_API(MemPoolAttrReleaseThreshold), &bytes),
        "MemPoolSetAttribute(ReleaseThreshold)");
}
inline void* malloc_from_pool_async(std::size_t bytes, mem_pool_t pool, stream_t s) {
  void* p = nullptr;
  check(PIECRUST_GPU_API(MallocFromPoolAsync)(&p, bytes, pool, s), "MallocFromPoolAsync");
  return p;
}
/// Never throws (called from destructors). If the stream-ordered free is refused (e.g. the stream is
/// gone), falls back to a synchronous free so that the block is not leaked.
inline void free_async(void* p, stream_t s) noexcept {
  if (p == nullptr) return;
  if (PIECRUST_GPU_API(FreeAsync)(p, s) != success) {
    (void)PIECRUST_GPU_API(GetLastError)();
    (void)PIECRUST_GPU_API(Free)(p);
  }
}

// ---- device-side names -------------------------------------------------------------------------

#if defined(__CUDACC__) || defined(__HIPCC__)
/// Lane mask of a full warp for the *_sync intrinsics (HIP 5.2's shuffles take no mask).
#if defined(__HIPCC__)
template <class T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  return __shfl_xor(v, lane_mask, warp_size);
}
template <class T>
__device__ __forceinline__ T shfl(T v, int src_lane) {
  return __shfl(v, src_lane, warp_size);
}
#else
template <class T>
__device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask, warp_size);
}
template <class T>
__device__ __forceinline__ T shfl(T v, int src_lane) {
  return __shfl_sync(0xffffffffu, v, src_lane, warp_size);
}
#endif
#endif

}  // namespace piecrust::gpu
