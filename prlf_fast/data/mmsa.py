"""The MMSA layout (DESIGN §2): checking keys and shapes, sanitising, and validity masks.

``prepare_mmsa`` turns the numpy dict of an MMSA pickle into ``{split: {key: torch.Tensor}}``:
float32 features and labels with non-finite values replaced by 0, plus bool validity masks.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from prlf_fast.config import MODALITIES, PRESETS
from prlf_fast.data.errors import DataError

SPLITS = ("train", "valid", "test")
LABEL_KEY = "regression_labels"
REQUIRED_KEYS = (*MODALITIES, LABEL_KEY)
LENGTH_KEYS = {"audio": "audio_lengths", "vision": "vision_lengths"}
MASK_KEYS = tuple(f"{m}_mask" for m in MODALITIES)
_CHUNK = 1 << 24  # elements sanitised at a time, to bound the temporary memory


class NonFiniteWarning(UserWarning):
    """Non-finite feature values were replaced by 0."""


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
        if len(found) != 3:
            raise _shape_error(source, split, m, "(N, L, d)", found)
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


def _numeric(value, source, split, key) -> np.ndarray:
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"{source}: split '{split}' key '{key}' has dtype {arr.dtype}; expected numbers")
    return arr


def _float32_tensor(arr: np.ndarray, copy: bool) -> torch.Tensor:
    if copy or arr.dtype != np.float32 or not arr.flags.c_contiguous or not arr.flags.writeable:
        arr = np.array(arr, dtype=np.float32, order="C")
    return torch.from_numpy(arr)


def sanitise_(t: torch.Tensor) -> int:
    """Replace non-finite values of a contiguous float tensor by 0 in place; return their count."""
    count = 0
    for chunk in t.view(-1).split(_CHUNK):
        bad = ~torch.isfinite(chunk)
        n = int(bad.sum())
        if n:
            chunk.masked_fill_(bad, 0.0)
            count += n
    return count


def _row_mask(x: torch.Tensor) -> torch.Tensor:
    """Valid iff the feature row is not all zero (files without lengths or token masks)."""
    return torch.cat([(c != 0).any(-1) for c in x.split(1024)])


def _length_mask(lengths: np.ndarray, max_len: int, source, split, key) -> torch.Tensor:
    lengths = lengths.reshape(-1).astype(np.float64)
    if not np.all(np.isfinite(lengths)) or np.any(lengths < 0):
        raise DataError(f"{source}: split '{split}' key '{key}' holds negative or non-finite lengths")
    lengths = torch.from_numpy(np.minimum(np.rint(lengths), max_len).astype(np.int64))
    return torch.arange(max_len)[None, :] < lengths[:, None]


def _prepare_split(raw, source, split, reference, preset, copy):
    if not isinstance(raw, dict):
        raise DataError(f"{source}: split '{split}' is a {type(raw).__name__}, expected a dict of arrays")
    keys = [k for k in (*REQUIRED_KEYS, "text_bert", *LENGTH_KEYS.values()) if k in raw]
    take = raw.__getitem__ if copy else raw.pop  # without copy, release the file's arrays early
    arrays = {k: _numeric(take(k), source, split, k) for k in keys}
    check_split_shapes({k: a.shape for k, a in arrays.items()}, source, split, reference, preset)
    out, counts = {}, {}
    for key in (*MODALITIES, "text_bert"):
        if key in arrays:
            out[key] = _float32_tensor(arrays.pop(key), copy)
            counts[key] = sanitise_(out[key])
    label = _float32_tensor(arrays.pop(LABEL_KEY), copy).reshape(-1)
    bad = int((~torch.isfinite(label)).sum())
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


def prepare_split(raw: dict, source, split: str, preset: str | None = None, copy: bool = True):
    """One split of an MMSA dict, as ``prepare_mmsa`` converts it: ``(tensors, nonfinite)``."""
    return _prepare_split(raw, source, split, None, preset, copy)


def prepare_mmsa(data, source="<memory>", preset: str | None = None, copy: bool = True):
    """Check and convert an MMSA dict (numpy arrays) to ``{split: {key: tensor}}``.

    Returns ``(splits, nonfinite)`` where ``nonfinite`` maps ``"split/key"`` to the number of
    values replaced by 0. With ``copy=False`` float32 arrays of ``data`` are sanitised in place
    and shared, and converted arrays are released from ``data`` as it goes (for big files).
    """
    if not isinstance(data, dict):
        raise DataError(f"{source}: top level is a {type(data).__name__}, expected a dict with "
                        f"splits {', '.join(SPLITS)}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise DataError(f"{source}: missing split(s) {', '.join(repr(s) for s in missing)} "
                        f"(found: {', '.join(map(repr, data)) or 'none'})")
    splits, nonfinite, reference = {}, {}, None
    for split in SPLITS:
        raw = data[split] if copy else data.pop(split)
        splits[split], counts = _prepare_split(raw, source, split, reference, preset, copy)
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
