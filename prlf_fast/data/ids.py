"""Sample ids and raw text of an MMSA pickle (its ``id`` and ``raw_text`` keys), kept as Python
strings so that predictions can name their samples, from a pickle or from a converted cache."""
from __future__ import annotations

import os

import numpy as np

from prlf_fast.data.errors import DataError
from prlf_fast.data.safe_pickle import BUDGET_FACTOR, BUDGET_FLOOR

TEXT_KEYS = ("id", "raw_text")


def _strings(value, where: str) -> list:
    """The elements of a 1-d sequence of str/bytes (an object, str or bytes ndarray, or a list or
    tuple of them) as ``str``; anything else is a DataError."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "OUS":
        items = value.reshape(-1).tolist()
    elif type(value) in (list, tuple):
        items = value
    else:
        raise DataError(f"{where} is a {type(value).__name__}; expected an array of strings")
    out = []
    for x in items:
        if isinstance(x, bytes):
            out.append(x.decode("utf-8", errors="replace"))
        elif isinstance(x, str):
            out.append(x)
        else:
            raise DataError(f"{where} holds a {type(x).__name__}; expected strings")
    return out


def sample_texts(raw, source) -> dict:
    """``{split: {key: [str]}}`` for the ``id`` and ``raw_text`` arrays that the splits of ``raw``
    (the dict ``safe_pickle.safe_load`` returns for the file ``source``) hold: copies, one string
    per sample. Call it before ``mmsa.prepare_owned``, which releases the splits. Raises
    ``DataError`` when such an array is not one of strings, when its length differs from the
    split's number of labels or text samples, or when all strings together exceed the load's
    memory budget (a pickle can reference one long string many times: the copies would not be
    shared once written out)."""
    out = {}
    if not isinstance(raw, dict):
        return out
    budget = BUDGET_FACTOR * os.path.getsize(source) + BUDGET_FLOOR if os.path.isfile(source) else None
    chars = 0
    for split, part in raw.items():
        if not isinstance(part, dict):
            continue
        n = next((len(part[k]) for k in ("regression_labels", "text") if k in part), None)
        for key in TEXT_KEYS:
            if key not in part:
                continue
            where = f"{source}: split '{split}' key '{key}'"
            values = _strings(part[key], where)
            if n is not None and len(values) != n:
                raise DataError(f"{where} has {len(values)} entries for {n} samples")
            chars += sum(map(len, values))
            if budget is not None and chars > budget:
                raise DataError(f"{source}: its id/raw_text strings add up to more than the load's "
                                f"memory budget ({budget >> 20} MiB)")
            out.setdefault(split, {})[key] = values
    return out
