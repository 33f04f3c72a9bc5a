#!/usr/bin/env bash
# Fails when a header includes a layer it may not use (DESIGN.md, "Layers"): each layer uses only the layers
# before it, model/ and runtime/ include no backend, and backends include nothing from model/ or runtime/.
# Umbrella headers (piecrust/piecrust.hpp) may include everything. Run from anywhere; CI runs it as a ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

# layer folder (relative to the repository) and the piecrust/ include prefixes it may use besides its own.
# mask_info (ejKernel's MaskInfo) is a layer of its own above core: it may use config and core, core may not
# include it, and only the runtime above it may.
declare -A allowed=(
  [include/piecrust/core]="config core"
  [include/piecrust/mask_info]="config core mask_info"
  [include/piecrust/exec]="config core exec"
  [include/piecrust/kernels]="config core exec kernels"
  [backends/host/include/piecrust/backends]="config core exec kernels backends/host"
  [backends/cuda/include/piecrust/backends]="config core exec kernels backends/cuda"
  [backends/hip/include/piecrust/backends]="config core exec kernels backends/cuda backends/hip"
  [backends/kokkos/include/piecrust/backends]="config core exec kernels backends/kokkos"
  [include/piecrust/model]="config core exec kernels model"
  [include/piecrust/runtime]="config core mask_info exec kernels model runtime"
)

status=0
# check_includes FILE PREFIXES: every #include <piecrust/...> of FILE starts with one of PREFIXES.
check_includes() {
  local file=$1 prefixes=$2 line inc rest prefix ok
  while IFS= read -r line; do
    inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](piecrust\/[^>"]+)[>"].*/\1/' <<<"$line")
    [[ "$inc" == piecrust/* ]] || continue
    rest=${inc#piecrust/}
    ok=0
    for prefix in $prefixes; do
      if [[ "$rest" == "$prefix"/* || "$rest" == "$prefix.hpp" || "$rest" == "$prefix" ]]; then ok=1; break; fi
    done
    if ((ok == 0)); then
      echo "check-layers: $file includes <$inc>, outside its layer's allowed set ($prefixes)" >&2
      status=1
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]piecrust/' "$file" || true)
}

for dir in "${!allowed[@]}"; do
  [[ -d "$dir" ]] || continue
  while IFS= read -r -d '' file; do
    check_includes "$file" "${allowed[$dir]}"
  done < <(find "$dir" -name '*.hpp' -print0)
done
# Umbrella headers of a layer (include/piecrust/<layer>.hpp) follow their layer's rule.
for layer in core mask_info exec kernels model runtime; do
  f="include/piecrust/$layer.hpp"
  [[ -f "$f" ]] || continue
  check_includes "$f" "${allowed[include/piecrust/$layer]}"
done
if ((status == 0)); then echo "check-layers: every include respects the layers"; fi
exit $status
