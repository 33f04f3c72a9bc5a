#pragma once
// Host emulation of the part of the CUDA runtime and device dialect that piecrust's kernels use, for
// testing the kernels' logic on a machine without a GPU. Not a CUDA implementation: one device, every
// "stream" synchronous, device memory is host memory (tracked, so pointer attributes tell device from
// host), and a kernel launch runs each block's threads as cooperative user-space threads that switch at
// __syncthreads and at warp shuffles: each thread starts on its own stack with makecontext / setcontext,
// and every later switch is _setjmp / _longjmp, which (unlike swapcontext) saves no signal mask, so a switch
// makes no system call. The build must not define _FORTIFY_SOURCE: its longjmp check rejects a jump to
// another stack. Kernels are compiled as plain C++ (the translation unit
// defines __CUDACC__ and PIECRUST_GPU_EMULATION, and puts this folder first on the include path).
//
// What it checks: indexing, barriers placed where every thread reaches them, shared-memory protocols,
// reductions/scans/pivot searches, results against the host oracle. What it cannot: memory-model races
// between threads of a real GPU, timing, occupancy, nvcc-specific code generation.

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

// ---- qualifiers ------------------------------------------------------------------------------------
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

// ---- runtime types -------------------------------------------------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorNoDevice = 100 };
enum cudaMemcpyKind { cudaMemcpyDefault = 4 };
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3
};
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
struct CUstream_emulated {};
struct CUevent_emulated {};
struct CUmempool_emulated {};
struct CUgraph_emulated {};
struct CUgraphexec_emulated {};
using cudaStream_t = CUstream_emulated*;
using cudaEvent_t = CUevent_emulated*;
using cudaMemPool_t = CUmempool_emulated*;
using cudaGraph_t = CUgraph_emulated*;
using cudaGraphExec_t = CUgraphexec_emulated*;
struct cudaPointerAttributes {
  cudaMemoryType type = cudaMemoryTypeUnregistered;
  int device = 0;
  void* devicePointer = nullptr;
  void* hostPointer = nullptr;
};

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) uint4 {
  unsigned x = 0, y = 0, z = 0, w = 0;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
struct alignas(16) float4 {
  float x = 0, y = 0, z = 0, w = 0;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}  // NOLINT: implicit like CUDA's
};

namespace piecrust_emulation {

/// "Device" allocations: start -> size, so that interior pointers are recognized.
inline std::map<std::uintptr_t, std::size_t>& allocations() {
  static std::map<std::uintptr_t, std::size_t> m;
  return m;
}
inline bool is_device(void const* p) {
  auto const& m = allocations();
  auto const u = reinterpret_cast<std::uintptr_t>(p);
  auto it = m.upper_bound(u);
  if (it == m.begin()) return false;
  --it;
  return u < it->first + it->second;
}
inline cudaError_t& last_error() {
  static cudaError_t e = cudaSuccess;
  return e;
}

}  // namespace piecrust_emulation

inline char const* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
inline cudaError_t cudaGetLastError() { return std::exchange(piecrust_emulation::last_error(), cudaSuccess); }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
/// A small "device" (4 multiprocessors, one resident block each), so that the split-KV heuristics of the
/// attention planner split long sequences and the merge of partial states is exercised.
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int device) {
  *v = 4;
  return device == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, Kernel, int, std::size_t) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
  static CUstream_emulated stream;
  *s = &stream;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* dst, void const* src, std::size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int v, std::size_t bytes, cudaStream_t) {
  std::memset(dst, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int) {
  static CUmempool_emulated p;
  *pool = &p;
  return cudaSuccess;
}
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
inline cudaError_t cudaMallocFromPoolAsync(void** p, std::size_t bytes, cudaMemPool_t, cudaStream_t) {
  // Filled with a NaN pattern (0xff bytes) so that reads of unwritten memory show up in results.
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (*p == nullptr) return cudaErrorInvalidValue;
  std::memset(*p, 0xff, bytes);
  piecrust_emulation::allocations()[reinterpret_cast<std::uintptr_t>(*p)] = bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  if (p == nullptr) return cudaSuccess;
  if (piecrust_emulation::allocations().erase(reinterpret_cast<std::uintptr_t>(p)) == 0) return cudaErrorInvalidValue;
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) { return cudaFreeAsync(p, nullptr); }
// Pinned host memory is plain host memory here; events complete at once (every call runs synchronously).
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p == nullptr ? cudaErrorInvalidValue : cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline constexpr unsigned cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_emulated;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, void const* p) {
  *a = {};
  a->type = piecrust_emulation::is_device(p) ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  return cudaSuccess;
}

// ---- cooperative threads ---------------------------------------------------------------------------
inline uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace piecrust_emulation {

inline constexpr unsigned warp = 32;
inline constexpr std::size_t stack_bytes = 256 * 1024;

struct Block {
  struct Thread {
    ucontext_t ctx{};  // the thread's start (makecontext)
    jmp_buf at{};      // where it yielded
    bool started = false;
    bool done = false;
  };
  jmp_buf scheduler{};  // where the launch loop resumed the current thread
  std::vector<Thread> threads;
  std::size_t current = 0;
  std::size_t live = 0;
  std::size_t block_arrived = 0, block_generation = 0;
  std::vector<std::size_t> warp_arrived, warp_generation, warp_live;
  std::vector<unsigned long long> lanes;  // [threads] shuffle slots
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
};

inline Block*& current_block() {
  static Block* b = nullptr;
  return b;
}

inline std::vector<std::unique_ptr<char[]>>& stacks() {
  static std::vector<std::unique_ptr<char[]>> s;
  return s;
}

[[gnu::noinline]] inline void yield() {
  Block& b = *current_block();
  if (_setjmp(b.threads[b.current].at) == 0) _longjmp(b.scheduler, 1);
}

/// Waits until every live participant arrived (arrived, generation: the barrier's state).
inline void barrier(std::size_t& arrived, std::size_t& generation, std::size_t live) {
  std::size_t const g = generation;
  if (++arrived >= live) {
    arrived = 0;
    ++generation;
    return;
  }
  while (generation == g) yield();
}

inline void syncthreads() {
  Block& b = *current_block();
  barrier(b.block_arrived, b.block_generation, b.live);
}
inline void syncwarp() {
  Block& b = *current_block();
  std::size_t const w = b.current / warp;
  barrier(b.warp_arrived[w], b.warp_generation[w], b.warp_live[w]);
}

template <class T>
T exchange(T v, unsigned src_lane) {
  static_assert(sizeof(T) <= 8);
  Block& b = *current_block();
  std::size_t const w = b.current / warp;
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  b.lanes[b.current] = bits;
  syncwarp();
  std::size_t const src = w * warp + (src_lane % warp);
  T r{};
  bits = src < b.threads.size() ? b.lanes[src] : bits;
  std::memcpy(&r, &bits, sizeof(T));
  syncwarp();
  return r;
}

/// A thread's whole life: the kernel body, then its exit, which may complete a barrier the others wait at
/// (an exited thread no longer participates, as on a GPU).
inline void entry() {
  Block& b = *current_block();
  b.body(b.body_arg);
  std::size_t const i = b.current;
  std::size_t const w = i / warp;
  b.threads[i].done = true;
  --b.live;
  --b.warp_live[w];
  if (b.block_arrived > 0 && b.block_arrived >= b.live) {
    b.block_arrived = 0;
    ++b.block_generation;
  }
  if (b.warp_arrived[w] > 0 && b.warp_arrived[w] >= b.warp_live[w]) {
    b.warp_arrived[w] = 0;
    ++b.warp_generation[w];
  }
  _longjmp(b.scheduler, 1);  // never returns: the thread's stack is abandoned
}

// getcontext / _setjmp return twice: kept in small functions of their own, so that no caller's locals
// live across them (GCC's -Wclobbered).
[[gnu::noinline]] inline void start_thread(Block& b, std::size_t i) {
  getcontext(&b.threads[i].ctx);
  b.threads[i].ctx.uc_stack.ss_sp = stacks()[i].get();
  b.threads[i].ctx.uc_stack.ss_size = stack_bytes;
  b.threads[i].ctx.uc_link = nullptr;  // entry() never returns
  makecontext(&b.threads[i].ctx, entry, 0);
}
[[gnu::noinline]] inline void resume(Block& b, std::size_t i, dim3 block) {
  b.current = i;
  threadIdx = {static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
               static_cast<unsigned>(i / (std::size_t{block.x} * block.y))};
  Block::Thread& t = b.threads[i];
  if (_setjmp(b.scheduler) != 0) return;  // the thread yielded or exited
  if (!t.started) {
    t.started = true;
    setcontext(&t.ctx);
  }
  _longjmp(t.at, 1);
}

/// Runs kernel(args...) over the grid: blocks one after another, each block's threads cooperatively.
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, dim3 block, std::size_t /*smem*/, cudaStream_t /*stream*/, Args&&... args) {
  std::size_t const n = std::size_t{block.x} * block.y * block.z;
  if (n == 0 || n > 1024 || grid.x == 0) {
    last_error() = cudaErrorInvalidValue;
    return;
  }
  while (stacks().size() < n) stacks().push_back(std::make_unique<char[]>(stack_bytes));
  auto call = [&]() { kernel(args...); };
  using Call = decltype(call);
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block b;
        b.threads.resize(n);
        b.live = n;
        std::size_t const warps = (n + warp - 1) / warp;
        b.warp_arrived.assign(warps, 0);
        b.warp_generation.assign(warps, 0);
        b.warp_live.assign(warps, 0);
        for (std::size_t i = 0; i < n; ++i) ++b.warp_live[i / warp];
        b.lanes.assign(n, 0);
        b.body = [](void* c) { (*static_cast<Call*>(c))(); };
        b.body_arg = &call;
        current_block() = &b;
        for (std::size_t i = 0; i < n; ++i) start_thread(b, i);
        blockIdx = {bx, by, bz};
        blockDim = block;
        gridDim = grid;
        while (b.live > 0) {
          for (std::size_t i = 0; i < n; ++i) {
            if (!b.threads[i].done) resume(b, i, block);
          }
        }
        current_block() = nullptr;
      }
    }
  }
}

}  // namespace piecrust_emulation

// ---- device intrinsics ----------------------------------------------------------------------------
inline void __syncthreads() { piecrust_emulation::syncthreads(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int = 32) {
  return piecrust_emulation::exchange(v, (threadIdx.x % piecrust_emulation::warp) ^ static_cast<unsigned>(lane_mask));
}
template <class T>
T __shfl_sync(unsigned, T v, int src_lane, int = 32) {
  return piecrust_emulation::exchange(v, static_cast<unsigned>(src_lane));
}
// One host thread runs every emulated thread and switches only at barriers: plain updates are atomic.
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::exchange(*p, *p + v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return std::exchange(*p, *p + v); }
inline unsigned atomicMin(unsigned* p, unsigned v) { return std::exchange(*p, std::min(*p, v)); }
// CUDA's device overloads of min / max for integers (float code uses fminf / fmaxf from <cmath>).
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
