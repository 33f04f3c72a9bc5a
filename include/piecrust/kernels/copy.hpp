#pragma once
// Copies between host memory and a space's memory, inside a space's memory, and zero fills: the four
// memory primitives every space implements. KV page operations, weight uploads and the step's single
// device-to-host copy of sampling results are built on them.

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "piecrust/exec/buffer.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/memory_of.hpp"
#include "piecrust/kernels/detail/check.hpp"

namespace piecrust {
namespace ops {
struct Copy {};
struct ZeroFill {};
}  // namespace ops

/// Direction of a copy: host memory -> the space's memory, the space's memory -> host memory, or
/// within the space's memory.
enum class CopyKind { to_space, to_host, in_space };

/// KernelImpl<ops::Copy, S>::run(space, dst, src, bytes, kind): `to_host` completes before it returns (the
/// host may read dst at once); `to_space` and `in_space` are ordered before the space's later kernels,
/// and a host source may be reused when the call returns. Regions of `in_space` copies may overlap.
/// KernelImpl<ops::ZeroFill, S>::run(space, dst, bytes): dst (the space's memory) := 0, ordered like to_space.

namespace detail {
template <class S>
void copy_bytes(S const& space, void* dst, void const* src, std::size_t bytes, CopyKind kind) {
  static_assert(HasKernel<ops::Copy, S>,
                "piecrust::copy: this execution space does not implement op Copy "
                "(no KernelImpl<ops::Copy, Space> specialization is visible)");
  if constexpr (HasKernel<ops::Copy, S>) {
    if (bytes != 0) KernelImpl<ops::Copy, S>::run(space, dst, src, bytes, kind);
  }
}
}  // namespace detail

/// dst (host memory) := src (the space's memory); complete when it returns.
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
void copy_to_host(S const& space, std::span<T> host_dst, std::type_identity_t<std::span<T const>> src) {
  detail::check_extent("copy_to_host", "host_dst.size()", host_dst.size(), src.size());
  detail::check_data("copy_to_host", "host_dst", host_dst.data(), host_dst.size());
  detail::check_data("copy_to_host", "src", src.data(), src.size());
  detail::copy_bytes(space, host_dst.data(), src.data(), src.size_bytes(), CopyKind::to_host);
}

/// dst (the space's memory) := host_src; host_src may be reused when it returns.
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
void copy_to_space(S const& space, std::span<T> dst, std::type_identity_t<std::span<T const>> host_src) {
  detail::check_extent("copy_to_space", "dst.size()", dst.size(), host_src.size());
  detail::check_data("copy_to_space", "dst", dst.data(), dst.size());
  detail::check_data("copy_to_space", "host_src", host_src.data(), host_src.size());
  detail::copy_bytes(space, dst.data(), host_src.data(), host_src.size_bytes(), CopyKind::to_space);
}

/// dst := src, both in the space's memory (may overlap).
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
void copy_in_space(S const& space, std::span<T> dst, std::type_identity_t<std::span<T const>> src) {
  detail::check_extent("copy_in_space", "dst.size()", dst.size(), src.size());
  detail::check_data("copy_in_space", "dst", dst.data(), dst.size());
  detail::check_data("copy_in_space", "src", src.data(), src.size());
  detail::copy_bytes(space, dst.data(), src.data(), src.size_bytes(), CopyKind::in_space);
}

/// dst (the space's memory) := all-zero bytes.
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
void zero_fill(S const& space, std::span<T> dst) {
  static_assert(HasKernel<ops::ZeroFill, S>,
                "piecrust::zero_fill: this execution space does not implement op ZeroFill "
                "(no KernelImpl<ops::ZeroFill, Space> specialization is visible)");
  detail::check_data("zero_fill", "dst", dst.data(), dst.size());
  if constexpr (HasKernel<ops::ZeroFill, S>) {
    if (!dst.empty()) KernelImpl<ops::ZeroFill, S>::run(space, static_cast<void*>(dst.data()), dst.size_bytes());
  }
}

/// A new Buffer in the space's memory holding a copy of `host`.
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
[[nodiscard]] Buffer<T, typename S::memory_space> to_space(S const& space, std::span<T const> host) {
  Buffer<T, typename S::memory_space> out(host.size(), memory_of(space));
  copy_to_space(space, std::span<T>(out.data(), out.size()), host);
  return out;
}
template <ExecutionSpace S, class T>
[[nodiscard]] Buffer<T, typename S::memory_space> to_space(S const& space, std::vector<T> const& host) {
  return to_space(space, std::span<T const>(host));
}

/// The elements of `src` (the space's memory) as a host vector.
template <ExecutionSpace S, class T>
  requires std::is_trivially_copyable_v<T>
[[nodiscard]] std::vector<std::remove_const_t<T>> to_host_vector(S const& space, std::span<T> src) {
  std::vector<std::remove_const_t<T>> out(src.size());
  copy_to_host(space, std::span<std::remove_const_t<T>>(out), std::span<T const>(src));
  return out;
}

}  // namespace piecrust
