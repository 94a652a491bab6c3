"""A restricted unpickler for MMSA files: numpy arrays (object arrays of str included), dtypes,
numpy scalars and builtin containers; any other global is refused before anything runs."""
from __future__ import annotations

import importlib
import os
import pickle

from prlf_fast.data.errors import DataError, UnsafePickleError

_NUMPY_CORE = {
    "multiarray": {"_reconstruct", "scalar"},
    "numeric": {"_frombuffer"},
}
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes inside protocol-2 pickles
    ("collections", "OrderedDict"),
    *{(b, n) for b in ("builtins", "__builtin__") for n in ("set", "frozenset", "complex", "bytearray")},
}


def _resolve(module: str, name: str):
    """The admitted object for (module, name), or None. numpy 1.x pickles name ``numpy.core``,
    which numpy 2 calls ``numpy._core``."""
    import numpy as np

    for prefix in ("numpy._core.", "numpy.core."):
        if module.startswith(prefix) and name in _NUMPY_CORE.get(module[len(prefix):], ()):
            core = getattr(np, "_core", None) or np.core
            return getattr(getattr(core, module[len(prefix):]), name)
    if (module, name) in _ALLOWED:
        return getattr(importlib.import_module("builtins" if module == "__builtin__" else module), name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _resolve(module, name)
        if obj is None:
            raise UnsafePickleError(f"refused global '{module}.{name}'")
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refused persistent id {pid!r}")


def safe_load(path) -> object:
    """Unpickle ``path`` with the allow-list. Raises ``UnsafePickleError`` naming a refused global
    and ``DataError`` for a missing, truncated or corrupt file (messages name the file)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected an MMSA pickle")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}; only numpy arrays/dtypes/scalars and builtin "
                                "containers are admitted, so nothing from this file was run") from None
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # pickle raises many types for damaged input
        raise DataError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None
