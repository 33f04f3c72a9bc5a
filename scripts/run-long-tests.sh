#!/usr/bin/env bash
# The long suites the README's test command leaves out to keep CI short: the runtime, example and LoRA tests
# again on the emulated CUDA space (PIECRUST_LONG_TESTS), then every libFuzzer target for longer.
#   scripts/run-long-tests.sh [fuzz-seconds-per-target]   (default 300)
# Run scripts/run-tests.sh once first (it installs the dependencies and fetches the models).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
export PIECRUST_MODEL="${PIECRUST_MODEL:-$(scripts/fetch-model.sh | tail -n 1)}"
export PIECRUST_GEMMA_MODEL="${PIECRUST_GEMMA_MODEL:-$(scripts/fetch-model.sh gemma3-270m | tail -n 1)}"

cmake -S . -B build/long -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
      -DPIECRUST_WERROR=ON -DPIECRUST_LONG_TESTS=ON -DPIECRUST_BUILD_EXAMPLES=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF \
      -DPIECRUST_VERIFY_HEADERS=OFF
cmake --build build/long -j"$jobs" --target gpu_emulated_runtime gpu_emulated_examples gpu_emulated_lora
ctest --test-dir build/long -R '^gpu_emulated[.](runtime|examples|lora)$' --output-on-failure -j"$jobs"

if command -v clang++ >/dev/null; then
  FUZZ_BUILD_DIR=build/fuzz scripts/fuzz.sh "${1:-300}"
fi
echo "run-long-tests: all long tests passed"
