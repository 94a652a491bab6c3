"""bench/gpu_check.sh in its dry-run mode (GPU_CHECK_DRY_RUN=1, CPU, seconds): the plan (kernel test
files first, each in its own pytest process; the parallel warm-up before them; one sanitizer pass),
the caps within 7 minutes, what reaches $OUT (≤ 8 files of ≤ 16 MiB, ≤ 2 folders deep), the merged
benchmark JSON, the summary table last, and a step at its cap counted as a failure."""
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
KERNEL_FILES = ["test_triton_attention", "test_triton_interact", "test_model_triton", "test_gpu_training"]


def dry_run(tmp_path, **env):
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "GPU_CHECK_DRY_RUN": "1", "OUT": str(out),
                                 "PYTHON": sys.executable, **env})
    return result, out


def summary_rows(stdout):
    tail = stdout[stdout.rindex("=== gpu_check summary"):].splitlines()
    return {line.split()[0]: line.split()[1] for line in tail[2:-1]}, tail


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return dry_run(tmp_path_factory.mktemp("gpu_check"))


def test_dry_run_passes_and_ends_with_the_summary(clean):
    result, out = clean
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows, tail = summary_rows(result.stdout)
    assert tail[-1] == "RESULT: ok" and result.stdout.rstrip().endswith("RESULT: ok")
    assert (out / "summary.txt").read_text().splitlines() == tail
    caps = int(re.search(r"of (\d+) s capped", tail[0]).group(1))
    assert caps <= 420, "the caps must fit 7 minutes on the GPU machine, build included"
    assert set(rows.values()) == {"ok"}


def test_out_holds_at_most_8_small_files_two_folders_deep(clean):
    _, out = clean
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["bench.json", "logs.tar.gz", "summary.txt"]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 << 20 for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for p in files for part in p.relative_to(out).parts)


def test_plan_order_one_process_per_test_file(clean):
    result, out = clean
    steps = re.findall(r"^=== (\S+) \(cap", result.stdout, flags=re.M)
    test_steps = [s for s in steps if s.startswith("test_")]
    assert steps[:3] == ["build", "info", "warm"]
    assert test_steps[:len(KERNEL_FILES)] == KERNEL_FILES and "test_fisher_op" in test_steps
    assert steps.index(test_steps[-1]) < steps.index("sanitizer") < steps.index("cli-train")
    for name in test_steps:   # each file alone in its pytest process, only its CUDA tests
        command = re.search(rf"^=== {name} \(cap \d+ s, [^)]*\): (.*)$", result.stdout, flags=re.M).group(1)
        assert re.findall(r"tests/\S+\.py", command) == [f"tests/{name}.py"] and "-m cuda" in command
    warm = re.search(r"^=== warm .*$", result.stdout, flags=re.M).group(0)
    assert "-n 12" in warm and all(f"tests/{f}.py" in warm for f in KERNEL_FILES)
    sanitizer = re.search(r"^=== sanitizer .*$", result.stdout, flags=re.M).group(0)
    assert "--tool memcheck" in sanitizer and "test_triton_attention.py::" in sanitizer \
        and "test_fisher_op.py::" in sanitizer
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {f"{s}.log" for s in steps} <= names and "test_fisher_op.xml" in names
    assert len(json.loads((out / "bench.json").read_text())["benchmarks"]) == 3   # the three bench steps


def test_sanitized_tests_exist():
    for node in ("tests/test_triton_attention.py::test_cuda_small_launch",
                 "tests/test_fisher_op.py::test_cuda_small_launch"):
        path, name = node.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(), node


@pytest.mark.parametrize("mode, status", [("TIMEOUT", "TIMEOUT"), ("FAIL", "FAILED(1)")])
def test_a_step_at_its_cap_or_failing_fails_the_check(tmp_path, mode, status):
    result, _ = dry_run(tmp_path, **{f"GPU_CHECK_DRY_RUN_{mode}": "test_triton_interact"})
    rows, tail = summary_rows(result.stdout)
    assert result.returncode != 0 and tail[-1] == "RESULT: FAILED (1)"
    assert rows["test_triton_interact"] == status and rows["test_model_triton"] == "ok"
