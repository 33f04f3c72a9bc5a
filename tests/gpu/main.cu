// Runs every registered GPU test (see gpu_test.hpp) on device 0 and prints "N passed, M failed".
// Seeds are fresh per run (printed with each failure); PIECRUST_GPU_TEST_SEED=<n> replays one.

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <random>
#include <string>

#include "gpu_test.hpp"

int main(int argc, char** argv) {
  using namespace piecrust::gpu_test;
  std::string const filter = argc > 1 ? argv[1] : "";
  char const* fixed = std::getenv("PIECRUST_GPU_TEST_SEED");
  std::uint64_t const base = fixed != nullptr ? std::strtoull(fixed, nullptr, 10) : std::random_device{}();
  std::size_t passed = 0, failed = 0, index = 0;
  std::cout << "base seed " << base << " (replay: PIECRUST_GPU_TEST_SEED=" << base << ")\n";
  try {
    piecrust::Cuda const space(0);
    for (Registered const& r : registry()) {
      std::string const name = r.name;
      if (!filter.empty() && name.find(filter) == std::string::npos) continue;
      std::uint64_t const seed = base + 0x9e3779b97f4a7c15ull * ++index;
      Test t(name, space, seed);
      bool ok = true;
      try {
        r.fn(t);
        space.fence();
      } catch (std::exception const& e) {
        std::cout << "  FAILED " << name << " (seed " << seed << "): exception: " << e.what() << "\n";
        ok = false;
      }
      ok = ok && t.failures() == 0;
      std::cout << (ok ? "ok     " : "FAILED ") << name << "\n";
      (ok ? passed : failed) += 1;
    }
  } catch (std::exception const& e) {
    std::cout << "GPU test setup failed: " << e.what() << "\n";
    ++failed;
  }
  std::cout << passed << " passed, " << failed << " failed\n";
  return failed == 0 && passed > 0 ? 0 : 1;
}
