#pragma once
// Host implementation of the memory primitives: host memory is the space's memory, so every direction is
// a memmove and the copy is complete when it returns.

#include <cstddef>
#include <cstring>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/copy.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Copy, Host> {
  static void run(Host const&, void* dst, void const* src, std::size_t bytes, CopyKind) { std::memmove(dst, src, bytes); }
};

template <>
struct KernelImpl<ops::ZeroFill, Host> {
  static void run(Host const&, void* dst, std::size_t bytes) { std::memset(dst, 0, bytes); }
};

}  // namespace piecrust
