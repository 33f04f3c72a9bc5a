#!/usr/bin/env bash
# Runs a bundle made by scripts/gpu-bundle.sh on a machine with an NVIDIA GPU that has no compiler, no
# package manager and no network: probes the machine, runs every GPU test executable, a few tests under
# compute-sanitizer (memcheck, racecheck, synccheck), the GPU benchmark and its Python peers (PyTorch
# SDPA / FlexAttention / FlashInfer, when they import). Every phase has its own timeout; the whole run
# stays inside GPU_RUN_BUDGET_S seconds (default 480).
#
#   gpu-bundle/gpu-run.sh [BUNDLE_DIR] [--quick]
#
# BUNDLE_DIR: default the folder of this script when it holds a MANIFEST (the copy inside the bundle),
# else gpu-bundle/ beside the scripts/ folder. --quick (or GPU_RUN_QUICK=1): 5 timing repetitions instead
# of 50. GPU_RUN_SANITIZE_FILTERS: the test-name substrings run under compute-sanitizer (one run each).
# PIECRUST_GPU_TEST_SEED=<n> replays the tests' random inputs of an earlier run (its seed is in tests.log).
#
# Output, in $OUT (default ./gpu-out), few files on purpose:
#   run.log        everything printed on the console
#   results.tsv    one row per measured thing: environment, each test run, each sanitizer run, each
#                  benchmark case (phase, name, status, rc, seconds, passed, failed, detail)
#   summary.md     the same as one Markdown table, then the benchmark table beside the peers
#   tests.log      the full output of the test executables (failures with their seeds)
#   sanitizer.log  the full output of the compute-sanitizer runs
#   piecrust.tsv   the benchmark's raw BENCH / INFO lines
#   bench.log      the benchmark's stderr and the peers' output
# Exit status: 0 when every test, sanitizer run and benchmark passed, or when there is no GPU (one line
# says so); 1 otherwise.
set -uo pipefail  # no -e: a failing test must not end the run; every step's status is recorded instead

# ---- no GPU: one line, exit 0 (the bundle may be dry-run on a build machine) ----
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "no GPU: nvidia-smi not found, nothing run"
  exit 0
fi
if ! gpu_list="$(timeout 30 nvidia-smi -L 2>&1)" || ! grep -q '^GPU ' <<<"$gpu_list"; then
  echo "no GPU: nvidia-smi failed or lists no GPU ($(head -n 1 <<<"$gpu_list")), nothing run"
  exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle=""
quick=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick="--quick" ;;
    -*) echo "gpu-run: unknown option $arg" >&2; exit 2 ;;
    *) bundle="$arg" ;;
  esac
done
[[ "${GPU_RUN_QUICK:-0}" == 1 ]] && quick="--quick"
if [[ -z "$bundle" ]]; then
  if [[ -f "$here/MANIFEST" ]]; then bundle="$here"; else bundle="$here/../gpu-bundle"; fi
fi
if ! bundle_abs="$(cd "$bundle" 2>/dev/null && pwd)" || [[ ! -f "$bundle_abs/MANIFEST" ]]; then
  echo "gpu-run: no bundle (MANIFEST) at $bundle: build one with scripts/gpu-bundle.sh" >&2
  exit 2
fi
bundle="$bundle_abs"
out="${OUT:-./gpu-out}"
if ! mkdir -p "$out" || ! out="$(cd "$out" && pwd)"; then
  echo "gpu-run: cannot write $out" >&2
  exit 2
fi

budget="${GPU_RUN_BUDGET_S:-480}"
# Per-phase caps (seconds); together with the probe they stay under the default budget.
cap_tests=150 cap_sanitizer=100 cap_one_sanitizer=45 cap_bench=75 cap_peers=120

manifest() { awk -F'\t' -v k="$1" '$1 == k { print $2; exit }' "$bundle/MANIFEST"; }
# seconds <cap>: the cap, or less when the whole run's budget (with 10 s to spare) would be exceeded.
seconds_left() {
  local left=$((budget - SECONDS - 10))
  if ((left < $1)); then echo "$left"; else echo "$1"; fi
}
record() {  # phase name status rc seconds passed failed detail
  local IFS=$'\t'
  echo "$*" >>"$out/results.tsv"
}
info() {  # key value: printed and recorded
  printf '%-18s %s\n' "$1" "$2"
  record env "$1" info "" "" "" "" "$2"
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

main() {
  local status=0
  printf 'phase\tname\tstatus\trc\tseconds\tpassed\tfailed\tdetail\n' >"$out/results.tsv"
  : >"$out/tests.log"
  : >"$out/sanitizer.log"
  : >"$out/bench.log"
  : >"$out/piecrust.tsv"

  echo "== environment"
  info bundle "$bundle (commit $(manifest commit), built $(manifest date), nvcc $(manifest nvcc), sm_$(manifest cuda_architectures))"
  local bad_sums
  bad_sums="$(cd "$bundle" && awk -F'\t' '/^[0-9]/ { print $2 "  " $3 }' MANIFEST | sha256sum -c --quiet 2>&1 | head -n 5)"
  info checksums "${bad_sums:-ok}"
  while read -r line; do info gpu "$line"; done < <(timeout 30 nvidia-smi \
    --query-gpu=index,name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1)
  info cuda_driver "$(timeout 30 nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)"
  info nvcc "$(command -v nvcc >/dev/null && nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p' || echo absent)"
  local sanitizer=""
  for candidate in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
                   /usr/local/cuda/bin/compute-sanitizer; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then sanitizer="$candidate"; break; fi
  done
  info compute-sanitizer "${sanitizer:-absent}${sanitizer:+ ($("$sanitizer" --version 2>/dev/null | sed -n 's/.*Version \([0-9.]*\).*/\1/p' | head -n 1))}"
  local python="" torch_ok=0 torch_info="absent"
  if command -v python3 >/dev/null; then
    python=python3
    info python3 "$(python3 --version 2>&1)"
    if torch_info="$(timeout 90 python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "gpu" if torch.cuda.is_available() else "NO gpu")' 2>&1 | tail -n 1)" \
       && [[ "$torch_info" == *" gpu" && "$torch_info" != *"NO gpu" ]]; then
      torch_ok=1
    fi
    info torch "$torch_info"
  else
    info python3 absent
  fi

  # The bundle's libraries are gzip-compressed (gpu-bundle.sh): unpacked into a temporary folder.
  local lib="$tmp/lib" f rel
  mkdir -p "$lib/fallback"
  for f in "$bundle"/lib/*.gz "$bundle"/lib/fallback/*.gz; do
    [[ -f "$f" ]] || continue
    rel="${f#"$bundle/lib/"}"
    gzip -dc "$f" >"$lib/${rel%.gz}" || info unpack "FAILED for $f"
  done
  # The C / C++ runtimes: glibc cannot be replaced, so an old one is only reported; an old libstdc++ is
  # replaced by the bundle's own (lib/fallback), which is otherwise left out so that it cannot shadow a
  # newer one that the machine's libraries (cuBLAS) may need.
  local ld_path="$lib" need have stdcxx
  need="$(manifest needs_glibc)"
  have="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')"
  if [[ -n "$need" && -n "$have" && "$(printf '%s\n' "${need#GLIBC_}" "$have" | sort -V | head -n 1)" != "${need#GLIBC_}" ]]; then
    info glibc "$have: TOO OLD, the executables need $need (rebuild the bundle on an older system)"
  else
    info glibc "${have:-unknown} (needs $need)"
  fi
  need="$(manifest needs_glibcxx)"
  stdcxx="$( (ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | awk '$1 == "libstdc++.so.6" && /x86-64/ { print $NF; exit }')"
  if [[ -n "$need" ]] && { [[ -z "$stdcxx" ]] || ! grep -aqF "$need" "$stdcxx"; }; then
    ld_path="$ld_path:$lib/fallback"
    info libstdc++ "${stdcxx:-none} lacks $need: the bundle's own is used"
  else
    info libstdc++ "${stdcxx:-unknown} (has $need)"
  fi
  ld_path="$ld_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

  # What the bundle leaves to the machine (cuBLAS): the loader's own paths first, then the CUDA toolkit,
  # then the CUDA wheels of the Python packages (PyTorch's nvidia-* packages).
  unresolved() { LD_LIBRARY_PATH="$ld_path" ldd "$bundle"/bin/* 2>/dev/null | awk '$3 == "not" { print $1 }' | sort -u; }
  local sites=() name dir found
  if [[ -n "$python" ]]; then
    mapfile -t sites < <(timeout 30 python3 -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
  fi
  for name in $(unresolved); do
    found=""
    for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-[0-9]*; do
      [[ -n "$dir" ]] || continue
      for sub in lib64 lib targets/x86_64-linux/lib; do
        if [[ -f "$dir/$sub/$name" ]]; then found="$dir/$sub"; break 2; fi
      done
    done
    if [[ -z "$found" ]]; then
      for dir in "${sites[@]}"; do
        [[ -d "$dir/nvidia" ]] || continue
        found="$(find "$dir/nvidia" -maxdepth 4 -name "$name" -print -quit 2>/dev/null)"
        if [[ -n "$found" ]]; then found="$(dirname "$found")"; break; fi
      done
    fi
    if [[ -n "$found" ]]; then
      ld_path="$ld_path:$found"
      info "$name" "$found"
    fi
  done
  local still
  still="$(unresolved | tr '\n' ' ')"
  if [[ -n "$still" ]]; then
    info libraries "NOT FOUND: $still(every executable will fail to start; set LD_LIBRARY_PATH to their folder)"
  else
    info libraries "all found (LD_LIBRARY_PATH=$ld_path)"
  fi

  # run_one <phase> <name> <log> <timeout> <command...>: runs one executable under timeout, appends its output
  # to the log, records and prints its "N passed, M failed" (a crash, a timeout or a non-zero exit with
  # no failure counted is one failure). Sets the globals r_passed, r_failed, r_status.
  run_one() {
    local phase="$1" name="$2" log="$3" limit="$4"
    shift 4
    local t0=$SECONDS rc line detail=""
    timeout -k 10 "$limit" env LD_LIBRARY_PATH="$ld_path" "$@" >"$tmp/run.out" 2>&1
    rc=$?
    { echo "== $phase $name (timeout ${limit}s): $*"; cat "$tmp/run.out"; echo "== rc $rc"; } >>"$log"
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/run.out" | tail -n 1)"
    r_passed=0 r_failed=0 r_status=ok
    if [[ -n "$line" ]]; then
      r_passed="${line%% passed*}"
      r_failed="${line#*, }"
      r_failed="${r_failed%% failed*}"
    fi
    if ((rc == 124 || rc == 137)); then
      r_status=timeout detail="killed after ${limit}s"
      ((r_failed == 0)) && r_failed=1
    elif [[ -z "$line" ]]; then
      r_status=crashed r_failed=1 detail="no summary line: $(grep -v '^$' "$tmp/run.out" | tail -n 1 | cut -c1-160)"
    elif ((rc != 0 && r_failed == 0)); then
      r_status=failed r_failed=1
      if ((r_passed == 0)); then
        detail="no test ran (a filter that matches no test name?)"
      else
        detail="exit $rc with no test failed: $(grep -m1 'ERROR SUMMARY' "$tmp/run.out" | cut -c1-160)"
      fi
    elif ((r_failed > 0)); then
      r_status=failed detail="$(grep -m1 -E 'setup failed|FAILED' "$tmp/run.out" | cut -c1-160)"
    fi
    if grep -q 'Device not supported' "$tmp/run.out"; then r_status=unsupported detail="compute-sanitizer: Device not supported"; fi
    record "$phase" "$name" "$r_status" "$rc" "$((SECONDS - t0))" "$r_passed" "$r_failed" "$detail"
    printf '%-48s %s passed, %s failed  (%s, %ss)%s\n' "$name" "$r_passed" "$r_failed" "$r_status" "$((SECONDS - t0))" \
      "${detail:+ $detail}"
    grep -E '^ *FAILED' "$tmp/run.out" | head -n 20
  }

  echo "== tests"
  local tests benches exe limit phase_end total_passed=0 total_failed=0
  read -r -a tests <<<"$(manifest tests)"
  read -r -a benches <<<"$(manifest benches)"
  phase_end=$((SECONDS + cap_tests))
  for exe in "${tests[@]}"; do
    limit="$(seconds_left $((phase_end - SECONDS)))"
    if ((limit < 5)); then
      record test "$exe" skipped "" 0 0 1 "time budget spent"
      echo "$exe: skipped, time budget spent (counted as failed)"
      total_failed=$((total_failed + 1))
      continue
    fi
    run_one test "$exe" "$out/tests.log" "$limit" "$bundle/bin/$exe"
    total_passed=$((total_passed + r_passed))
    total_failed=$((total_failed + r_failed))
  done
  echo "total: $total_passed passed, $total_failed failed"
  record test total "$([[ $total_failed == 0 ]] && echo ok || echo failed)" "" "$SECONDS" "$total_passed" "$total_failed" ""
  ((total_failed == 0)) || status=1

  echo "== compute-sanitizer (a small subset: piecrust_gpu_tests <filter>)"
  local filters tool filter s_passed=0 s_failed=0 s_timeouts=0
  read -r -a filters <<<"${GPU_RUN_SANITIZE_FILTERS:-attention_planned_once_per_step append_kv_matches_host rms_norm_matches_host sample_is_reproducible}"
  if [[ -z "$sanitizer" ]]; then
    echo "compute-sanitizer not found: sanitizer runs skipped"
    record sanitizer all skipped "" 0 0 0 "compute-sanitizer not found"
  elif [[ ! -x "$bundle/bin/piecrust_gpu_tests" ]]; then
    echo "piecrust_gpu_tests not in the bundle: sanitizer runs skipped"
    record sanitizer all skipped "" 0 0 0 "piecrust_gpu_tests not in the bundle"
  else
    phase_end=$((SECONDS + cap_sanitizer))
    # Tool-major: when time runs out, every filter has had memcheck, the most telling of the three.
    for tool in memcheck racecheck synccheck; do
      for filter in "${filters[@]}"; do
        limit="$(seconds_left $((phase_end - SECONDS)))"
        ((limit > cap_one_sanitizer)) && limit=$cap_one_sanitizer
        if ((limit < 5)); then
          record sanitizer "$tool $filter" skipped "" 0 0 0 "time budget spent"
          echo "$tool $filter: skipped, time budget spent"
          continue
        fi
        local extra=()
        [[ "$tool" == memcheck ]] && extra=(--leak-check no)
        run_one sanitizer "$tool $filter" "$out/sanitizer.log" "$limit" \
          "$sanitizer" --tool "$tool" --error-exitcode 1 "${extra[@]}" "$bundle/bin/piecrust_gpu_tests" "$filter"
        if [[ "$r_status" == unsupported ]]; then
          echo "compute-sanitizer does not support this device: the other sanitizer runs are skipped"
          break 2
        fi
        # A run cut off by its timeout found nothing wrong yet: reported, not counted as a failure.
        if [[ "$r_status" == timeout ]]; then
          s_timeouts=$((s_timeouts + 1))
        else
          s_passed=$((s_passed + r_passed))
          s_failed=$((s_failed + r_failed))
        fi
      done
    done
    echo "sanitizer total: $s_passed passed, $s_failed failed ($s_timeouts runs cut off by their timeout)"
    record sanitizer total "$([[ $s_failed == 0 ]] && echo ok || echo failed)" "" "$SECONDS" "$s_passed" "$s_failed" \
      "$s_timeouts runs cut off by their timeout"
    ((s_failed == 0)) || status=1
  fi

  echo "== benchmark ${quick:+(quick)}"
  local t0 rc
  for exe in "${benches[@]}"; do
    limit="$(seconds_left "$cap_bench")"
    if ((limit < 5)); then
      record bench "$exe" skipped "" 0 "" "" "time budget spent"
      echo "$exe: skipped, time budget spent"
      status=1
      continue
    fi
    t0=$SECONDS
    echo "== $exe (timeout ${limit}s)" >>"$out/bench.log"
    # stdout is the TSV that peers.py reads; lines printed before a timeout are kept. The braces catch the
    # shell's own report of a crash ("Aborted") into the log too.
    { timeout -k 10 "$limit" env LD_LIBRARY_PATH="$ld_path" "$bundle/bin/$exe" ${quick:+"$quick"} >>"$out/piecrust.tsv"; } \
      2>>"$out/bench.log"
    rc=$?
    local st=ok detail=""
    if ((rc != 0)); then
      # The exception's message when it threw, else the last line of its stderr.
      detail="$(grep -E 'what\(\)|rror' "$out/bench.log" | tail -n 1)"
      [[ -n "$detail" ]] || detail="$(grep -v '^$' "$out/bench.log" | tail -n 1)"
      detail="${detail#"${detail%%[! ]*}"}"  # leading blanks off
      st=failed status=1 detail="${detail:0:160}"
    fi
    ((rc == 124 || rc == 137)) && st=timeout detail="killed after ${limit}s"
    record bench "$exe" "$st" "$rc" "$((SECONDS - t0))" "" "" "$detail"
    echo "$exe: $st (rc $rc, $((SECONDS - t0))s)${detail:+ $detail}"
  done
  awk -F'\t' -v OFS='\t' '$1 == "BENCH" { print "bench", $2, "ok", "", "", "", "", "median_us=" $4 " bytes=" $5 " flops=" $6 }' \
    "$out/piecrust.tsv" >>"$out/results.tsv"

  echo "== peers and the joined table"
  local table="$tmp/table.md"
  if [[ ! -f "$bundle/peers.py" ]]; then
    echo "peers.py not in the bundle: peers skipped"
    record peers all skipped "" 0 "" "" "peers.py not in the bundle"
  elif [[ -z "$python" ]]; then
    echo "python3 absent: peers skipped; the table lists piecrust alone"
    record peers all skipped "" 0 "" "" "python3 absent"
    { echo "| case | piecrust us |"; echo "|---|---|"
      awk -F'\t' '$1 == "BENCH" { printf "| %s | %.1f |\n", $2, $4 }' "$out/piecrust.tsv"; } >"$table"
  else
    if ((torch_ok == 0)); then
      echo "torch with a GPU not importable ($torch_info): peers skipped, reported as not installed"
    fi
    limit="$(seconds_left "$cap_peers")"
    if ((limit < 5)); then
      echo "peers: skipped, time budget spent"
      record peers all skipped "" 0 "" "" "time budget spent"
    else
      t0=$SECONDS
      # Without the bundle's LD_LIBRARY_PATH: torch loads its own libraries.
      { echo "== peers.py (timeout ${limit}s)"; } >>"$out/bench.log"
      timeout -k 10 "$limit" "$python" "$bundle/peers.py" --piecrust "$out/piecrust.tsv" ${quick:+"$quick"} --markdown "$table" \
        >>"$out/bench.log" 2>&1
      rc=$?
      local st=ok
      ((rc == 0)) || st=failed
      ((rc == 124 || rc == 137)) && st=timeout
      ((torch_ok == 1)) || st="$st (torch absent)"
      record peers peers.py "$st" "$rc" "$((SECONDS - t0))" "" "" ""
      echo "peers.py: $st (rc $rc, $((SECONDS - t0))s)"
    fi
  fi
  [[ -f "$table" ]] && cat "$table"

  {
    echo "# piecrust GPU run, bundle $(manifest commit)"
    echo
    echo "| phase | name | status | rc | seconds | passed | failed | detail |"
    echo "|---|---|---|---|---|---|---|---|"
    tail -n +2 "$out/results.tsv" | awk -F'\t' '{ gsub(/\|/, "/"); printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
    echo
    echo "## benchmark"
    echo
    if [[ -f "$table" ]]; then cat "$table"; else echo "(no table: see bench.log)"; fi
  } >"$out/summary.md"
  echo "== done in ${SECONDS}s: $out (summary.md, results.tsv; failures in tests.log / sanitizer.log / bench.log)"
  return "$status"
}

main 2>&1 | tee "$out/run.log"
exit "${PIPESTATUS[0]}"
