#pragma once
// Scratch: a per-space, stream-ordered device arena for the small host metadata a kernel call uploads
// (page-table spans, mask runs, sampling parameters) and for its temporary device workspaces.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/runtime.hpp"

namespace piecrust::gpu {

/// A place in the current frame of a Scratch: `count` elements of T at byte `offset`.
template <class T>
struct Staged {
  std::size_t offset = 0;
  std::size_t count = 0;
};

/// One device allocation reused by every kernel call of a space, grown geometrically when a call needs
/// more. A call opens a frame (`begin()`), lists what it needs (`upload` host arrays, `workspace`
/// device-only arrays), then `commit()` sends all uploads in ONE host-to-device copy, and `get()` turns
/// each Staged into a device pointer. No cudaMalloc per call.
///
/// Lifetime: the pointers of a frame stay valid for the kernels launched on the space's stream until
/// the next frame's commit; reuse is safe without any host wait because the next frame's copy is queued
/// on the same stream after those kernels. Growing frees the old block with a stream-ordered free.
///
/// The host side packs into a reusable pageable vector: a cudaMemcpyAsync from pageable memory returns
/// once the bytes are staged by the driver, so the vector may be overwritten right after commit()
/// (CUDA Runtime API, "API synchronization behavior"). Such a copy cannot be captured into a CUDA
/// graph: captured steps upload their metadata before the capture begins.
///
/// Not thread-safe: like the stream it belongs to, one host thread uses a space at a time.
class Scratch {
 public:
  /// Every region starts on a 256-byte boundary (enough for any vector load and for cuBLAS workspaces).
  static constexpr std::size_t alignment = 256;

  Scratch(int device, stream_t stream) noexcept : device_(device), stream_(stream) {}
  Scratch(Scratch const&) = delete;
  Scratch& operator=(Scratch const&) = delete;
  ~Scratch() { free_async(device_block_, stream_); }

  /// Starts a frame: forgets the previous frame's layout (its device bytes stay until overwritten).
  void begin() {
    host_.clear();
    size_ = 0;
    ++frames_;
  }
  /// Frames begun so far: a holder of device pointers into this arena checks it is still its frame.
  [[nodiscard]] std::uint64_t frame() const noexcept { return frames_; }

  /// Reserves room for `src` and packs a copy of it; the device copy exists after commit().
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Staged<T> upload(std::span<T const> src) {
    Staged<T> const s = reserve<T>(src.size());
    if (!src.empty()) {
      host_.resize(std::max(host_.size(), s.offset + src.size_bytes()));
      std::memcpy(host_.data() + s.offset, src.data(), src.size_bytes());
    }
    return s;
  }
  /// Reserves `count` uninitialized device elements (not copied from the host).
  template <class T>
  Staged<T> workspace(std::size_t count) {
    return reserve<T>(count);
  }

  /// Makes the device block large enough for the frame and copies every upload in one transfer.
  void commit() {
    if (size_ > capacity_) {
      std::size_t const grown = std::max(size_, capacity_ * 2);
      free_async(device_block_, stream_);
      device_block_ = nullptr;
      capacity_ = 0;
      device_block_ = static_cast<std::byte*>(CudaMemory(device_, stream_).allocate(grown));
      capacity_ = grown;
    }
    memcpy_async(device_block_, host_.data(), host_.size(), stream_);
  }

  /// The device pointer of a staged region (after commit()).
  template <class T>
  [[nodiscard]] T* get(Staged<T> s) const noexcept {
    return s.count == 0 ? nullptr : reinterpret_cast<T*>(device_block_ + s.offset);
  }
  template <class T>
  [[nodiscard]] T* get(Staged<T const> s) const noexcept {
    return s.count == 0 ? nullptr : reinterpret_cast<T*>(device_block_ + s.offset);
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  template <class T>
  Staged<T> reserve(std::size_t count) {
    std::size_t const offset = (size_ + alignment - 1) / alignment * alignment;
    size_ = offset + count * sizeof(T);
    return Staged<T>{offset, count};
  }

  std::uint64_t frames_ = 0;
  int device_;
  stream_t stream_;
  std::vector<std::byte> host_;        // [frame bytes] packed uploads (workspaces are holes)
  std::byte* device_block_ = nullptr;  // [capacity_]
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

}  // namespace piecrust::gpu
