#pragma once
// CudaMemory: device memory from the device's stream-ordered pool (the memory space of Cuda).

#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/exec/memory_space.hpp"

namespace piecrust {

namespace gpu::detail {

/// The default pool of `device`, with its release threshold raised to "never" on first use.
///
/// Why a pool: cudaMalloc / cudaFree synchronize the whole device and cost tens of microseconds to
/// milliseconds, while an engine allocates and frees activation and sampling buffers every step. The
/// stream-ordered allocator (cudaMallocAsync, CUDA 11.2; hipMallocAsync, HIP 5.2) sub-allocates from a
/// per-device pool and orders the free after the work already queued on the stream, so a Buffer may be
/// destroyed while kernels that read it are still in flight. By default a pool returns its memory to
/// the OS at every stream synchronization (release threshold 0); a threshold of UINT64_MAX keeps freed
/// blocks cached, so steady-state steps allocate without any driver call. Memory stays with the
/// process until it exits or someone calls cudaMemPoolTrimTo. Source: CUDA Programming Guide,
/// "Stream Ordered Memory Allocator", section on the release threshold.
inline mem_pool_t pool_of(int device) {
  static std::mutex mutex;
  static bool configured[256] = {};
  mem_pool_t pool = default_mem_pool(device);
  std::lock_guard<std::mutex> lock(mutex);
  if (device >= 0 && device < 256 && !configured[device]) {
    set_release_threshold(pool, std::numeric_limits<std::uint64_t>::max());
    configured[device] = true;
  }
  return pool;
}

}  // namespace gpu::detail

/// Device memory of one GPU, allocated from its pool in the order of one stream. Host code must not
/// dereference these pointers (host_accessible = false): move data with the helpers of
/// piecrust/backends/cuda/copy.hpp. `CudaMemory{}` means "the current device, the legacy default
/// stream" (which orders against every blocking stream, including the streams Cuda creates); a Cuda
/// space hands out `space.memory()`, which allocates and frees in the order of the space's stream, so a
/// Buffer of it must be destroyed while that stream exists (while a copy of the space is alive).
class CudaMemory {
 public:
  using memory_space = CudaMemory;
  static constexpr bool host_accessible = false;
  /// cudaMallocAsync returns at least 256-byte aligned pointers, like cudaMalloc.
  static constexpr std::size_t alignment = 256;

  /// No runtime call here: a default-constructed (empty) Buffer must not initialize a GPU context.
  CudaMemory() noexcept = default;
  explicit CudaMemory(int device, gpu::stream_t stream = nullptr) noexcept : device_(device), stream_(stream) {}

  [[nodiscard]] void* allocate(std::size_t bytes) const {
    int const device = device_ >= 0 ? device_ : gpu::current_device();
    gpu::DeviceGuard guard(device);
    return gpu::malloc_from_pool_async(bytes == 0 ? alignment : bytes, gpu::detail::pool_of(device), stream_);
  }
  void deallocate(void* p, std::size_t /*bytes*/) const noexcept { gpu::free_async(p, stream_); }

  /// The device (-1: the current device at allocation time) and the stream that orders allocations.
  [[nodiscard]] int device() const noexcept { return device_; }
  [[nodiscard]] gpu::stream_t stream() const noexcept { return stream_; }
  static constexpr char const* name() noexcept { return "CudaMemory"; }

 private:
  int device_ = -1;
  gpu::stream_t stream_ = nullptr;
};

static_assert(MemorySpace<CudaMemory>);

}  // namespace piecrust
