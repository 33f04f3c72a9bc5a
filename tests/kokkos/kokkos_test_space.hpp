#pragma once
// The space under test for the runtime and example tests compiled in the Kokkos build
// (PIECRUST_TEST_SPACE_HEADER, see tests/support/tiny_runtime.hpp): Kokkos' default execution space.
#include <Kokkos_Core.hpp>
#include <piecrust/backends/kokkos/kokkos.hpp>

namespace piecrust::testing {
using TestSpace = Kokkos::DefaultExecutionSpace;
inline TestSpace make_test_space() { return TestSpace{}; }
}  // namespace piecrust::testing
