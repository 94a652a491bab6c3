#!/usr/bin/env bash
# The one prepared device check, about 8 minutes on one H100 at most (each step is capped):
# build in place, the CUDA tests, a short CLI training run on the GPU, the CUDA benchmarks,
# MOSEI-shaped end-to-end timings; a short table last, JSON and logs under $OUT.
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

# capped LIMIT_S LOG CMD...: run CMD with a time limit; SIGINT first, so pytest and the scripts
# end gracefully and keep what they measured. Reaching the limit is reported, not a failure.
capped() {
  local limit=$1 log=$2 rc=0; shift 2
  timeout -s INT -k 15 "$limit" "$@" >"$log" 2>&1 || rc=$?
  tail -4 "$log"
  case $rc in
    0) ;;
    124) echo "(stopped at the ${limit} s limit; partial results kept)" ;;
    *) echo "(exit code $rc; see $log)"; status=1 ;;
  esac
}

step "build"
MAX_JOBS=16 $PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
$PY -m prlf_fast.info | tee "$OUT/info.txt"
$PY -c "from prlf_fast import _extension; raise SystemExit(not _extension.has_cuda_kernels())" \
  || { echo "the extension was built without its CUDA kernels (see $OUT/build.log)"; status=1; }

step "CUDA tests"  # the CPU tests ran in CI; here only those marked cuda
capped 120 "$OUT/tests.log" $PY -m pytest -q -p no:cacheprovider tests -m cuda --maxfail=20 \
  --junitxml="$OUT/tests.xml"

step "CLI training run on the GPU"
run_dir=$(mktemp -d)/run   # checkpoints stay out of $OUT; the report and results come back
capped 45 "$OUT/train.log" $PY -m prlf_fast.cli train --device cuda --epochs 2 --out "$run_dir"
cp "$run_dir"/{results.json,report.md} "$OUT/" 2>/dev/null

# Each benchmark group writes its own JSON, so a group cut at its limit loses only its tail.
bench() {  # bench NAME LIMIT_S PYTEST_ARGS...
  local name=$1 limit=$2; shift 2
  capped "$limit" "$OUT/bench_$name.log" $PY -m pytest -q -p no:cacheprovider "$@" -k cuda \
    --benchmark-min-rounds=5 --benchmark-max-time=0.25 --benchmark-json="$OUT/bench_$name.json"
}
step "CUDA benchmarks"
bench ops 40 bench/test_bench_fisher.py bench/test_bench_attention.py
bench interact 75 bench/test_bench_interact.py
bench e2e 50 bench/test_bench_e2e.py

step "MOSEI end to end"
capped 100 "$OUT/e2e_mosei.log" $PY bench/e2e_mosei.py --device cuda --json "$OUT/e2e_mosei.json"

step "summary"
results=()
for f in "$OUT"/bench_*.json "$OUT/e2e_mosei.json"; do [ -s "$f" ] && results+=("$f"); done
[ ${#results[@]} -gt 0 ] && $PY bench/summarize.py "${results[@]}" | tee "$OUT/summary.txt"
exit $status
