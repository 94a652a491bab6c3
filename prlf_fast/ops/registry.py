"""The op registry: which implementation each op runs for a backend and the real inputs (their
device, dtype and sizes), and why the others were not picked (docs/design.md §5; as xformers'
``not_supported_reasons(inputs)`` does).

Backends: "reference" runs only reference code; "fast" (alias "auto") picks the fastest
implementation that supports the inputs, falling back op by op; "triton" forces the Triton kernels
(CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``), and fails where they cannot launch for
the inputs. Each op module (``prlf_fast/ops/<op>.py``) registers here its
``select(backend, device, dtype, limits) -> Choice``. ``limits`` is what the inputs' sizes say
against the op's fast implementation, ``(cannot, slow)``: why it cannot launch for them, why it
would run slowly; each a reason or None. The op module's ``kernel_limits`` computes it from the
tensors in plain arithmetic, so that under torch.compile (dynamic shapes included) the sizes
become guards and the choice a constant; ``NO_LIMITS`` where there are no inputs (``prlf-fast
info``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from prlf_fast.config import BACKENDS
_SELECTORS: dict[str, Callable] = {}
NO_LIMITS = (None, None)


@dataclass(frozen=True)
class Choice:
    """The implementation an op runs (``name``), and for every other candidate why not."""

    op: str
    name: str
    rejected: dict = field(default_factory=dict)   # implementation -> reason

    def explain(self) -> str:
        why_not = "; ".join(f"not {impl}: {reason}" for impl, reason in self.rejected.items())
        return self.name + (f" ({why_not})" if why_not else "")


def register(op: str, select: Callable) -> None:
    """Make ``select(backend, device, dtype, limits) -> Choice`` the selector of ``op``."""
    _SELECTORS[op] = select


def ops() -> tuple:
    """Names of the registered ops, in registration order."""
    return tuple(_SELECTORS)


def normalize_backend(backend: str) -> str:
    backend = {"auto": "fast"}.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of reference, fast, auto, triton")
    return backend


def _import_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


_TRITON_IMPORTABLE = _import_triton()   # (torch.library imports it anyway)


def triton_importable() -> bool:
    """Whether triton imports (a plain global, so torch.compile traces it without a cache)."""
    return _TRITON_IMPORTABLE


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def interpreter_unavailable(triton_version: str, numpy_version: str) -> str | None:
    """Why Triton's interpreter cannot run the kernels beside this numpy, or None: Triton 3.6's
    interpreter calls ``int()`` on 1-element arrays, which numpy >= 2.4 refuses (3.7 squeezes
    them first). The range pyproject declares; torch 2.11 pins Triton 3.6."""
    if _release(triton_version) < (3, 7) and _release(numpy_version) >= (2, 4):
        return (f"the interpreter of triton {triton_version} needs numpy < 2.4, not {numpy_version} "
                "(pip install 'numpy<2.4')")
    return None


def triton_unavailable(device: torch.device) -> str | None:
    """Why Triton kernels cannot run on ``device``'s tensors, or None when they can."""
    if not triton_importable():
        return "triton is not installed"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        import numpy
        import triton

        return interpreter_unavailable(triton.__version__, numpy.__version__)
    return ("CPU tensors need TRITON_INTERPRET=1 set before importing prlf_fast" if device.type == "cpu"
            else f"Triton does not run on {device.type} tensors")


def triton_runs_on(device_type: str) -> bool:
    return triton_unavailable(torch.device(device_type)) is None


def opaque_when_interpreted(*triton_ops) -> None:
    """Under ``TRITON_INTERPRET=1`` the kernels are not JITFunctions, so torch.compile cannot trace
    into a ``triton_op``: keep these ops opaque in graphs, as ``custom_op``s are (their fake impls
    skip the launch), so that a compiled graph calls them and they run eagerly."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    for op in triton_ops:
        op.register_torch_dispatch(FunctionalTensorMode, lambda mode, func, types, args, kwargs:
                                   mode.__torch_dispatch__(func, types, args, kwargs))


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """Compute capability of a CUDA device (tests replace this to fake one)."""
    return torch.cuda.get_device_capability(device)


_warned: set = set()


def warn_once(key, message: str) -> None:
    """One RuntimeWarning per ``key`` and process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def select(op: str, backend: str, device, dtype: torch.dtype | None = None, limits: tuple = NO_LIMITS) -> Choice:
    """The ``Choice`` of ``op`` under ``backend`` for tensors on ``device`` (a torch.device or a
    device string; a bare "cuda" means the current CUDA device) of ``dtype`` (None: float32) whose
    sizes give ``limits`` (the op module's ``kernel_limits``). RuntimeError where backend "triton"
    cannot run them."""
    if op not in _SELECTORS:
        raise ValueError(f"unknown op {op!r}; expected one of {ops()}")
    return _SELECTORS[op](normalize_backend(backend), torch.device(device), dtype or torch.float32, tuple(limits))


@torch.compiler.assume_constant_result
def implementation(op: str, backend: str, device, dtype: torch.dtype | None = None, limits: tuple = NO_LIMITS) -> str:
    """Name of the implementation ``op`` runs (see ``select``); a constant under torch.compile."""
    return select(op, backend, device, dtype, limits).name


def refuse(op: str, device: torch.device, reason: str):
    """The RuntimeError of backend "triton" where its kernels cannot run ``op``'s inputs."""
    return RuntimeError(f"backend 'triton' cannot run {op} on {device.type} tensors: {reason}")
