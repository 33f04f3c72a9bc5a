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
/// The host side packs into a reusable pageable vector. With HostStaging::pageable, commit() copies from
/// it: a cudaMemcpyAsync from pageable memory returns once the driver has staged the bytes, so the vector
/// may be overwritten right after (CUDA Runtime API, "API synchronization behavior"), but such a copy
/// cannot be captured into a CUDA graph. With HostStaging::pinned (the step's attention plan), commit()
/// sends the frame from one of two page-locked buffers, used in turn: a true asynchronous DMA, and before a
/// buffer is refilled its previous copy is waited for (an event; two frames back, long finished).
///
/// Not thread-safe: like the stream it belongs to, one host thread uses a space at a time.
enum class HostStaging { pageable, pinned };

class Scratch {
 public:
  /// Every region starts on a 256-byte boundary (enough for any vector load and for cuBLAS workspaces).
  static constexpr std::size_t alignment = 256;

  Scratch(int device, stream_t stream, HostStaging staging = HostStaging::pageable) noexcept
      : device_(device), stream_(stream), staging_(staging) {}
  Scratch(Scratch const&) = delete;
  Scratch& operator=(Scratch const&) = delete;
  ~Scratch() {
    free_async(device_block_, stream_);
    for (Pinned& p : pinned_) {
      event_destroy(p.event);  // waits: its copy may still read the buffer
      free_host(p.data);
    }
  }

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
    if (staging_ == HostStaging::pageable || host_.empty()) {
      memcpy_async(device_block_, host_.data(), host_.size(), stream_);
      return;
    }
    Pinned& p = pinned_[next_pinned_];
    next_pinned_ = 1 - next_pinned_;
    if (p.event == nullptr) {
      p.event = event_create();
    } else {
      event_synchronize(p.event);  // the copy this buffer last sent has finished
    }
    if (p.capacity < host_.size()) {
      std::size_t const grown = std::max(host_.size(), p.capacity * 2);
      free_host(p.data);
      p.data = nullptr;
      p.capacity = 0;
      p.data = static_cast<std::byte*>(malloc_host(grown));
      p.capacity = grown;
    }
    std::memcpy(p.data, host_.data(), host_.size());
    memcpy_async(device_block_, p.data, host_.size(), stream_);
    event_record(p.event, stream_);
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

  struct Pinned {
    std::byte* data = nullptr;  // [capacity] page-locked
    std::size_t capacity = 0;
    event_t event = nullptr;    // recorded after the copy that last read `data`
  };

  std::uint64_t frames_ = 0;
  int device_;
  stream_t stream_;
  HostStaging staging_;
  Pinned pinned_[2];
  int next_pinned_ = 0;
  std::vector<std::byte> host_;        // [frame bytes] packed uploads (workspaces are holes)
  std::byte* device_block_ = nullptr;  // [capacity_]
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

}  // namespace piecrust::gpu
