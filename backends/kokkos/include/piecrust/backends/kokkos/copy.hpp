#pragma once
// The memory primitives (kernels/copy.hpp) on any Kokkos space: Kokkos::deep_copy between unmanaged byte
// Views of host memory and of S::memory_space, and a deep_copy of the value 0 for zero fill. These make
// KvCache<T, S::memory_space> and the KV page operations (kernels/kv_pages.hpp) work on Kokkos.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/copy.hpp"

namespace piecrust {
namespace kokkos_detail {
// Bytes as unsigned char: a plain arithmetic type every Kokkos backend can copy and fill.
using Byte = unsigned char;
}  // namespace kokkos_detail

template <KokkosSpace S>
struct KernelImpl<ops::Copy, S> {
  static void run(S const& space, void* dst, void const* src, std::size_t bytes, CopyKind kind) {
    using kokkos_detail::Byte;
    using Dev = kokkos_detail::Unmanaged1<Byte, S>;             // [bytes] in S::memory_space
    using DevConst = kokkos_detail::Unmanaged1<Byte const, S>;  // [bytes] in S::memory_space
    using HostV = kokkos_detail::HostUnmanaged1<Byte>;          // [bytes] host memory
    using HostConst = kokkos_detail::HostUnmanaged1<Byte const>;
    auto* const d = static_cast<Byte*>(dst);
    auto const* const s = static_cast<Byte const*>(src);
    switch (kind) {
      case CopyKind::to_space: Kokkos::deep_copy(space, Dev(d, bytes), HostConst(s, bytes)); break;
      case CopyKind::to_host: Kokkos::deep_copy(space, HostV(d, bytes), DevConst(s, bytes)); break;
      case CopyKind::in_space: {
        if (d == s) break;
        auto const di = reinterpret_cast<std::uintptr_t>(d), si = reinterpret_cast<std::uintptr_t>(s);
        bool const overlap = di < si + bytes && si < di + bytes;
        if (overlap) {
          // deep_copy of contiguous Views is a memcpy, undefined on overlapping regions, and the interface
          // allows overlap: go through a temporary in the space's memory.
          kokkos_detail::Owned1<Byte, S> tmp(Kokkos::view_alloc(std::string("piecrust::copy::overlap"), Kokkos::WithoutInitializing),
                                             bytes);  // [bytes]
          Kokkos::deep_copy(space, tmp, DevConst(s, bytes));
          Kokkos::deep_copy(space, Dev(d, bytes), tmp);
        } else {
          Kokkos::deep_copy(space, Dev(d, bytes), DevConst(s, bytes));
        }
        break;
      }
    }
    // to_host must be complete on return and a host source reusable on return: fence every direction
    // (in_space too, so that a temporary outlives its copies).
    space.fence();
  }
};

template <KokkosSpace S>
struct KernelImpl<ops::ZeroFill, S> {
  static void run(S const& space, void* dst, std::size_t bytes) {
    using kokkos_detail::Byte;
    Kokkos::deep_copy(space, kokkos_detail::Unmanaged1<Byte, S>(static_cast<Byte*>(dst), bytes), Byte{0});  // [bytes]
    space.fence();
  }
};

}  // namespace piecrust
