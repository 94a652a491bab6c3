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
timeout 150 $PY -m pytest -q -x -p no:cacheprovider tests/test_fisher_op.py tests/test_triton_attention.py \
  tests/test_triton_interact.py tests/test_model_triton.py tests/test_model.py -m "not slow" \
  --junitxml="$OUT/tests.xml" 2>&1 | tail -25 | tee "$OUT/tests.txt" || status=1

step "CUDA op benchmarks"
timeout 180 $PY -m pytest -q -p no:cacheprovider bench/test_bench_fisher.py bench/test_bench_attention.py \
  bench/test_bench_interact.py bench/test_bench_e2e.py -k cuda --benchmark-min-rounds=5 \
  --benchmark-max-time=0.5 --benchmark-json="$OUT/bench_cuda.json" 2>&1 | tail -5 || status=1

step "MOSEI end to end"
timeout 200 $PY bench/e2e_mosei.py --device cuda --json "$OUT/e2e_mosei.json" || status=1

step "summary"
[ -f "$OUT/bench_cuda.json" ] && $PY bench/summarize.py "$OUT/bench_cuda.json" | tee "$OUT/summary.txt"
[ -f "$OUT/e2e_mosei.json" ] && $PY -c "
import json; r = json.load(open('$OUT/e2e_mosei.json'))
print(f\"MOSEI end to end on {r['device']}: {r['n_train']} train samples, batch {r['batch_size']}\")
for k, v in r['variants'].items():
    print(f\"  {k:<20} epoch {v['epoch_s']:7.2f} s ({v.get('epoch_speedup_vs_reference', 0):.2f}x)  \"
          f\"robustness eval {v['robustness_eval_s']:7.2f} s ({v.get('eval_speedup_vs_reference', 0):.2f}x)\")
" | tee -a "$OUT/summary.txt"
exit $status
