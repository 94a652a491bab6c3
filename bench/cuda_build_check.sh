#!/usr/bin/env bash
# The CUDA build against a real CUDA build of torch, on a machine without a GPU (docs/kernels.md,
# "The CUDA build check"): what a GPU machine's `pip install` would do, checked before device time
# is spent on it. In a venv of its own with PyPI's CUDA torch wheel (created once, then reused from
# the cache), from a copy of this tree's files:
#   1. the CUDA build (PRLF_FAST_CUDA=1, architectures PRLF_FAST_CUDA_ARCHS, default 80-real;90);
#   2. the dispatcher: every prlf_fast op has a CPU and a CUDA kernel, the build info's
#      architectures are the ones asked for;
#   3. `prlf-fast info`;
#   4. the CPU test suite under that torch with TRITON_INTERPRET=1 (step "tests"; "tests-per-file"
#      runs each test file in its own process instead, as bench/gpu_check.sh does);
#   5. the Triton compile check (sm_80, sm_90) under that torch's Triton;
#   6. bench/gpu_check.sh's dry run.
#
#   bash bench/cuda_build_check.sh                       torch 2.11.0 (what the lent GPU machines run)
#   CUDA_CHECK_TORCH=2.15.0 bash bench/cuda_build_check.sh
#
# CUDA_CHECK_TORCH    the torch release (its PyPI wheel, CUDA 13); default 2.11.0
# CUDA_CHECK_CACHE    where venvs live; default ~/.cache/prlf_fast (cuda-venv-<torch>, ~5 GB each)
# CUDA_CHECK_STEPS    the checks after the build (which always runs: the copy is fresh), default
#                     "dispatch info tests compile dry-run"; also "tests-per-file"
# MAX_JOBS            build parallelism (default 2)
# Needs nvcc with torch's CUDA major on PATH (or CUDA_HOME) and PyPI; no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=${CUDA_CHECK_TORCH:-2.11.0}
CACHE=${CUDA_CHECK_CACHE:-$HOME/.cache/prlf_fast}
VENV=$CACHE/cuda-venv-$TORCH
STEPS=" ${CUDA_CHECK_STEPS:-dispatch info tests compile dry-run} "
export PRLF_FAST_CUDA=1 PRLF_FAST_CUDA_ARCHS=${PRLF_FAST_CUDA_ARCHS:-80-real;90} MAX_JOBS=${MAX_JOBS:-2}
START=$SECONDS

step() {  # step NAME: a header; the previous step's time
  echo
  echo "=== cuda_build_check: $1 ($(date +%T), $((SECONDS - START)) s so far)"
}

# The venv: no system site-packages (it needs its own torch). Its pip takes a constraint file of its
# own, which pins torch for everything installed later and replaces the machine's pip cap, if any;
# with the Triton that torch pins older than 3.7, it also holds numpy < 2.4 (pyproject's comment).
if [ ! -f "$VENV/.ready" ]; then
  step "venv $VENV (torch $TORCH from PyPI; several GB, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  echo "torch==$TORCH" >"$VENV/constraints.txt"
  PIP_CONSTRAINT=$VENV/constraints.txt "$VENV/bin/pip" install -q "torch==$TORCH" \
    "setuptools>=77" wheel pybind11 ninja "cmake>=3.18"
  if "$VENV/bin/python" -c "import sys, triton; sys.exit(tuple(map(int, triton.__version__.split('.')[:2])) >= (3, 7))"; then
    echo "numpy<2.4" >>"$VENV/constraints.txt"
    PIP_CONSTRAINT=$VENV/constraints.txt "$VENV/bin/pip" install -q "numpy<2.4"
  fi
  touch "$VENV/.ready"
fi
export PATH=$VENV/bin:$PATH PIP_CONSTRAINT=$VENV/constraints.txt
PY=$VENV/bin/python
read -r TORCH_CUDA < <("$PY" -c "import torch; print(torch.version.cuda)")
[ "$TORCH_CUDA" != None ] || { echo "cuda_build_check: torch $TORCH from PyPI has no CUDA" >&2; exit 1; }

# A fresh copy of the tree's files (tracked, and untracked ones git does not ignore), so that the
# build writes nothing into this tree (whose extension is built for another torch).
SRC=$VENV/src
ROOT=$PWD
STAMP=$(bash bench/cuda_build_tree.sh)  # the files checked: the copy is made from them now
rm -rf "$SRC"
mkdir -p "$SRC"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
  | tar -c --null -T - | tar -x -C "$SRC"
cd "$SRC"

step "build (torch $TORCH, CUDA $TORCH_CUDA, $(nvcc --version | grep -o 'release [0-9.]*'), archs $PRLF_FAST_CUDA_ARCHS)"
"$PY" -m pip install -q --no-build-isolation -e ".[dev]"

if [[ $STEPS == *" dispatch "* ]]; then
  step "dispatch: a CPU and a CUDA kernel for every prlf_fast op; the architectures built and recorded"
  "$PY" - <<'PYEOF'
import os, re, subprocess, torch, triton
from prlf_fast import _extension
assert _extension.extension() is not None, _extension.problem()
info = _extension.build_info()
assert info["cuda_built"], info
want = os.environ["PRLF_FAST_CUDA_ARCHS"].replace(";", ",")
assert info["cuda_archs"] == want, f"the build info says cuda_archs {info['cuda_archs']!r}, asked for {want!r}"
# What the library holds (Triton ships cuobjdump): machine code unless "-virtual", PTX unless "-real".
entries = [re.fullmatch(r"(\d+[af]?)(-real|-virtual)?", a).groups() for a in want.split(",")]
expected = ({a for a, kind in entries if kind != "-virtual"}, {a for a, kind in entries if kind != "-real"})
cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
listing = subprocess.run([cuobjdump, "--list-elf", "--list-ptx", _extension.extension().__file__],
                         capture_output=True, text=True, check=True).stdout
built = (set(re.findall(r"\.sm_(\w+)\.cubin", listing)), set(re.findall(r"\.sm_(\w+)\.ptx", listing)))
assert built == expected, f"the library holds machine code for {built[0]} and PTX for {built[1]}, expected {expected}"
print("machine code for " + ", ".join(sorted(built[0])) + "; PTX for " + ", ".join(sorted(built[1])))
ops = _extension.registered_ops()
assert ops, "the extension registers no op"
for op in ops:
    name = f"prlf_fast::{op}"
    missing = [key for key in ("CPU", "CUDA") if not torch._C._dispatch_has_kernel_for_dispatch_key(name, key)]
    assert not missing, f"{name} has no {missing} kernel"
    print(f"{name}: CPU and CUDA kernels")
print(f"cuda_archs {info['cuda_archs']!r}")
PYEOF
fi

if [[ $STEPS == *" info "* ]]; then
  step "prlf-fast info"
  "$VENV/bin/prlf-fast" info
fi

if [[ $STEPS == *" tests "* ]]; then
  step "CPU tests under torch $TORCH, TRITON_INTERPRET=1"
  TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider tests
fi

if [[ $STEPS == *" tests-per-file "* ]]; then
  step "CPU tests under torch $TORCH, TRITON_INTERPRET=1, each file in its own process"
  failed=()
  log=$(mktemp)
  for file in tests/test_*.py; do
    rc=0
    TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider "$file" >"$log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { failed+=("$file"); tail -n 30 "$log"; }
    echo "$file: $(tail -n 1 "$log")"
  done
  rm -f "$log"
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "cuda_build_check: failed test files: ${failed[*]}" >&2
    exit 1
  fi
fi

if [[ $STEPS == *" compile "* ]]; then
  step "Triton compile check under triton $("$PY" -c 'import triton; print(triton.__version__)')"
  env -u TRITON_INTERPRET "$PY" -m prlf_fast.kernels.compile_check --matrix ci --jobs "$MAX_JOBS"
fi

if [[ $STEPS == *" dry-run "* ]]; then
  step "bench/gpu_check.sh dry run"
  dry_out=$(mktemp -d)
  GPU_CHECK_DRY_RUN=1 OUT=$dry_out PYTHON=$PY bash bench/gpu_check.sh | tail -n 3
  rm -rf "$dry_out"
fi

# The stamp .ci/run compares with (bench/cuda_build_tree.sh), written into this tree (not the
# copy) when at least the checks .ci/run runs have passed: commit it with the change it checked.
echo
for ci_step in dispatch info compile dry-run; do
  if [[ $STEPS != *" $ci_step "* ]]; then
    echo "=== cuda_build_check: ok (torch $TORCH, $((SECONDS - START)) s); no stamp written: step $ci_step did not run"
    exit 0
  fi
done
echo "$STAMP" >"$ROOT/bench/results/cuda_build_check.tree"
echo "=== cuda_build_check: ok (torch $TORCH, $((SECONDS - START)) s); wrote bench/results/cuda_build_check.tree"
