#pragma once
// The ExecutionSpace concept: where kernels run.

#include <concepts>
#include <string_view>

#include "piecrust/exec/memory_space.hpp"

namespace piecrust {

/// An execution space opts in with `using execution_space = Self;`, names the memory space its kernels
/// read and write (`using memory_space = ...;`), is cheap to copy (a handle), and can wait for the work
/// it was given (`fence()`). Kokkos execution spaces (Kokkos::Serial, Kokkos::OpenMP, Kokkos::Cuda, ...)
/// already have exactly this shape, so they satisfy the concept without a wrapper.
template <class S>
concept ExecutionSpace = std::same_as<typename S::execution_space, S> &&
                         MemorySpace<typename S::memory_space> && std::copy_constructible<S> &&
                         requires(S const& s) {
                           s.fence();
                           { S::name() } -> std::convertible_to<std::string_view>;
                         };

/// Whether a space's memory can be read and written by host code (then host-side views are valid
/// arguments of its kernels).
template <class S>
inline constexpr bool host_accessible_space = memory_space_is_host_accessible<typename S::memory_space>;

}  // namespace piecrust
