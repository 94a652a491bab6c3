"""The MMSA layout (docs/design.md §2): checking keys and shapes, sanitising, and validity masks.

``prepare_mmsa`` turns the numpy dict of an MMSA pickle into ``{split: {key: torch.Tensor}}``:
float32 features and labels with non-finite values replaced by 0, plus bool validity masks.
The input is never modified, and no two splits' tensors share memory.
"""
from __future__ import annotations

import reprlib
import warnings

import numpy as np
import torch

from prlf_fast.config import MODALITIES, PRESETS
from prlf_fast.data.errors import DataError
from prlf_fast.data.safe_pickle import MAX_NESTING

SPLITS = ("train", "valid", "test")
LABEL_KEY = "regression_labels"
REQUIRED_KEYS = (*MODALITIES, LABEL_KEY)
LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}
MASK_KEYS = tuple(f"{m}_mask" for m in MODALITIES)
_CHUNK = 1 << 24  # elements sanitised at a time, to bound the temporary memory
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


class NonFiniteWarning(UserWarning):
    """Non-finite feature values were replaced by 0."""


def key_text(key) -> str:
    """A short printable form of a dict key of any type (strings as they are)."""
    if type(key) is str:
        return key if len(key) <= 60 else key[:57] + "..."
    try:
        return _REPR.repr(key)
    except (ValueError, RecursionError):  # e.g. an int too long to print
        return f"<{type(key).__name__}>"


def _key_list(keys) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) if type(k) is str and len(k) <= 60 else key_text(k) for k in keys[:20])
    return (shown + f", ... ({len(keys)} in all)" if len(keys) > 20 else shown) or "none"


def _shape_error(source, split, key, expected, found, why=""):
    why = f" ({why})" if why else ""
    return DataError(f"{source}: split '{split}' key '{key}': expected shape {expected}, "
                     f"found {tuple(found)}{why}")


def check_split_shapes(shapes: dict, source, split: str, reference: dict | None = None,
                       preset: str | None = None) -> None:
    """Check one split's shapes (key → tuple) against each other, against ``reference`` (the
    train split's shapes: trailing axes must agree) and against ``preset``'s sizes."""
    for key in REQUIRED_KEYS:
        if key not in shapes:
            raise DataError(f"{source}: split '{split}' has no key '{key}' "
                            f"(found: {', '.join(sorted(shapes)) or 'none'})")
    n = shapes[LABEL_KEY][0] if shapes[LABEL_KEY] else None
    if len(shapes[LABEL_KEY]) not in (1, 2) or shapes[LABEL_KEY][1:] not in ((), (1,)):
        raise _shape_error(source, split, LABEL_KEY, "(N,)", shapes[LABEL_KEY])
    for m in MODALITIES:
        found = shapes[m]
        if len(found) != 3 or found[2] == 0:
            raise _shape_error(source, split, m, "(N, L, d) with d ≥ 1", found)
        if found[0] != n:
            raise _shape_error(source, split, m, (n, *found[1:]), found,
                               f"{n} samples in '{LABEL_KEY}'")
    text_len = shapes["text"][1]
    expected = {"text_bert": (n, 3, text_len), **{k: (n,) for k in LENGTH_KEYS.values()},
                **{f"{m}_mask": (n, shapes[m][1]) for m in MODALITIES}}
    for key, want in expected.items():
        found = shapes.get(key)
        if found is not None and tuple(found) != want and not (
                key in LENGTH_KEYS.values() and tuple(found) == (n, 1)):
            raise _shape_error(source, split, key, want, found)
    if reference is not None:
        for key in (*MODALITIES, "text_bert"):
            if key in shapes and key in reference and tuple(shapes[key][1:]) != tuple(reference[key][1:]):
                raise _shape_error(source, split, key, (shapes[key][0], *reference[key][1:]),
                                   shapes[key], "as in split 'train'")
    if preset is not None:
        if preset not in PRESETS:
            raise DataError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        p = PRESETS[preset]
        for m in MODALITIES:
            _, length, dim = shapes[m]
            if dim != p[f"{m}_dim"] or length > p[f"{m}_len"]:
                raise _shape_error(source, split, m, f"({n}, L ≤ {p[f'{m}_len']}, {p[f'{m}_dim']})",
                                   shapes[m], f"preset '{preset}'")


def _plain_numbers(value) -> bool:
    """A list or tuple (nested at most ``MAX_NESTING`` deep) of ints, floats, bools or numpy
    real scalars, and nothing else; a tree: no list appears twice in it (shared references
    would let a few bytes of pickle expand into an array far beyond the load's memory budget)."""
    if type(value) not in (list, tuple):
        return False
    todo, seen = [(value, 1)], {id(value)}
    while todo:
        items, depth = todo.pop()
        if depth > MAX_NESTING:
            return False
        for x in items:
            if type(x) in (list, tuple):
                if id(x) in seen:
                    return False
                seen.add(id(x))
                todo.append((x, depth + 1))
            elif type(x) not in (int, float, bool) and not isinstance(x, (np.integer, np.floating, np.bool_)):
                return False
    return True


def _numeric(value, source, split, key) -> np.ndarray:
    """A real numeric ``ndarray`` as it is, or a plain list of numbers as an array. Nothing else
    reaches numpy: no object converts itself (``__array__``, ``__array_interface__``)."""
    where = f"{source}: split '{split}' key '{key}'"
    if isinstance(value, np.ndarray):
        arr = value
    elif _plain_numbers(value):
        try:
            arr = np.array(value)
        except (ValueError, OverflowError) as exc:
            raise DataError(f"{where}: not an array of numbers ({str(exc)[:200]})") from None
    else:
        raise DataError(f"{where} is a {type(value).__name__}; expected a numpy array or a list of numbers")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where} has dtype {arr.dtype}; expected real numbers")
    return arr


def _fix_nonfinite(arr: np.ndarray, write: bool) -> int:
    """Count the non-finite values of a C-contiguous float array, chunk by chunk (numpy's
    ``isfinite`` is ~20× faster than torch's on the CPU); with ``write``, set them to 0."""
    count, flat = 0, arr.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK]
        finite = np.isfinite(chunk)
        n = chunk.size - int(np.count_nonzero(finite))
        if n and write:
            np.copyto(chunk, 0, where=~finite)
        count += n
    return count


def _float32_tensor(arr: np.ndarray, shared: list | None) -> tuple[torch.Tensor, int]:
    """``arr`` as a float32 tensor with non-finite values replaced by 0, and their count; ``arr``
    is never written. ``shared`` lists the byte ranges of arrays already returned without a copy:
    with it, a finite, C-contiguous, writable native float32 array whose memory is not among them
    is returned without a copy (and added); otherwise, or with ``shared=None``, a new tensor."""
    if shared is not None and arr.dtype == np.float32 and arr.flags.c_contiguous and arr.flags.writeable:
        start = arr.__array_interface__["data"][0]
        end = start + arr.nbytes
        if not any(a < end and start < b for a, b in shared) and not _fix_nonfinite(arr, write=False):
            shared.append((start, end))
            return torch.from_numpy(arr), 0
    arr = np.array(arr, dtype=np.float32, order="C")
    return torch.from_numpy(arr), _fix_nonfinite(arr, write=True)


def _row_mask(x: torch.Tensor) -> torch.Tensor:
    """Valid iff the feature row is not all zero (files without lengths or token masks)."""
    return torch.cat([(c != 0).any(-1) for c in x.split(1024)])


def _length_mask(lengths: np.ndarray, max_len: int, source, split, key) -> torch.Tensor:
    lengths = lengths.reshape(-1).astype(np.float64)
    if not np.all(np.isfinite(lengths)) or np.any(lengths < 0):
        raise DataError(f"{source}: split '{split}' key '{key}' holds negative or non-finite lengths")
    if not len(lengths):  # no samples: no arange sized by max_len alone
        return torch.zeros((0, max_len), dtype=torch.bool)
    lengths = torch.from_numpy(np.minimum(np.rint(lengths), max_len).astype(np.int64))
    return torch.arange(max_len)[None, :] < lengths[:, None]


def _prepare_split(raw, source, split, reference, preset, shared):
    """One split's tensors and non-finite counts; ``raw`` (that split's dict) is only read, and
    released array by array as it is converted when the caller holds no other reference."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: split '{split}' is a {type(raw).__name__}, expected a dict of arrays")
    keys = [k for k in (*REQUIRED_KEYS, "text_bert", *LENGTH_KEYS.values()) if k in raw]
    arrays = {k: _numeric(raw[k], source, split, k) for k in keys}
    del raw
    check_split_shapes({k: a.shape for k, a in arrays.items()}, source, split, reference, preset)
    out, counts = {}, {}
    for key in (*MODALITIES, "text_bert"):
        if key in arrays:
            out[key], counts[key] = _float32_tensor(arrays.pop(key), shared)
    label, bad = _float32_tensor(arrays.pop(LABEL_KEY), shared)
    label = label.reshape(-1)
    if bad:
        raise DataError(f"{source}: split '{split}' key '{LABEL_KEY}' holds {bad} non-finite labels")
    out[LABEL_KEY] = label
    if "text_bert" in out:
        out["text_mask"] = out["text_bert"][:, 1, :] > 0.5
    else:
        out["text_mask"] = _row_mask(out["text"])
    for m, length_key in LENGTH_KEYS.items():
        if length_key in arrays:
            out[f"{m}_mask"] = _length_mask(arrays[length_key], out[m].shape[1], source, split, length_key)
        else:
            out[f"{m}_mask"] = _row_mask(out[m])
    return out, {f"{split}/{k}": c for k, c in counts.items() if c}


def prepare_mmsa(data, source="<memory>", preset: str | None = None, copy: bool = True):
    """Check and convert an MMSA dict (numpy arrays) to ``{split: {key: tensor}}``.

    Returns ``(splits, nonfinite)`` where ``nonfinite`` maps ``"split/key"`` to the number of
    values replaced by 0, counted from the data of each split. ``data`` is never modified. With
    ``copy=False`` a finite C-contiguous float32 array is used without a copy (its tensor shares
    its memory) the first time it occurs; every other tensor is new, so no two splits share memory.
    """
    return prepare_owned([data], source, preset, copy)


def prepare_owned(box: list, source="<memory>", preset: str | None = None, copy: bool = False):
    """``prepare_mmsa`` of ``box[0]``, which ``box`` hands over (it is emptied): when nothing else
    refers to the dict, each split's arrays are released as they are converted (for big files)."""
    data = box.pop()
    if not isinstance(data, dict):
        raise DataError(f"{source}: top level is a {type(data).__name__}, expected a dict with "
                        f"splits {', '.join(SPLITS)}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise DataError(f"{source}: missing split(s) {', '.join(repr(s) for s in missing)} "
                        f"(found: {_key_list(data)})")
    pending = {s: data[s] for s in SPLITS}
    del data
    splits, nonfinite, reference, shared = {}, {}, None, None if copy else []
    for split in SPLITS:
        splits[split], counts = _prepare_split(pending.pop(split), source, split, reference, preset, shared)
        nonfinite.update(counts)
        if reference is None:
            reference = {k: tuple(v.shape) for k, v in splits[split].items()}
    return splits, nonfinite


def report_nonfinite(source, nonfinite: dict) -> None:
    """Warn once, with the total and a per split/key breakdown."""
    total = sum(nonfinite.values())
    if total:
        parts = ", ".join(f"{k}: {v}" for k, v in nonfinite.items())
        warnings.warn(f"{source}: replaced {total} non-finite values with 0 ({parts})",
                      NonFiniteWarning, stacklevel=3)
