#!/usr/bin/env bash
# Compares piecrust with llama.cpp on SmolLM2-135M-Instruct (not part of CI: it installs llama-cpp-python,
# which builds llama.cpp from source when PyPI has no wheel for this machine — many minutes).
#   tests/conformance/llama_cpp/run.sh [build-dir]     (default build dir: build)
# 1. fetches the model (scripts/fetch-model.sh);
# 2. installs llama-cpp-python into a virtual environment ($LLAMA_CPP_VENV, default build-dir/llama-cpp-venv);
# 3. regenerates tests/conformance/llama_cpp/reference.json with llama.cpp;
# 4. builds test_model_llama_cpp and runs it over all 20 prompts, printing the agreement and the logit diff.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
build="${1:-$root/build}"
venv="${LLAMA_CPP_VENV:-$build/llama-cpp-venv}"
model="$("$root/scripts/fetch-model.sh" | tail -n 1)"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  "$venv/bin/pip" install --quiet numpy llama-cpp-python
fi

"$venv/bin/python" "$root/tests/conformance/llama_cpp/generate_reference.py" --model "$model" \
  --out "$root/tests/conformance/llama_cpp/reference.json" --threads "${THREADS:-2}"

cmake --build "$build" --target test_model_llama_cpp -j"${JOBS:-2}"
PIECRUST_MODEL="$model" PIECRUST_CONFORMANCE_FULL=1 "$build/tests/test_model_llama_cpp" --success 2>&1 \
  | grep -E "tokenizer:|greedy:|passed|failed" || true
PIECRUST_MODEL="$model" PIECRUST_CONFORMANCE_FULL=1 "$build/tests/test_model_llama_cpp"
