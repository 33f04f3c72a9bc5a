#pragma once
// Kokkos execution spaces as piecrust ExecutionSpaces. Kokkos spaces already carry the nominal opt-in
// (`using execution_space = Self;`), a `memory_space`, `fence()` and a static `name()`, so they satisfy
// ExecutionSpace as they are; this header adds the host-accessibility trait for Kokkos memory spaces,
// the KokkosSpace concept, and unmanaged-View helpers.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <type_traits>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/memory_space.hpp"

namespace piecrust {

/// Kokkos memory spaces: host-accessible exactly when Kokkos says the host can access them.
template <class M>
  requires(Kokkos::is_memory_space<M>::value)
struct MemorySpaceIsHostAccessible<M>
    : std::bool_constant<Kokkos::SpaceAccessibility<Kokkos::HostSpace, M>::accessible> {};

/// Any Kokkos execution space (Kokkos::Serial, Kokkos::OpenMP, Kokkos::Threads, Kokkos::Cuda, ...).
template <class S>
concept KokkosSpace = Kokkos::is_execution_space<S>::value && ExecutionSpace<S>;

/// A Kokkos space whose memory the host can read: required by the ops whose per-row work is host C++
/// (sample, probes).
template <class S>
concept KokkosHostSpace = KokkosSpace<S> && host_accessible_space<S>;

static_assert(KokkosSpace<Kokkos::DefaultExecutionSpace>, "the default Kokkos execution space must be a piecrust ExecutionSpace");
static_assert(KokkosSpace<Kokkos::DefaultHostExecutionSpace>);

namespace kokkos_detail {

// Kokkos 3.x keeps its math functions in Kokkos::Experimental; 4.x moved them to Kokkos.
#if KOKKOS_VERSION >= 40000
using Kokkos::cos;
using Kokkos::sin;
using Kokkos::sqrt;
#else
using Kokkos::Experimental::cos;
using Kokkos::Experimental::sin;
using Kokkos::Experimental::sqrt;
#endif

template <class T, class S>
using Unmanaged1 = Kokkos::View<T*, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T, class S>
using Unmanaged2 = Kokkos::View<T**, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T, class S>
using Unmanaged3 = Kokkos::View<T***, Kokkos::LayoutRight, typename S::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

}  // namespace kokkos_detail
}  // namespace piecrust
