"""Sample ids and raw text of an MMSA pickle (its ``id`` and ``raw_text`` keys), kept as Python
strings so that predictions can name their samples, from a pickle or from a converted cache."""
from __future__ import annotations

import numpy as np

from prlf_fast.data.errors import DataError

TEXT_KEYS = ("id", "raw_text")


def _as_str(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def sample_texts(raw, source) -> dict:
    """``{split: {key: [str]}}`` for the ``id`` and ``raw_text`` arrays that the splits of ``raw``
    (the dict ``safe_pickle.safe_load`` returns) hold: copies, one string per sample. Call it
    before ``prepare_mmsa(..., copy=False)``, which releases the splits. Raises ``DataError``
    when such an array's length differs from the split's number of labels or text samples."""
    out = {}
    if not isinstance(raw, dict):
        return out
    for split, part in raw.items():
        if not isinstance(part, dict):
            continue
        n = next((len(part[k]) for k in ("regression_labels", "text") if k in part), None)
        for key in TEXT_KEYS:
            if key not in part:
                continue
            values = [_as_str(v) for v in np.asarray(part[key], dtype=object).reshape(-1)]
            if n is not None and len(values) != n:
                raise DataError(f"{source}: split '{split}' key '{key}' has {len(values)} entries "
                                f"for {n} samples")
            out.setdefault(split, {})[key] = values
    return out
