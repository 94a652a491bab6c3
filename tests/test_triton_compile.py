"""Every Triton kernel variant compiles for real GPUs (sm_80 and sm_90, through Triton and ptxas, no
device needed) at the presets' sizes in fp32, bf16 and the autocast mix, within the architecture's
shared memory and without bf16 register spills (kernels/compile_check.py, its CI matrix): catches
what the interpreter accepts but the compiler rejects, and resource regressions."""
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_every_variant_compiles_within_limits_for_sm80_and_sm90():
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "prlf_fast.kernels.compile_check", "--matrix", "ci"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()]
    assert all(row[-1] == "ok" for row in rows), result.stdout
    for arch in ("sm_80", "sm_90"):
        for kernel in ("_fwd_kernel", "_bwd_kernel"):   # attention: its autocast variant is bf16's
            for dtype in ("fp32", "bf16"):
                assert any(r[:2] == [arch, kernel] and dtype in r for r in rows), (arch, kernel, dtype)
        for kernel in ("_iteration_fwd_kernel", "_iteration_bwd_kernel"):
            for dtype in ("fp32", "bf16", "autocast"):
                found = [r for r in rows if r[:2] == [arch, kernel] and dtype in r]
                assert len(found) == (3 if kernel == "_iteration_fwd_kernel" else 2), (arch, kernel, dtype)
        assert sum(r[0] == arch and "dropout" in r for r in rows) == 6   # both iteration kernels × 3 dtypes
        assert sum(r[0] == arch and "N=3" in r for r in rows) == 3       # the persistent inference launch


@pytest.mark.parametrize("change, failure", [
    ({}, None),
    ({"shared": 163 * 1024 + 1}, "shared memory 166913 B > sm_80's 166912 B"),
    ({"arch": 90, "shared": 163 * 1024 + 1}, None),
    ({"spill_stores": 4}, "register spills in bf16 (4 B)"),
    ({"spill_loads": 8, "dtype": "fp32"}, None),      # fp32 spills are reported, not failed
])
def test_limits_are_enforced(change, failure):
    from prlf_fast.kernels.compile_check import problem

    row = dict(kernel="_iteration_bwd_kernel", variant="", dtype="bf16", sizes="d=64 h=8 T=8", arch=80,
               shared=1024, spill_stores=0, spill_loads=0)
    assert problem({**row, **change}) == failure


def test_refuses_to_run_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-m", "prlf_fast.kernels.compile_check"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2 and "unset TRITON_INTERPRET" in result.stderr


def test_spill_budgets_are_per_triton_release():
    """Triton 3.6 (torch 2.11's) spills 128 B in the sm_80 bf16 dropout backward where 3.7 spills 16:
    each release is held to its own numbers, an unlisted one to the newest listed before it."""
    from prlf_fast.kernels.compile_check import SPILL_BUDGETS, problem, spill_budget

    row = dict(kernel="_iteration_bwd_kernel", variant="dropout", dtype="bf16", sizes="d=128 h=8 T=8", arch=80,
               shared=1024, spill_stores=64, spill_loads=64)
    assert problem(row, spill_budget("3.6.0")) is None
    assert problem(row, spill_budget("3.7.1")) == "register spills in bf16 (128 B, budget 16 B)"
    assert spill_budget("3.6.1") is SPILL_BUDGETS[(3, 6)]
    assert spill_budget("3.5.0") is SPILL_BUDGETS[(3, 6)]
    assert spill_budget("3.8.0") is SPILL_BUDGETS[max(r for r in SPILL_BUDGETS if r <= (3, 8))]
    assert spill_budget("3.10.0") is SPILL_BUDGETS[max(SPILL_BUDGETS)]
