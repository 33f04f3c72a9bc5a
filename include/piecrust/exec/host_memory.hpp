#pragma once
// HostMemory: ordinary, 64-byte aligned host memory (the memory space of the Host execution space).

#include <cstddef>
#include <new>

#include "piecrust/exec/memory_space.hpp"

namespace piecrust {

/// Cache-line (64-byte) aligned host allocations; 64 bytes also fits every AVX-512 load.
struct HostMemory {
  using memory_space = HostMemory;
  static constexpr bool host_accessible = true;
  static constexpr std::size_t alignment = 64;

  [[nodiscard]] void* allocate(std::size_t bytes) const {
    return ::operator new(bytes == 0 ? alignment : bytes, std::align_val_t{alignment});
  }
  void deallocate(void* p, std::size_t /*bytes*/) const noexcept {
    ::operator delete(p, std::align_val_t{alignment});
  }
  static constexpr char const* name() noexcept { return "HostMemory"; }
};

static_assert(MemorySpace<HostMemory>);

}  // namespace piecrust
