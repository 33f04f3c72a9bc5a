#pragma once
// The space under test for the runtime and example tests compiled against the CUDA-dialect emulation
// (PIECRUST_TEST_SPACE_HEADER, see tests/support/tiny_runtime.hpp): the Cuda space, device 0.
#include <piecrust/backends/cuda.hpp>

namespace piecrust::testing {
using TestSpace = Cuda;
inline TestSpace make_test_space() { return Cuda(0); }
}  // namespace piecrust::testing
