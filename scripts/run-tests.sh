#!/usr/bin/env bash
# The README's second command: sets up a fresh machine and passes every test.
#   1. installs dependencies (Debian packages) and fetches the SmolLM2 model;
#   2. builds with -Wall -Wextra -Werror and runs ctest (unit, conformance, compile-fail, packaging, model);
#   3. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs ctest;
#   4. runs each libFuzzer target briefly (tests/fuzz; when clang is present).
# CUDA and HIP targets are compile-checked when nvcc / hipcc are present. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --optional
export PIECRUST_MODEL="${PIECRUST_MODEL:-$(scripts/fetch-model.sh | tail -n 1)}"
jobs=$(nproc)

echo "== build: warnings as errors"
cmake -S . -B build/werror -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIECRUST_WERROR=ON
cmake --build build/werror -j"$jobs"
cmake --build build/werror --target all_verify_interface_header_sets -j"$jobs"  # every header compiles alone
ctest --test-dir build/werror --output-on-failure -j"$jobs"

echo "== build: AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DPIECRUST_SANITIZE=ON -DPIECRUST_WERROR=ON \
      -DPIECRUST_BUILD_EXAMPLES=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF -DPIECRUST_CUDA=OFF -DPIECRUST_HIP=OFF \
      -DPIECRUST_VERIFY_HEADERS=OFF
cmake --build build/asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure -j"$jobs"

if command -v clang++ >/dev/null; then
  echo "== fuzz: every libFuzzer target (ASan + UBSan), briefly"
  FUZZ_BUILD_DIR=build/fuzz scripts/fuzz.sh "${PIECRUST_FUZZ_SECONDS:-20}"
fi

echo "run-tests: all tests passed"
