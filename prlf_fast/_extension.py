"""Loading of the compiled extension ``prlf_fast._C``, with graceful degradation.

The extension is loaded only when its recorded build (``_build_info.json``) matches the running
torch; otherwise the package warns once with the rebuild command and every op falls back to its
pure-PyTorch reference.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

REBUILD = "pip install --no-build-isolation --no-deps -e ."
_state: dict = {}


def _mismatch(info: dict | None) -> str | None:
    if info is not None and info.get("torch") != torch.__version__:
        return f"built for torch {info.get('torch')}, running torch {torch.__version__}"
    return None


def _load(info_path: Path = Path(__file__).with_name("_build_info.json")):
    """(module or None, build info or None, problem or None). The recorded build is checked
    before the shared library is loaded, and again from the library itself."""
    if os.environ.get("PRLF_FAST_DISABLE_EXT") == "1":
        return None, None, "disabled by PRLF_FAST_DISABLE_EXT=1"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        info = None
    if _mismatch(info):
        return None, info, _mismatch(info)
    try:
        from prlf_fast import _C  # registers the ops with TORCH_LIBRARY
    except ImportError as exc:
        return None, info, f"not importable ({exc})"
    info = _C.build_info()
    return (None, info, _mismatch(info)) if _mismatch(info) else (_C, info, None)


def extension():
    """The loaded ``_C`` module, or None (after one warning) when it is missing or stale."""
    if "module" not in _state:
        module, info, problem = _load()
        _state.update(module=module, info=info, problem=problem)
        if problem is not None:
            warnings.warn(
                f"prlf_fast._C extension {problem}; using the pure-PyTorch reference ops "
                f"(slower). Rebuild with: {REBUILD}",
                RuntimeWarning,
                stacklevel=2,
            )
    return _state["module"]


def build_info() -> dict | None:
    extension()
    return _state["info"]


def problem() -> str | None:
    extension()
    return _state["problem"]


def registered_ops() -> list[str]:
    """Names of the ``prlf_fast::`` ops registered with the dispatcher."""
    extension()
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("prlf_fast::"))


def has_op(name: str) -> bool:
    """True when the extension is loaded and registers ``prlf_fast::name``."""
    return extension() is not None and hasattr(torch.ops.prlf_fast, name)


def has_cuda_kernels() -> bool:
    info = build_info()
    return bool(extension() is not None and info and info.get("cuda_built"))
