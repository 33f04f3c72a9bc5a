#!/usr/bin/env bash
# Builds and runs piecrust's GPU tests on a machine with an NVIDIA GPU, then runs them again under
# compute-sanitizer's memcheck. Prints every executable's own "N passed, M failed", then the total
# "N passed, M failed" line (plain runs and memcheck runs together), and exits non-zero on any failure.
#
#   scripts/run-gpu-tests.sh                 # build dir: build-gpu, CUDA architecture: 90 (H100/H200)
#   PIECRUST_CUDA_ARCH=native scripts/run-gpu-tests.sh
#   PIECRUST_GPU_FILTER=sample scripts/run-gpu-tests.sh   # only tests whose name contains "sample"
#   PIECRUST_SKIP_MEMCHECK=1 scripts/run-gpu-tests.sh
#
# Needs: CMake >= 3.24, nvcc + cuBLAS, and the test dependencies of the normal build (Catch2,
# nlohmann_json, OpenBLAS: the host backend is the oracle of the GPU tests).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PIECRUST_GPU_BUILD_DIR:-$root/build-gpu}"
arch="${PIECRUST_CUDA_ARCH:-90}"
filter="${PIECRUST_GPU_FILTER:-}"
jobs="${PIECRUST_JOBS:-$(nproc)}"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPIECRUST_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DPIECRUST_BUILD_TESTS=ON -DPIECRUST_BUILD_EXAMPLES=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF \
  -DPIECRUST_VERIFY_HEADERS=OFF >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log"
  echo "configure failed"
  echo "0 passed, 1 failed"
  exit 1
}

list="$build/tests/gpu/gpu_test_executables.txt"
mapfile -t executables < <(grep -v '^$' "$list")
if ! cmake --build "$build" -j "$jobs" --target "${executables[@]}"; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

total_passed=0
total_failed=0

# run <label> <command...>: runs one test executable, echoes its output, adds its counts to the totals.
run() {
  local label="$1"
  shift
  echo "== $label"
  local out rc
  out="$("$@" 2>&1)"
  rc=$?
  echo "$out"
  local line passed failed
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)"
  if [[ -n "$line" ]]; then
    passed="${line%% passed*}"
    failed="${line#*, }"
    failed="${failed%% failed*}"
  else
    passed=0
    failed=1  # no summary line: the executable crashed or printed nothing useful
  fi
  if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi  # e.g. memcheck found errors in passing tests
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}

for exe in "${executables[@]}"; do
  args=()
  [[ "$exe" == piecrust_gpu_tests && -n "$filter" ]] && args=("$filter")
  run "$exe" "$build/tests/gpu/$exe" "${args[@]}"
done

if [[ -z "${PIECRUST_SKIP_MEMCHECK:-}" ]]; then
  sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  if [[ -x "$sanitizer" ]]; then
    for exe in "${executables[@]}"; do
      args=()
      [[ "$exe" == piecrust_gpu_tests && -n "$filter" ]] && args=("$filter")
      run "memcheck $exe" "$sanitizer" --tool memcheck --error-exitcode 1 --leak-check no "$build/tests/gpu/$exe" "${args[@]}"
    done
  else
    echo "compute-sanitizer not found: memcheck runs counted as failed"
    total_failed=$((total_failed + 1))
  fi
fi

echo "== total (plain runs + memcheck runs)"
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
