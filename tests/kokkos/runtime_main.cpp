// Catch2 runner for the tests compiled again for a Kokkos space (tests/unit/test_<area>.cpp): Kokkos is finalized
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
