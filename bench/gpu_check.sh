#!/usr/bin/env bash
# The one prepared device check (about 8 minutes on one H100): build in place, CUDA parity tests,
# CUDA benchmarks, MOSEI-shaped end-to-end timings; a short table last, JSON and logs under $OUT.
#   device run:  bash bench/gpu_check.sh          (OUT is set by the device tool)
#   elsewhere:   OUT=bench/results/mygpu bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/local}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
step() { echo; echo "=== $1 ($(date +%T))"; }

step "build"
MAX_JOBS=16 $PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
$PY -m prlf_fast.info | tee "$OUT/info.txt"

step "CUDA parity tests"
timeout 90 $PY -m pytest -q -x -p no:cacheprovider tests/test_fisher_op.py tests/test_triton_attention.py \
  tests/test_triton_interact.py tests/test_model_triton.py tests/test_model.py -m "not slow" \
  --junitxml="$OUT/tests.xml" 2>&1 | tail -25 | tee "$OUT/tests.txt" || status=1

# Each group writes its own JSON; SIGINT at the time limit ends pytest gracefully, and
# pytest-benchmark still writes what it measured, so a slow group loses only its own tail.
bench() {  # bench NAME LIMIT_S PYTEST_ARGS...
  local name=$1 limit=$2; shift 2
  timeout -s INT -k 15 "$limit" $PY -m pytest -q -p no:cacheprovider "$@" -k cuda --benchmark-min-rounds=5 \
    --benchmark-max-time=0.25 --benchmark-json="$OUT/bench_$name.json" 2>&1 | tail -3 || status=1
}
step "CUDA op benchmarks"
bench ops 60 bench/test_bench_fisher.py bench/test_bench_attention.py
bench interact 120 bench/test_bench_interact.py
bench e2e 90 bench/test_bench_e2e.py

step "MOSEI end to end"
timeout -s INT 150 $PY bench/e2e_mosei.py --device cuda --json "$OUT/e2e_mosei.json" || status=1

step "summary"
results=()
for f in "$OUT"/bench_*.json "$OUT/e2e_mosei.json"; do [ -s "$f" ] && results+=("$f"); done
[ ${#results[@]} -gt 0 ] && $PY bench/summarize.py "${results[@]}" | tee "$OUT/summary.txt"
exit $status
