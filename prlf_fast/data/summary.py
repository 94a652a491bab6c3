"""``describe``: a text summary of an MMSA pickle or cache (``prlf-fast data inspect``)."""
from __future__ import annotations

import hashlib

import numpy as np

from prlf_fast.config import MODALITIES
from prlf_fast.data.cache import is_cache, read_cache, read_meta
from prlf_fast.data.mmsa import LABEL_KEY, SPLITS, key_text, prepare_owned
from prlf_fast.data.safe_pickle import safe_load


def _stored(raw) -> dict:
    """{split: [(key text, shape, dtype or type name)]} of a raw MMSA dict, as far as it is one;
    only numpy arrays are asked for a shape (lists and tuples give their length)."""
    if not isinstance(raw, dict):
        return {}
    out = {}
    for split in SPLITS:
        if isinstance(raw.get(split), dict):
            out[split] = [(key_text(key), value.shape, str(value.dtype)) if isinstance(value, np.ndarray)
                          else (key_text(key), (len(value),) if type(value) in (list, tuple) else (),
                                type(value).__name__)
                          for key, value in raw[split].items()]
    return out


SHA_CHUNK = 1 << 20  # bytes read at a time: hashing never holds the file in memory


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes, read in ``SHA_CHUNK`` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(SHA_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(path, preset: str | None = None) -> str:
    """Splits, keys with stored shapes and dtypes, non-finite counts, valid lengths, label statistics."""
    if is_cache(path):
        meta = read_meta(path)
        splits, nonfinite = read_cache(path, preset), meta["nonfinite"]
        stored = {s: [(k, tuple(v.shape), str(v.dtype)) for k, v in t.items()] for s, t in splits.items()}
        lines = [f"{path}: prlf_fast cache converted from {meta['source']}"]
    else:
        box = [safe_load(path)]
        stored = _stored(box[0])
        splits, nonfinite = prepare_owned(box, path, preset)
        lines = [f"{path}: MMSA pickle", f"sha256 {file_sha256(path)}"]
    for split in SPLITS:
        tensors = splits[split]
        n = len(tensors[LABEL_KEY])
        lines.append(f"split {split}: {n} samples")
        for key, shape, dtype in stored[split]:
            count = nonfinite.get(f"{split}/{key}")
            extra = f"  non-finite {count}" if count else ""
            lines.append(f"  {key:<24} {str(shape):<18} {dtype}{extra}")
        if not n:
            continue
        for m in MODALITIES:
            n_valid = tensors[f"{m}_mask"].sum(dim=1).double()
            lines.append(f"  valid {m:<7} mean {n_valid.mean():.1f}, min {int(n_valid.min())}, "
                         f"max {int(n_valid.max())} of {tensors[m].shape[1]} positions")
        y = tensors[LABEL_KEY].double()
        lines.append(f"  labels  min {y.min():.3f}, max {y.max():.3f}, mean {y.mean():.3f}, std {y.std():.3f}; "
                     f"negative {int((y < 0).sum())}, zero {int((y == 0).sum())}, positive {int((y > 0).sum())}")
    total = sum(nonfinite.values())
    lines.append(f"non-finite values replaced by 0: {total}"
                 + (f" ({', '.join(f'{k}: {v}' for k, v in nonfinite.items())})" if total else ""))
    return "\n".join(lines)
