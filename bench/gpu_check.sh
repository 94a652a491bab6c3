#!/usr/bin/env bash
# The one prepared device check (docs/kernels.md, "The GPU check"). On one H100/H200 it takes at
# most 7 minutes with the build: every step has a time cap and the caps sum to at most 420 s
# (each step may overrun its cap by the 10 s grace of `timeout -k 10` before it is killed).
# Order: build, info, Triton cache warmed in parallel, the kernel test files (each file in its own
# pytest process, so one illegal memory access cannot fail the files after it), the other CUDA test
# files, one compute-sanitizer memcheck pass, a CLI training run, the CUDA benchmarks, MOSEI end to
# end. A step that fails or reaches its cap is a FAILURE. $OUT receives three files:
#   summary.txt   the step table (also the last thing printed)
#   bench.json    every benchmark of the run merged (pytest-benchmark layout + e2e_mosei's keys)
#   logs.tar.gz   every step's log, JUnit XML, `prlf_fast.info`, the CLI run's results and report
#
#   device run:  bash bench/gpu_check.sh          (OUT is set by the device tool)
#   elsewhere:   OUT=bench/results/mygpu bash bench/gpu_check.sh
#   dry run:     GPU_CHECK_DRY_RUN=1 OUT=/tmp/x bash bench/gpu_check.sh   (CPU, seconds: the plan,
#                stub outputs, packing, the $OUT limits; GPU_CHECK_DRY_RUN_TIMEOUT=STEP and
#                GPU_CHECK_DRY_RUN_FAIL=STEP make that step time out or fail)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/local}
DRY=${GPU_CHECK_DRY_RUN:-0}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
WORK=$(mktemp -d)
LOGS=$WORK/logs
mkdir -p "$LOGS"
trap 'rm -rf "$WORK"' EXIT

# Caps in seconds: they sum to 415 (the device tool's limit for $OUT is 8 files; we leave 3).
CAP_BUILD=90 CAP_INFO=15 CAP_WARM=45 CAP_SANITIZER=45 CAP_CLI=25 CAP_E2E=20
KERNEL_TESTS=(tests/test_triton_attention.py:25 tests/test_triton_interact.py:25
              tests/test_model_triton.py:25 tests/test_gpu_training.py:20)
OTHER_TESTS=(tests/test_fisher_op.py:20)
BENCHES=(ops:20:bench/test_bench_fisher.py,bench/test_bench_attention.py
         interact:25:bench/test_bench_interact.py e2e:15:bench/test_bench_e2e.py)
SANITIZED=(tests/test_triton_attention.py::test_cuda_small_launch tests/test_fisher_op.py::test_cuda_small_launch)

caps_total=$((CAP_BUILD + CAP_INFO + CAP_WARM + CAP_SANITIZER + CAP_CLI + CAP_E2E))
for entry in "${KERNEL_TESTS[@]}" "${OTHER_TESTS[@]}"; do caps_total=$((caps_total + ${entry##*:})); done
for entry in "${BENCHES[@]}"; do IFS=: read -r _ cap _ <<<"$entry"; caps_total=$((caps_total + cap)); done

ROWS=()
failures=0

# Dry run: record the command, write stub outputs where it names them, exit as asked.
dry() {
  local name=$1 prev=
  shift
  echo "DRY: $*"
  for arg in "$@"; do
    case $arg in
      --junitxml=*) echo '<testsuites/>' >"${arg#*=}" ;;
      --benchmark-json=*) printf '{"benchmarks": [{"name": "test_dry[cuda]", "params": {"variant": "x"}, %s}]}\n' \
        '"stats": {"median": 0.001}' >"${arg#*=}" ;;
    esac
    [ "$prev" = --json ] && printf '{"variants": {}}\n' >"$arg"
    prev=$arg
  done
  [ "${GPU_CHECK_DRY_RUN_TIMEOUT:-}" = "$name" ] && return 124
  [ "${GPU_CHECK_DRY_RUN_FAIL:-}" = "$name" ] && return 1
  return 0
}

# step NAME CAP CMD...: CMD under its cap (SIGINT first, so pytest reports what it ran; KILL 10 s
# later), output in $LOGS/NAME.log; exit 0 is "ok", the cap is "TIMEOUT", anything else "FAILED".
step() {
  local name=$1 cap=$2 rc=0 start=$SECONDS status note
  shift 2
  echo
  echo "=== $name (cap $cap s, $(date +%T)): $*"
  if [ "$DRY" = 1 ]; then
    dry "$name" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  else
    timeout -s INT -k 10 "$cap" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  fi
  tail -n 4 "$LOGS/$name.log"
  case $rc in
    0) status=ok ;;
    124 | 137) status=TIMEOUT ;;
    *) status="FAILED($rc)" ;;
  esac
  [ "$status" = ok ] || failures=$((failures + 1))
  note=$(grep -E "[0-9]+ (passed|failed|error|skipped)|ERROR|Error" "$LOGS/$name.log" | tail -n 1 | cut -c 1-70)
  ROWS+=("$name|$status|$((SECONDS - start))|$cap|$note")
}

skip() {  # skip NAME CAP WHY: a step that cannot run here is a failure too
  ROWS+=("$1|FAILED(skipped)|0|$2|$3")
  failures=$((failures + 1))
  echo "=== $1: skipped, $3"
}

pytest_file() {  # pytest_file FILE:CAP (cuda-marked tests only; the CPU tests ran in CI)
  local file=${1%%:*} cap=${1##*:} name
  name=$(basename "$file" .py)
  step "$name" "$cap" "$PY" -m pytest -q -p no:cacheprovider "$file" -m cuda --junitxml="$LOGS/$name.xml"
}

step build "$CAP_BUILD" env MAX_JOBS=16 "$PY" -m pip install -q --no-build-isolation --no-deps -e .
step info "$CAP_INFO" bash -c "$PY -m prlf_fast.info && $PY -c 'from prlf_fast import _extension as e; \
raise SystemExit(0 if e.has_cuda_kernels() else \"the extension was built without its CUDA kernels\")'"

# Compile the kernel tests' Triton variants in parallel processes (their verdicts come below).
kernel_files=()
for entry in "${KERNEL_TESTS[@]}"; do kernel_files+=("${entry%%:*}"); done
if [ "$DRY" = 1 ] || "$PY" -c "import xdist" 2>/dev/null; then
  step warm "$CAP_WARM" bash -c '"$@" || [ $? -eq 1 ]' warm "$PY" -m pytest -q -p no:cacheprovider -n 12 \
    -m cuda "${kernel_files[@]}"
else  # only an optimisation: the test steps below then compile their kernels themselves
  ROWS+=("warm|skipped|0|$CAP_WARM|pytest-xdist is not installed")
  echo "=== warm: skipped, pytest-xdist is not installed (the tests compile their kernels themselves)"
fi

for entry in "${KERNEL_TESTS[@]}" "${OTHER_TESTS[@]}"; do pytest_file "$entry"; done

sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ "$DRY" = 1 ] || [ -n "$sanitizer" ]; then
  # Without the caching allocator every tensor is its own allocation, so memcheck sees overruns.
  step sanitizer "$CAP_SANITIZER" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "${sanitizer:-compute-sanitizer}" \
    --tool memcheck --error-exitcode 3 --print-limit 20 "$PY" -m pytest -q -p no:cacheprovider "${SANITIZED[@]}"
else
  skip sanitizer "$CAP_SANITIZER" "compute-sanitizer not found"
fi

run_dir=$WORK/run   # the checkpoints stay out of $OUT; results.json and report.md go into the logs
step cli-train "$CAP_CLI" "$PY" -m prlf_fast.cli train --device cuda --epochs 2 --out "$run_dir"
cp "$run_dir"/results.json "$run_dir"/report.md "$LOGS/" 2>/dev/null

for entry in "${BENCHES[@]}"; do
  IFS=: read -r name cap files <<<"$entry"
  IFS=, read -r -a files <<<"$files"
  step "bench-$name" "$cap" "$PY" -m pytest -q -p no:cacheprovider "${files[@]}" -k cuda \
    --benchmark-min-rounds=5 --benchmark-max-time=0.25 --benchmark-json="$LOGS/bench_$name.json"
done
step e2e-mosei "$CAP_E2E" "$PY" bench/e2e_mosei.py --device cuda --json "$LOGS/e2e_mosei.json"

# One benchmark JSON: the pytest-benchmark runs' benchmarks concatenated, e2e_mosei's keys beside.
"$PY" - "$OUT/bench.json" "$LOGS"/bench_*.json "$LOGS/e2e_mosei.json" <<'PYEOF'
import json, sys
merged = {"benchmarks": []}
for path in sys.argv[2:]:
    try:
        run = json.load(open(path))
    except (OSError, ValueError):
        continue
    benchmarks = run.pop("benchmarks", [])
    merged = {**run, **merged, "benchmarks": merged["benchmarks"] + benchmarks}
json.dump(merged, open(sys.argv[1], "w"), indent=1)
PYEOF
"$PY" bench/summarize.py "$OUT/bench.json" >"$LOGS/bench_summary.txt" 2>&1 && cat "$LOGS/bench_summary.txt"

# Pack the logs (a runaway log keeps its first and last MiB), then check $OUT against the limits.
for log in "$LOGS"/*; do
  if [ "$(stat -c %s "$log")" -gt $((4 << 20)) ]; then
    { head -c 1M "$log"; printf '\n[... cut by gpu_check ...]\n'; tail -c 1M "$log"; } >"$log.cut" && mv "$log.cut" "$log"
  fi
done
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
summary=$OUT/summary.txt
n_files=$(find "$OUT" -type f | wc -l)
too_big=$(find "$OUT" -type f -size +16M | wc -l)
too_deep=$(find "$OUT" -mindepth 4 | wc -l)
if [ "$n_files" -gt 7 ] || [ "$too_big" -gt 0 ] || [ "$too_deep" -gt 0 ]; then   # 7: summary.txt makes 8
  ROWS+=("out-limits|FAILED|0|0|$n_files files, $too_big over 16 MiB, $too_deep too deep")
  failures=$((failures + 1))
fi

{
  echo "=== gpu_check summary: $((SECONDS)) s of $caps_total s capped; $failures failure(s)"
  printf '%-24s %-16s %5s %5s  %s\n' step status secs cap note
  for row in "${ROWS[@]}"; do
    IFS='|' read -r name status secs cap note <<<"$row"
    printf '%-24s %-16s %5s %5s  %s\n' "$name" "$status" "$secs" "$cap" "$note"
  done
  if [ "$failures" -eq 0 ]; then echo "RESULT: ok"; else echo "RESULT: FAILED ($failures)"; fi
} >"$summary"
echo
cat "$summary"
[ "$failures" -eq 0 ]
