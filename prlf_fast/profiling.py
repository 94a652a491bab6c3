"""NVTX ranges so an Nsight Systems timeline reads like the model.

Uses the optional ``nvtx`` package; without it (or while torch.compile traces) every range is a
no-op that costs one function call.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

try:
    import nvtx as _nvtx
except ImportError:
    _nvtx = None

_NULL = nullcontext()


def nvtx_range(name: str):
    """Context manager marking ``name`` in the ``prlf_fast`` NVTX domain."""
    if _nvtx is None or torch.compiler.is_compiling():
        return _NULL
    return _nvtx.annotate(name, domain="prlf_fast")


def nvtx_available() -> bool:
    return _nvtx is not None
