#pragma once
// Kokkos execution spaces as piecrust ExecutionSpaces. Kokkos spaces already carry the nominal opt-in
// (`using execution_space = Self;`), a `memory_space`, `fence()` and a static `name()`, so they satisfy
// ExecutionSpace as they are; this header adds the host-accessibility trait for Kokkos memory spaces,
// the KokkosSpace concept, unmanaged-View helpers, and the staging of host inputs into the space.
//
// Tested (run) on Kokkos 3.4's Serial space only (Debian's Trilinos build). Every kernel is written on
// Kokkos patterns (RangePolicy, MDRangePolicy, TeamPolicy with team scratch) over Views in S::memory_space,
// so the same source builds for Kokkos::Cuda and Kokkos::HIP: it has been compiled for both (Kokkos 4.6,
// CUDA 13 sm_90, ROCm 5.2 gfx90a) but never run there, so CUDA and HIP builds of Kokkos are untested.
// A CUDA build needs relaxed constexpr (Kokkos_ENABLE_CUDA_CONSTEXPR, i.e. nvcc --expt-relaxed-constexpr):
// the kernels call piecrust's constexpr ShapedView accessors and f16 / bf16 conversions on the device.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/memory_space.hpp"

namespace piecrust {

namespace kokkos_detail {
// Kokkos' is_memory_space / is_execution_space only ask for `using memory_space = Self;` /
// `using execution_space = Self;`, which piecrust's own spaces (HostMemory, Host, ...) have too. A real
// Kokkos space also names its Kokkos::Device (and an execution space its team scratch space); asking for
// those keeps this adapter's specializations off piecrust's other spaces.
template <class M>
concept KokkosMemorySpace = Kokkos::is_memory_space<M>::value && requires {
  typename M::execution_space;
  typename M::device_type;
} && !requires { M::host_accessible; };
}  // namespace kokkos_detail

/// Kokkos memory spaces: host-accessible exactly when Kokkos says the host can access them.
template <class M>
  requires kokkos_detail::KokkosMemorySpace<M>
struct MemorySpaceIsHostAccessible<M>
    : std::bool_constant<Kokkos::SpaceAccessibility<Kokkos::HostSpace, M>::accessible> {};

/// Any Kokkos execution space (Kokkos::Serial, Kokkos::OpenMP, Kokkos::Threads, Kokkos::Cuda, ...).
template <class S>
concept KokkosSpace = Kokkos::is_execution_space<S>::value && ExecutionSpace<S> && requires {
  typename S::scratch_memory_space;
  typename S::device_type;
} && std::is_same_v<typename S::device_type, Kokkos::Device<S, typename S::memory_space>>;

/// A Kokkos space whose memory the host can read (then sample and the probes run their per-row host code
/// in place, without staging the logits through the host).
template <class S>
concept KokkosHostSpace = KokkosSpace<S> && host_accessible_space<S>;

static_assert(KokkosSpace<Kokkos::DefaultExecutionSpace>, "the default Kokkos execution space must be a piecrust ExecutionSpace");
static_assert(KokkosSpace<Kokkos::DefaultHostExecutionSpace>);

namespace kokkos_detail {

// Kokkos 3.x keeps its math functions in Kokkos::Experimental; 4.x moved them to Kokkos.
#if KOKKOS_VERSION >= 40000
using Kokkos::cos;
using Kokkos::exp;
using Kokkos::fmax;
using Kokkos::log;
using Kokkos::sin;
using Kokkos::sqrt;
using Kokkos::tanh;
#else
using Kokkos::Experimental::cos;
using Kokkos::Experimental::exp;
using Kokkos::Experimental::fmax;
using Kokkos::Experimental::log;
using Kokkos::Experimental::sin;
using Kokkos::Experimental::sqrt;
using Kokkos::Experimental::tanh;
#endif

template <class T, class S>
using Unmanaged1 = Kokkos::View<T*, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T, class S>
using Unmanaged2 = Kokkos::View<T**, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T, class S>
using Unmanaged3 = Kokkos::View<T***, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T, class S>
using Unmanaged4 = Kokkos::View<T****, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
/// A view of host memory (the interfaces' std::span inputs and the host side of copies).
template <class T>
using HostUnmanaged1 = Kokkos::View<T*, Kokkos::LayoutRight, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
/// A buffer of the space's memory that the op owns for one call (staged inputs, temporaries).
template <class T, class S>
using Owned1 = Kokkos::View<T*, Kokkos::LayoutRight, typename S::memory_space>;

/// Whether kernels of S may read host memory directly (Serial, OpenMP, Threads: yes; Cuda, HIP: no). This
/// is the question for the interfaces' host spans; piecrust's host_accessible_space<S> asks the opposite
/// direction (may host code dereference S's memory).
template <class S>
inline constexpr bool reads_host_memory = Kokkos::SpaceAccessibility<S, Kokkos::HostSpace>::accessible;

/// A host span (ids, slots, a packed plan) as a View the kernels of S can read: the span itself when S
/// reads host memory, else a copy in S::memory_space (one deep_copy, enqueued on `space`). The caller
/// keeps `host` alive until its kernels have run (every op fences before it returns).
template <class T, class S>
[[nodiscard]] Kokkos::View<T const*, Kokkos::LayoutRight, typename S::memory_space> stage(S const& space, char const* label,
                                                                                       std::span<T const> host) {
  if constexpr (reads_host_memory<S>) {
    (void)space;
    (void)label;
    return Kokkos::View<T const*, Kokkos::LayoutRight, typename S::memory_space>(host.data(), host.size());  // unmanaged
  } else {
    Owned1<T, S> dev(Kokkos::view_alloc(std::string(label), Kokkos::WithoutInitializing), host.size());  // [host.size()]
    Kokkos::deep_copy(space, dev, HostUnmanaged1<T const>(host.data(), host.size()));
    return dev;
  }
}

/// Team scratch level for a per-team buffer of `bytes`: level 0 (fast, small: shared memory on GPUs)
/// when it fits comfortably, else level 1 (large, slower).
[[nodiscard]] inline int scratch_level(std::size_t bytes) noexcept { return bytes <= 16 * 1024 ? 0 : 1; }

}  // namespace kokkos_detail
}  // namespace piecrust
