"""Every Triton kernel compiles for a real GPU (sm_90 through ptxas, no device needed) at the
model's launch configuration, in fp32, bf16 and the autocast mix: catches what the interpreter
accepts but the compiler rejects (loop-carried type changes, dot shapes, dtype mixes)."""
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_kernels_compile_for_sm90():
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "prlf_fast.kernels.compile_check", "--arch", "90"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for kernel in ("_fwd_kernel", "_bwd_kernel", "_iteration_fwd_kernel", "_iteration_bwd_kernel"):
        for dtype in ("fp32", "bf16", "autocast"):
            assert any(line.split()[:2] == [kernel, dtype] and "registers" in line for line in lines), \
                f"{kernel} {dtype} missing from:\n{result.stdout}"
    assert sum(" dropout " in line for line in lines) == 6   # both iteration kernels × 3 dtypes
    assert sum(" N=3 " in line for line in lines) == 3       # the persistent inference launch × 3 dtypes


def test_refuses_to_run_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-m", "prlf_fast.kernels.compile_check"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2 and "unset TRITON_INTERPRET" in result.stderr
