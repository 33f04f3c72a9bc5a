// Catch2 runner of every Kokkos test executable (tests/kokkos and tests/unit/test_<area>.cpp): Kokkos is finalized
// at exit, after the tests' static models (constructed later, so destroyed earlier) have freed their Kokkos memory.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdlib>

int main(int argc, char* argv[]) {
  Kokkos::initialize(argc, argv);
  std::atexit([] { Kokkos::finalize(); });
  return Catch::Session().run(argc, argv);
}
