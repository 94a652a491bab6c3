"""glibc malloc settings for prlf-fast's processes: freed tensor memory stays in the process for
the next step instead of going back to the operating system.

glibc serves an allocation above its mmap threshold (128 KiB, raised on the fly up to 32 MiB)
with a fresh mapping that it unmaps when freed, and returns the heap's free top to the system
above its trim threshold (128 KiB). A training step's large tensors (MOSEI at batch 64: B·L·d
floats, 16 MB each, and SDPA's zero-filled gradients of the same size) then come back as new pages
that the kernel faults in and zeroes every step: 26–47k minor page faults per step on this
project's VM, and 7–15% of the step's time (BENCHMARKS.md, "The memory allocator"). ``configure_malloc`` sets the mmap threshold to glibc's largest (32 MiB) and the trim
threshold to 1 GiB through ``mallopt``: 0.4–1.4k faults per step. It changes where memory comes
from, never a result.

A user's own choice wins: nothing is set when ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
a ``glibc.malloc`` tunable in ``GLIBC_TUNABLES`` or a preloaded allocator (``LD_PRELOAD``, e.g.
jemalloc or tcmalloc) is present, nor on a C library other than glibc. It can run at any time
(``mallopt`` applies to later allocations); the CLI and the sweep's cells call it first.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # glibc's mallopt parameters (malloc.h)
SETTINGS = {"mmap_threshold": 32 << 20, "trim_threshold": 1 << 30}   # bytes
USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")
_state: dict = {"set_by": None}


def user_choice(environ=None) -> str | None:
    """The variable through which the user chose the allocator's behaviour, or None."""
    env = os.environ if environ is None else environ
    for var in USER_VARS:
        if env.get(var):
            return var
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def _mallopt():
    """glibc's ``mallopt`` (int mallopt(int, int)), or None off glibc."""
    if platform.libc_ver()[0] != "glibc":
        return None
    fn = getattr(ctypes.CDLL(None), "mallopt", None)
    if fn is not None:
        fn.argtypes, fn.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return fn


def configure_malloc(environ=None, mallopt=None) -> dict:
    """Apply ``SETTINGS`` with ``mallopt`` (default: glibc's) unless ``user_choice(environ)``;
    returns what was set (empty when nothing was). Idempotent."""
    if user_choice(environ) is not None:
        _state["set_by"] = "user"
        return {}
    mallopt = mallopt or _mallopt()
    if mallopt is None:
        return {}
    applied = {}
    for name, param in (("mmap_threshold", M_MMAP_THRESHOLD), ("trim_threshold", M_TRIM_THRESHOLD)):
        if mallopt(param, SETTINGS[name]) == 1:   # mallopt returns 1 on success
            applied[name] = SETTINGS[name]
    if applied:
        _state["set_by"] = "prlf-fast"
    return applied


def record() -> dict:
    """The provenance entry ``malloc``: who set the allocator's thresholds ("prlf-fast", "user"
    or None: glibc's defaults) and, when prlf-fast did, their values in bytes."""
    return {"set_by": _state["set_by"], **(SETTINGS if _state["set_by"] == "prlf-fast" else {})}


def summary() -> str:
    """One line for train.log."""
    set_by = _state["set_by"]
    if set_by == "prlf-fast":
        return (f"malloc: mmap threshold {SETTINGS['mmap_threshold'] >> 20} MiB, trim threshold "
                f"{SETTINGS['trim_threshold'] >> 30} GiB (set by prlf-fast)")
    return f"malloc: the user's ({user_choice()})" if set_by == "user" else "malloc: the C library's defaults"
