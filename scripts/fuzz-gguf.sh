#!/usr/bin/env bash
# Builds the GGUF reader's libFuzzer target with clang (ASan + UBSan) and runs it for a while.
#   scripts/fuzz-gguf.sh [seconds]        (default 60; FUZZ_BUILD_DIR overrides the build folder)
# Exits non-zero when the fuzzer finds a crash, a leak, a timeout or an out-of-memory input.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
cxx="${CXX_FUZZ:-$(command -v clang++ || true)}"
if [[ -z "$cxx" ]]; then
  echo "fuzz-gguf: clang++ is required (apt-get install clang)" >&2
  exit 1
fi

cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${FUZZ_JOBS:-2}"

corpus="$build/corpus"
mkdir -p "$corpus"
"$build/fuzz_gguf_seeds" "$corpus"
model="${PIECRUST_MODEL:-${PIECRUST_CACHE_DIR:-$HOME/.cache/piecrust}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
if [[ -f "$model" ]]; then
  # The real file's header and metadata (its first 2 MiB: tokens and merges included) as one more seed.
  head -c 2097152 "$model" > "$corpus/smollm2_head.gguf"
fi

echo "fuzz-gguf: fuzzing for ${seconds}s" >&2
"$build/fuzz_gguf" "$corpus" -max_total_time="$seconds" -max_len=4194304 -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$build/" 2>&1 | tail -n 20
