"""Shared benchmark plumbing: every result records machine, device, versions and commit, and
CUDA work is timed with synchronisation."""
import functools
import os
import platform
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def environment_info() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        commit = None
    info = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "cpu": cpu_model(),
            "torch": torch.__version__, "python": platform.python_version(), "commit": commit,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(),
            "command": " ".join(["python -m pytest", *sys.argv[1:]])}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


@pytest.fixture(autouse=True)
def _record_environment(request):
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info.update(environment_info())


def synced(fn, device):
    """``fn`` followed by a device synchronisation, so wall time covers the queued GPU work."""
    if torch.device(device).type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
