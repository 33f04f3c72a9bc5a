#pragma once
// Helpers of the Kokkos adapter's tests: the space under test (Kokkos' default execution space) and the
// moves of test data into and out of its memory, through the adapter's own copy op, so that the tests are
// written for a device space even where the default space is Serial.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <span>
#include <vector>

#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels/copy.hpp"

namespace piecrust::kokkos_test {

using KSpace = Kokkos::DefaultExecutionSpace;
using KMem = KSpace::memory_space;

/// A copy of `host` in the space's memory.
template <class T>
[[nodiscard]] Buffer<T, KMem> upload(KSpace const& space, std::vector<T> const& host) {
  return to_space(space, std::span<T const>(host));
}

/// A buffer of n elements of the space's memory holding `fill` (written from the host, so any value,
/// NaN included, can mark what a kernel must overwrite or leave alone).
template <class T>
[[nodiscard]] Buffer<T, KMem> filled(KSpace const& space, std::size_t n, T fill) {
  return upload(space, std::vector<T>(n, fill));
}

/// The elements of `dev` as a host vector.
template <class T>
[[nodiscard]] std::vector<T> download(KSpace const& space, Buffer<T, KMem> const& dev) {
  return to_host_vector(space, std::span<T const>(dev.data(), dev.size()));
}

}  // namespace piecrust::kokkos_test
