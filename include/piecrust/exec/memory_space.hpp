#pragma once
// The MemorySpace concept: where a Buffer's elements live.

#include <concepts>
#include <cstddef>

namespace piecrust {

/// A memory space opts in with `using memory_space = Self;` and can allocate and free raw bytes.
/// `host_accessible` tells whether host code may dereference its pointers. Kokkos memory spaces
/// (Kokkos::HostSpace, Kokkos::CudaSpace, ...) have the same shape, which is how the Kokkos adapter
/// reuses them; for those the trait `memory_space_is_host_accessible` below supplies the flag.
template <class M>
concept MemorySpace = std::same_as<typename M::memory_space, M> && std::default_initializable<M> &&
                      requires(M const& m, void* p, std::size_t bytes) {
                        { m.allocate(bytes) } -> std::same_as<void*>;
                        m.deallocate(p, bytes);
                      };

/// Whether host code may dereference pointers of memory space M. Defaults to M::host_accessible;
/// backends specialize it for foreign memory spaces that do not carry the flag.
template <class M>
struct MemorySpaceIsHostAccessible : std::bool_constant<false> {};

template <class M>
  requires requires { M::host_accessible; }
struct MemorySpaceIsHostAccessible<M> : std::bool_constant<static_cast<bool>(M::host_accessible)> {};

template <class M>
inline constexpr bool memory_space_is_host_accessible = MemorySpaceIsHostAccessible<M>::value;

}  // namespace piecrust
