#pragma once
// The space under test for the kernel, runtime and example tests compiled in the Kokkos build
// (PIECRUST_TEST_SPACE_HEADER, see tests/unit/test_kernel_support.hpp and tests/support/tiny_runtime.hpp):
// Kokkos' default execution space.
#include <Kokkos_Core.hpp>
#include <piecrust/backends/kokkos/kokkos.hpp>

namespace piecrust::testing {
using TestSpace = Kokkos::DefaultExecutionSpace;
inline TestSpace make_test_space() { return TestSpace{}; }
}  // namespace piecrust::testing
