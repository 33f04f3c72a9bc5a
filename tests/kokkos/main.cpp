// Catch2 runner that brackets the whole session with Kokkos::initialize / finalize.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

int main(int argc, char* argv[]) {
  Kokkos::initialize();
  int const result = Catch::Session().run(argc, argv);
  Kokkos::finalize();
  return result;
}
