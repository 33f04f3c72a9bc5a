#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and runs each for a while.
#   scripts/fuzz.sh [seconds-per-target] [name ...]   (default 60 s; names like gguf, tokenizer; default all)
# Each target starts from its seed corpus in tests/fuzz/corpus/<name>/ (never modified: new inputs go to a
# working corpus in the build folder; FUZZ_BUILD_DIR overrides it). Exits non-zero when a fuzzer finds a crash,
# a leak, a timeout or an out-of-memory input; the input is saved as <build>/<name>-crash-*.
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
cxx="${CXX_FUZZ:-$(command -v clang++ || true)}"
if [[ -z "$cxx" ]]; then
  echo "fuzz: clang++ is required (scripts/install-deps.sh --optional)" >&2
  exit 1
fi

names=("$@")
if ((${#names[@]} == 0)); then
  for src in "$root"/tests/fuzz/fuzz_*.cpp; do n="$(basename "$src" .cpp)"; names+=("${n#fuzz_}"); done
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done

cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" >/dev/null  # -O1: what libFuzzer suggests, and a shorter build
cmake --build "$build" -j"${FUZZ_JOBS:-$(nproc)}" --target "${targets[@]}"

export PIECRUST_MODEL="${PIECRUST_MODEL:-${PIECRUST_CACHE_DIR:-$HOME/.cache/piecrust}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
status=0
for n in "${names[@]}"; do
  seeds="$root/tests/fuzz/corpus/$n"
  work="$build/corpus/$n"
  mkdir -p "$work"
  if [[ "$n" == gguf && -f "$PIECRUST_MODEL" ]]; then
    # The real file's header and metadata (its first 2 MiB: tokens and merges included) as one more seed.
    head -c 2097152 "$PIECRUST_MODEL" > "$work/smollm2_head.gguf"
  fi
  dirs=("$work")
  [[ -d "$seeds" ]] && dirs+=("$seeds")
  echo "fuzz: $n for ${seconds}s" >&2
  if ! "$build/fuzz_$n" "${dirs[@]}" -max_total_time="$seconds" -max_len=4194304 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 -artifact_prefix="$build/$n-" > "$build/$n.log" 2>&1; then
    status=1
    echo "fuzz: $n FAILED (log: $build/$n.log)" >&2
  fi
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|ERROR|SUMMARY" \
    "$build/$n.log" | sed "s/^/fuzz: $n: /" >&2 || true
done
exit "$status"
