#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU (Hopper: sm_90a): configure + build, run the GPU tests,
# time piecrust's attention and sampling kernels and, in the same run, the Python peers (FlashInfer,
# PyTorch SDPA FlashAttention-2 / cuDNN, FlexAttention); print the joined table.
#
#   bench/gpu/run.sh [--quick] [--no-tests] [--sanitize] [--build-dir DIR] [--out DIR]
#
# Needs: the repository, CMake >= 3.24, the CUDA toolkit (nvcc), and for the peers a Python whose torch
# (and flashinfer, see README.md) import; peers that do not import are reported as "not installed".
# Results: <out>/piecrust.tsv, <out>/tests.log, <out>/table.md (default <out> = <build-dir>/gpu-bench).
# --quick: fewer timing repetitions and no memcheck pass; --sanitize: memcheck even with --quick.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/build-gpu-bench"
out=""
quick=""
tests=1
sanitize=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --no-tests) tests=0 ;;
    --sanitize) sanitize=1 ;;
    --build-dir) build="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$build/gpu-bench}"
mkdir -p "$out"
python="${PYTHON:-python3}"
jobs="$(nproc 2>/dev/null || echo 4)"

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv || echo "nvidia-smi failed"

echo "== configure + build (CMAKE_CUDA_ARCHITECTURES=90a)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPIECRUST_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DPIECRUST_BUILD_BENCHMARKS=ON -DPIECRUST_BUILD_TESTS=ON -DPIECRUST_BUILD_EXAMPLES=OFF >"$out/configure.log" 2>&1 \
  || { tail -30 "$out/configure.log"; echo "configure failed"; exit 1; }
targets=(bench_gpu_attention)
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >"$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log"; echo "build failed"; exit 1; }

status=0
if [ "$tests" = 1 ]; then
  echo "== GPU tests"
  : >"$out/tests.log"
  if [ -x "$root/scripts/run-gpu-tests.sh" ]; then
    # Every GPU test (attention included), then the same under compute-sanitizer memcheck (skipped
    # with --quick unless --sanitize).
    skip_memcheck=0
    if [ -n "$quick" ] && [ "$sanitize" = 0 ]; then skip_memcheck=1; fi
    PIECRUST_CUDA_ARCH=90a PIECRUST_GPU_BUILD_DIR="$build-tests" PIECRUST_SKIP_MEMCHECK=$skip_memcheck \
      "$root/scripts/run-gpu-tests.sh" 2>&1 | tee -a "$out/tests.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    sanitize=0  # done by the script
    attn=""
  else
    # No test runner in this checkout: compile the attention tests here.
    direct="$build/gpu-direct"
    mkdir -p "$direct"
    inc=(-I "$root/include" -I "$root/backends/cuda/include" -I "$root/backends/host/include" -I "$root/tests/gpu")
    echo "-- compiling tests/gpu/test_attention*.{cu,cpp} directly" | tee -a "$out/tests.log"
    if [ -f "$root/tests/gpu/main.cu" ] && [ -f "$root/tests/gpu/gpu_test.hpp" ]; then
      nvcc -std=c++20 --expt-relaxed-constexpr -diag-suppress=554,1675 -gencode=arch=compute_90a,code=sm_90a -O2 \
        -lineinfo "${inc[@]}" "$root/tests/gpu/main.cu" "$root/tests/gpu/test_attention.cu" -lcublas \
        -o "$direct/test_attention" 2>&1 | tee -a "$out/tests.log"
    else
      echo "tests/gpu/gpu_test.hpp or main.cu missing: the GPU attention test cannot be built" | tee -a "$out/tests.log"
      status=1
    fi
    "${CXX:-g++}" -std=c++20 -O2 -Wall -Wextra "${inc[@]}" "$root/tests/gpu/test_attention_plan.cpp" \
      -o "$direct/test_attention_plan" 2>&1 | tee -a "$out/tests.log"
    attn=$(find "$direct" -type f -perm -u+x -name 'test_attention*' | sort)
    for exe in $attn; do
      echo "-- $exe" | tee -a "$out/tests.log"
      "$exe" 2>&1 | tee -a "$out/tests.log"
      [ "${PIPESTATUS[0]}" = 0 ] || status=1
    done
  fi
  if [ "$sanitize" = 1 ]; then
    if command -v compute-sanitizer >/dev/null; then
      for exe in $attn; do
        case "$exe" in *test_attention) ;; *) continue ;; esac
        echo "== compute-sanitizer memcheck $exe" | tee -a "$out/tests.log"
        compute-sanitizer --tool memcheck --error-exitcode 9 "$exe" 2>&1 | tail -20 | tee -a "$out/tests.log"
        [ "${PIPESTATUS[0]}" = 0 ] || status=1
      done
    else
      echo "compute-sanitizer not found: memcheck NOT run" | tee -a "$out/tests.log"
    fi
  fi
fi

echo "== piecrust benchmark"
"$build/bench/gpu/bench_gpu_attention" $quick | tee "$out/piecrust.tsv"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "bench_gpu_attention failed"; status=1; }

echo "== peers (same run) and the joined table"
"$python" "$here/peers.py" --piecrust "$out/piecrust.tsv" $quick --markdown "$out/table.md" 2>"$out/peers.log" \
  || { tail -20 "$out/peers.log"; status=1; }
echo "(table also in $out/table.md; peer logs in $out/peers.log)"
exit $status
