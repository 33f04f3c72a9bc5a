#!/usr/bin/env bash
# The README's first command: sets up a fresh machine and runs piecrust's main job, piecrust-chat, a chat with
# SmolLM2-135M-Instruct. Arguments are passed to piecrust-chat (try --help); with none it starts an
# interactive chat, reading one user turn per line from the terminal. `--model-name NAME` first picks another
# model that scripts/fetch-model.sh knows (gemma3-270m: a base model, so try --raw --prompt TEXT).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh >&2
if [[ "${1:-}" == "--model-name" ]]; then
  [[ $# -ge 2 ]] || { echo "run-main: --model-name needs a name (smollm2, gemma3-270m)" >&2; exit 2; }
  model="$(scripts/fetch-model.sh "$2" | tail -n 1)"
  shift 2
else
  model="${PIECRUST_MODEL:-$(scripts/fetch-model.sh | tail -n 1)}"
fi
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DPIECRUST_BUILD_TESTS=OFF -DPIECRUST_BUILD_BENCHMARKS=OFF \
      -DPIECRUST_CUDA=OFF -DPIECRUST_HIP=OFF -DPIECRUST_KOKKOS=OFF >&2
cmake --build build/release --target piecrust-chat -j"$(nproc)" >&2
exec build/release/examples/chat/piecrust-chat --model "$model" "$@"
