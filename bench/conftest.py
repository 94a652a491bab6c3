"""Shared benchmark plumbing: every result records machine, device, versions and commit, and
CUDA work is timed with synchronisation."""
import os
import sys

import pytest
import torch
from environment import environment_info

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _record_environment(request):
    if "benchmark" in request.fixturenames:
        info = environment_info(" ".join(["python -m pytest", *sys.argv[1:]]))
        request.getfixturevalue("benchmark").extra_info.update(info)


def synced(fn, device):
    """``fn`` followed by a device synchronisation, so wall time covers the queued GPU work."""
    if torch.device(device).type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


# Benchmark parameters are strings (pytest-benchmark saves them in its JSON); this maps them.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
