#pragma once
// memory_of(space): the memory-space object a space allocates with (Buffers of its kernels' data).

#include "piecrust/exec/execution_space.hpp"

namespace piecrust {

/// A space that carries its allocator (Cuda: bound to its device) returns it from `memory()`; other
/// spaces (Host, Kokkos spaces) allocate with a default-constructed `memory_space`.
template <ExecutionSpace S>
[[nodiscard]] typename S::memory_space memory_of(S const& space) {
  if constexpr (requires { { space.memory() } -> std::convertible_to<typename S::memory_space>; }) {
    return space.memory();
  } else {
    return typename S::memory_space{};
  }
}

}  // namespace piecrust
