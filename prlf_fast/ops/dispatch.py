"""Which implementation each op uses for a backend and a device (DESIGN §5).

Backends: "reference" runs only reference code; "fast" (alias "auto") picks the fastest
available implementation per op and device, falling back op by op; "triton" forces the Triton
kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).
"""
from __future__ import annotations

import functools
import os

import torch

from prlf_fast import _extension

BACKENDS = ("reference", "fast", "triton")
OPS = ("masked_attention", "query_pooling", "interact_iteration", "fisher_reliability")


def normalize_backend(backend: str) -> str:
    backend = {"auto": "fast"}.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of reference, fast, auto, triton")
    return backend


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_runs_on(device_type: str) -> bool:
    if not triton_importable():
        return False
    if device_type == "cuda":
        return True
    return device_type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def _triton_kernel_available(op: str) -> bool:
    if not triton_importable():
        return False
    try:
        import prlf_fast.kernels as kernels
    except ImportError:
        return False
    return hasattr(kernels, op)


def implementation(op: str, backend: str, device_type: str) -> str:
    """Name of the implementation ``op`` runs under ``backend`` on ``device_type``."""
    backend = normalize_backend(backend)
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    if backend == "reference":
        return "reference"
    if op == "query_pooling":
        # Where attention has no Triton kernel, pooling skips the key/value projections ("folded").
        attention = implementation("masked_attention", backend, device_type)
        return "folded" if attention == "sdpa" else attention
    if op == "fisher_reliability":
        if not _extension.has_op("fisher_reliability"):
            return "reference"
        if device_type == "cuda" and not _extension.has_cuda_kernels():
            return "reference"
        return "extension"
    if backend == "triton":
        if not triton_runs_on(device_type):
            raise RuntimeError(
                f"backend 'triton' cannot run {op} on {device_type} tensors: "
                + ("triton is not installed" if not triton_importable()
                   else "use CUDA tensors, or set TRITON_INTERPRET=1 before importing prlf_fast")
            )
        if not _triton_kernel_available(op):
            raise RuntimeError(f"backend 'triton': no Triton kernel for {op} in prlf_fast.kernels")
        return "triton"
    # backend == "fast"
    if device_type == "cuda" and _triton_kernel_available(op):
        return "triton"
    return "sdpa" if op == "masked_attention" else "reference"


def describe(device_types=("cpu", "cuda")) -> dict:
    """{device: {op: implementation}} for the "fast" backend."""
    return {dev: {op: implementation(op, "fast", dev) for op in OPS} for dev in device_types}
