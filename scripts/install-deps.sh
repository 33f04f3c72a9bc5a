#!/usr/bin/env bash
# Installs what piecrust needs to build and test, from Debian's packages.
# Idempotent: packages already present are skipped, so re-running is cheap.
#   scripts/install-deps.sh            required packages only
#   scripts/install-deps.sh --optional required + HIP compiler, Kokkos, clang and its fuzzer runtime
set -euo pipefail

required=(cmake g++ make catch2 libfmt-dev libbenchmark-dev libopenblas-dev
          libpcre2-dev libsqlite3-dev nlohmann-json3-dev pkg-config python3 python3-pip unzip)
optional=(hipcc libamdhip64-dev libtrilinos-kokkos-dev clang libclang-rt-14-dev)

want=("${required[@]}")
if [[ "${1:-}" == "--optional" ]]; then want+=("${optional[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Optional packages may be missing from a mirror: install them one by one so one absence does not stop the rest.
req_missing=(); opt_missing=()
for p in "${missing[@]}"; do
  if [[ " ${optional[*]} " == *" $p "* ]]; then opt_missing+=("$p"); else req_missing+=("$p"); fi
done
if ((${#req_missing[@]})); then $sudo apt-get install -y -qq --no-install-recommends "${req_missing[@]}"; fi
for p in "${opt_missing[@]}"; do
  $sudo apt-get install -y -qq --no-install-recommends "$p" || echo "install-deps: optional package $p not installed"
done
