#!/usr/bin/env bash
# Builds a self-contained bundle of piecrust's GPU tests and GPU benchmarks on a machine WITHOUT a GPU
# (nvcc and the CUDA libraries are enough), to be copied to a GPU machine that has no compiler, no
# package manager and no network, and run there with the bundle's gpu-run.sh.
#
#   scripts/gpu-bundle.sh [OUT_DIR]            # default OUT_DIR: gpu-bundle/ at the repository root
#   PIECRUST_JOBS=1 nice -n 19 scripts/gpu-bundle.sh   # gentle on a busy machine
#
# Environment: PIECRUST_JOBS (build parallelism, default nproc), PIECRUST_CUDA_ARCH (default 90: H100/H200),
# PIECRUST_BUNDLE_BUILD_DIR (default build/gpu-bundle), PIECRUST_BUNDLE_MAX_MIB (default 40).
#
# Layout of OUT_DIR:
#   gpu-run.sh, peers.py      the run script (scripts/gpu-run.sh) and the Python peers of the benchmark
#   bin/                      the stripped test and benchmark executables
#   lib/                      shared libraries they need that a bare GPU machine may lack (OpenBLAS and its
#                             Fortran runtime; PCRE2, SQLite or OpenMP when linked), gzip-compressed
#   lib/fallback/             libstdc++ / libgcc_s of this build (compressed too), used by gpu-run.sh only
#                             when the GPU machine's own are older than the executables need
#   MANIFEST                  commit, date, toolchain, what the GPU machine must provide, and size + sha256
#                             of every file
# cuBLAS and the driver (libcuda) are NOT bundled: cuBLAS alone is over half a GiB, and the GPU machine
# has them with its CUDA toolkit or PyTorch; gpu-run.sh finds them there. The CUDA runtime is linked
# statically when the toolkit has libcudart_static.a (else the small libcudart.so is bundled).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/gpu-bundle}"
build="${PIECRUST_BUNDLE_BUILD_DIR:-$root/build/gpu-bundle}"
arch="${PIECRUST_CUDA_ARCH:-90}"
jobs="${PIECRUST_JOBS:-$(nproc)}"
max_mib="${PIECRUST_BUNDLE_MAX_MIB:-40}"

die() {
  echo "gpu-bundle: $*" >&2
  exit 1
}

for tool in cmake nvcc ldd strip sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH (needed to build the bundle)"
done

# The CUDA runtime, static: one library fewer that the GPU machine must provide in a matching version.
# piecrust::cuda links CUDA::cudart, so point that imported target at the static archive too (else the
# shared library would still be a dependency).
cuda_root="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
cudart_static=""
for candidate in "$cuda_root/lib64/libcudart_static.a" "$cuda_root/lib/libcudart_static.a" \
                 "$cuda_root/targets/x86_64-linux/lib/libcudart_static.a"; do
  if [[ -f "$candidate" ]]; then
    cudart_static="$candidate"
    break
  fi
done
cudart_args=()
if [[ -n "$cudart_static" ]]; then
  cudart_args=(-DCMAKE_CUDA_RUNTIME_LIBRARY=Static -DCUDA_cudart_LIBRARY="$cudart_static")
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# A build dir configured with another generator cannot be switched: start it afresh.
if [[ -f "$build/CMakeCache.txt" ]] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}\$" "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
mkdir -p "$build"

echo "== configure ($build, CUDA architectures $arch)"
# Tests and benchmarks on, examples, header checks and the long emulated suites off: only GPU targets are
# built below, but tests/ and bench/ must be configured for their targets to exist. No build RPATH: the
# executables must not point into this machine's folders; gpu-run.sh sets LD_LIBRARY_PATH instead.
if ! cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DPIECRUST_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" "${cudart_args[@]}" -DCMAKE_SKIP_BUILD_RPATH=ON \
    -DPIECRUST_BUILD_TESTS=ON -DPIECRUST_BUILD_BENCHMARKS=ON -DPIECRUST_BUILD_EXAMPLES=OFF \
    -DPIECRUST_LONG_TESTS=OFF -DPIECRUST_VERIFY_HEADERS=OFF >"$build/bundle-configure.log" 2>&1; then
  tail -n 40 "$build/bundle-configure.log" >&2
  die "configure failed (log: $build/bundle-configure.log)"
fi

test_list="$build/tests/gpu/gpu_test_executables.txt"
bench_list="$build/bench/gpu/gpu_bench_executables.txt"
[[ -f "$test_list" ]] || die "$test_list missing: was the CUDA backend found (nvcc)?"
[[ -f "$bench_list" ]] || die "$bench_list missing: were the benchmarks configured (Google Benchmark found)?"
mapfile -t tests < <(grep -v '^$' "$test_list")
mapfile -t benches < <(grep -v '^$' "$bench_list")
[[ ${#tests[@]} -gt 0 ]] || die "no GPU test executables listed in $test_list"

echo "== build (-j$jobs): ${tests[*]} ${benches[*]}"
if ! cmake --build "$build" -j "$jobs" --target "${tests[@]}" "${benches[@]}" >"$build/bundle-build.log" 2>&1; then
  tail -n 60 "$build/bundle-build.log" >&2
  die "build failed (log: $build/bundle-build.log)"
fi

echo "== assemble $out"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib/fallback"
for exe in "${tests[@]}"; do cp "$build/tests/gpu/$exe" "$out/bin/"; done
for exe in "${benches[@]}"; do cp "$build/bench/gpu/$exe" "$out/bin/"; done
cp "$root/scripts/gpu-run.sh" "$out/gpu-run.sh"
cp "$root/bench/gpu/peers.py" "$out/peers.py"
chmod +x "$out/gpu-run.sh"
strip --strip-unneeded "$out"/bin/*

# The shared libraries, from ldd of every executable (it lists indirect ones too: OpenBLAS' libgfortran).
# glibc's own libraries are on every system and must match its loader, so they stay out; the driver and
# cuBLAS come from the GPU machine (see the header); everything else is copied.
declare -A from_device=()
missing=()
while read -r name path; do
  case "$name" in
    linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libmvec.so.* | libpthread.so.* | libdl.so.* | \
    librt.so.* | libresolv.so.* | libutil.so.*) ;;
    libcuda.so.* | libnvidia-*.so* | libcublas.so.* | libcublasLt.so.*) from_device[$name]=1 ;;
    libstdc++.so.* | libgcc_s.so.*) cp -L "$path" "$out/lib/fallback/$name" ;;
    *)
      if [[ "$path" == "not-found" ]]; then
        missing+=("$name")
      else
        cp -L "$path" "$out/lib/$name"
      fi
      ;;
  esac
done < <(ldd "$out"/bin/* | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $2 == "=>" && $3 == "not" { print $1, "not-found" }' | sort -u)
[[ ${#missing[@]} -eq 0 ]] || die "ldd cannot resolve ${missing[*]} here: install it or fix the build"
chmod u+w "$out"/lib/*.so* "$out"/lib/fallback/* 2>/dev/null || true
strip --strip-unneeded "$out"/lib/*.so* "$out"/lib/fallback/* 2>/dev/null || true

# What the GPU machine's C and C++ runtimes must offer: the newest symbol versions the executables and the
# bundled libraries ask for (gpu-run.sh compares them with the machine's).
newest() { grep -aoh "$1[0-9.]*[0-9]" "$out"/bin/* "$out"/lib/*.so* 2>/dev/null | sort -u -V | tail -n 1; }
needs_glibc="$(newest 'GLIBC_2\.')"
needs_glibcxx="$(newest 'GLIBCXX_3\.4\.')"
# Compressed: OpenBLAS alone is 35 MiB (a kernel set for every x86 CPU) and gzip makes it a third of that;
# gzip is on every Linux system, and gpu-run.sh unpacks them into a temporary folder.
gzip -9 -n "$out"/lib/*.so* "$out"/lib/fallback/*

commit="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$commit" != unknown && -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  commit="$commit+local-changes"
fi
{
  echo "# piecrust GPU bundle: scripts/gpu-bundle.sh wrote it; run ./gpu-run.sh on a machine with an NVIDIA GPU"
  printf 'commit\t%s\n' "$commit"
  printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf 'nvcc\t%s\n' "$(nvcc --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')"
  printf 'cuda_architectures\t%s\n' "$arch"
  printf 'cuda_runtime\t%s\n' "$([[ -n "$cudart_static" ]] && echo static || echo shared)"
  printf 'build_glibc\t%s\n' "$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')"
  printf 'needs_glibc\t%s\n' "$needs_glibc"
  printf 'needs_glibcxx\t%s\n' "$needs_glibcxx"
  printf 'from_device\t%s\n' "$(printf '%s\n' "${!from_device[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
  printf 'tests\t%s\n' "${tests[*]}"
  printf 'benches\t%s\n' "${benches[*]}"
  printf '# size\tsha256\tpath\n'
  (cd "$out" && find . -type f ! -name MANIFEST | sed 's|^\./||' | sort | while read -r f; do
    printf '%s\t%s\t%s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | awk '{ print $1 }')" "$f"
  done)
} >"$out/MANIFEST"

bytes="$(du -sb "$out" | awk '{ print $1 }')"
mib="$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
if ((bytes > max_mib * 1048576)); then
  echo "largest files:" >&2
  (cd "$out" && find . -type f -printf '%s\t%p\n' | sort -rn | head -n 8) >&2
  die "the bundle is $mib MiB, over the limit of $max_mib MiB (PIECRUST_BUNDLE_MAX_MIB): it would not travel"
fi
echo "bundle: $out, $mib MiB, $(grep -c $'^[0-9]' "$out/MANIFEST") files; run it with: $(basename "$out")/gpu-run.sh"
