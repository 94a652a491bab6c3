"""prlf_fast: PRLF multimodal sentiment analysis under missing modalities, with fast paths.

The public names are imported on first use (PEP 562), so ``import prlf_fast`` (and with it the
``prlf-fast`` command line's ``--help``) does not import torch."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"
# public name -> module that defines it
_LAZY = {
    "Batch": "prlf_fast.batch",
    "MODALITIES": "prlf_fast.config",
    "PRESETS": "prlf_fast.config",
    "PRLFConfig": "prlf_fast.config",
    "PRLF": "prlf_fast.model",
    "PRLFOutput": "prlf_fast.model",
    "load_run": "prlf_fast.train.predict",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'prlf_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
