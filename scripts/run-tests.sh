#!/usr/bin/env bash
# The README's second command: sets up a fresh machine and passes every test.
#   1. installs dependencies (Debian packages) and fetches the SmolLM2 and Gemma 3 270M models;
#   2. builds with -Wall -Wextra -Werror and runs ctest (unit, conformance, compile-fail, packaging, model);
#   3. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs ctest, then the concurrency
#      tests with ThreadSanitizer;
#   4. runs each libFuzzer target briefly (tests/fuzz; when clang is present).
# CUDA and HIP targets are compile-checked when nvcc / hipcc are present. Safe to re-run.
# The long suites (emulated-CUDA runtime, example and LoRA tests; fuzzing for minutes) are
# scripts/run-long-tests.sh. Debug information is line tables only (-g1): stack traces keep file and line, and
# the builds take a quarter less time.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --optional
export PIECRUST_MODEL="${PIECRUST_MODEL:-$(scripts/fetch-model.sh | tail -n 1)}"
export PIECRUST_GEMMA_MODEL="${PIECRUST_GEMMA_MODEL:-$(scripts/fetch-model.sh gemma3-270m | tail -n 1)}"
jobs=$(nproc)
phase() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }  # elapsed time, to keep CI inside its budget

phase "build: warnings as errors"
cmake -S . -B build/werror -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
      -DCMAKE_CUDA_FLAGS_RELWITHDEBINFO="-O2 -DNDEBUG" -DPIECRUST_WERROR=ON -DPIECRUST_LONG_TESTS=OFF
cmake --build build/werror -j"$jobs"
cmake --build build/werror --target all_verify_interface_header_sets -j"$jobs"  # every header compiles alone
phase "test: warnings as errors"
ctest --test-dir build/werror --output-on-failure -j"$jobs"

phase "build: AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" -DPIECRUST_SANITIZE=ON -DPIECRUST_WERROR=ON \
      -DPIECRUST_BUILD_EXAMPLES=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF -DPIECRUST_CUDA=OFF -DPIECRUST_HIP=OFF \
      -DPIECRUST_VERIFY_HEADERS=OFF
cmake --build build/asan -j"$jobs"
phase "test: AddressSanitizer + UndefinedBehaviorSanitizer"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure -j"$jobs"

phase "build: ThreadSanitizer (the concurrency tests only)"
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
      -DPIECRUST_SANITIZE_THREAD=ON -DPIECRUST_WERROR=ON \
      -DPIECRUST_BUILD_EXAMPLES=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF -DPIECRUST_CUDA=OFF -DPIECRUST_HIP=OFF \
      -DPIECRUST_VERIFY_HEADERS=OFF
cmake --build build/tsan --target test_concurrency -j"$jobs"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --test-dir build/tsan -R '^unit[.]concurrency$' --output-on-failure

if command -v clang++ >/dev/null; then
  phase "fuzz: every libFuzzer target (ASan + UBSan), briefly"
  FUZZ_BUILD_DIR=build/fuzz scripts/fuzz.sh "${PIECRUST_FUZZ_SECONDS:-10}"
fi

phase "run-tests: all tests passed"
