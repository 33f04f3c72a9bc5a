#pragma once
// Copies between host memory and a Cuda space's device memory, for Buffers and spans.

#include <cstddef>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {

/// A span over a device Buffer's elements, for the kernel arguments that take spans. Host code must
/// not dereference it.
template <class T>
[[nodiscard]] std::span<T> device_span(Buffer<T, CudaMemory>& b) noexcept {
  return {b.data(), b.size()};
}
template <class T>
[[nodiscard]] std::span<T const> device_span(Buffer<T, CudaMemory> const& b) noexcept {
  return {b.data(), b.size()};
}

/// Stream-ordered copy of src into dst (host -> device, device -> host or device -> device; the
/// direction follows from the pointers). Asynchronous: a pinned host source must stay unchanged and a
/// host destination must not be read until space.fence(); a pageable host source may be reused as soon
/// as the call returns (the driver stages it).
template <class T>
  requires std::is_trivially_copyable_v<T>
void copy_async(Cuda const& space, std::span<T> dst, std::type_identity_t<std::span<T const>> src) {
  detail::check_extent("copy_async", "dst.size()", dst.size(), src.size());
  detail::check_data("copy_async", "dst", dst.data(), dst.size());
  detail::check_data("copy_async", "src", src.data(), src.size());
  gpu::memcpy_async(dst.data(), src.data(), src.size_bytes(), space.stream());
}

/// A new device Buffer holding a copy of the host array (asynchronous, see copy_async).
template <class T>
  requires std::is_trivially_copyable_v<T>
[[nodiscard]] Buffer<T, CudaMemory> to_device(Cuda const& space, std::span<T const> host) {
  Buffer<T, CudaMemory> out(host.size(), space.memory());
  copy_async(space, device_span(out), host);
  return out;
}
template <class T>
[[nodiscard]] Buffer<T, CudaMemory> to_device(Cuda const& space, std::vector<T> const& host) {
  return to_device(space, std::span<T const>(host));
}

/// Copies device elements into a host span and waits for them (fences the space's stream).
template <class T>
  requires std::is_trivially_copyable_v<T>
void copy_to_host(Cuda const& space, std::span<T> host, std::type_identity_t<std::span<T const>> device) {
  copy_async(space, host, device);
  space.fence();
}

/// The device elements as a new host vector (fences the space's stream).
template <class T>
  requires std::is_trivially_copyable_v<T>
[[nodiscard]] std::vector<T> to_host(Cuda const& space, std::span<T const> device) {
  std::vector<T> out(device.size());
  copy_to_host(space, std::span<T>(out), device);
  return out;
}
template <class T>
[[nodiscard]] std::vector<T> to_host(Cuda const& space, Buffer<T, CudaMemory> const& device) {
  return to_host(space, device_span(device));
}

/// The memory primitives of kernels/copy.hpp: stream-ordered; a copy to the host waits for the stream so that
/// the host may read the result at once.
template <>
struct KernelImpl<ops::Copy, Cuda> {
  static void run(Cuda const& space, void* dst, void const* src, std::size_t bytes, CopyKind kind) {
    gpu::DeviceGuard guard(space.device());
    gpu::memcpy_async(dst, src, bytes, space.stream());
    if (kind == CopyKind::to_host) space.fence();
  }
};

template <>
struct KernelImpl<ops::ZeroFill, Cuda> {
  static void run(Cuda const& space, void* dst, std::size_t bytes) {
    gpu::DeviceGuard guard(space.device());
    gpu::memset_async(dst, 0, bytes, space.stream());
  }
};

}  // namespace piecrust
