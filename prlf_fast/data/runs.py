"""A run's data: where it comes from (``data_spec``: a file or the embedded synthetic set), the
splits as ``Split`` objects checked against the run's config (``load_splits``), and one split with
its sample ids for predictions (``prediction_data``)."""
from __future__ import annotations

import os

import numpy as np
import torch

from prlf_fast.config import MODALITIES, PRLFConfig
from prlf_fast.data.cache import is_cache, read_texts
from prlf_fast.data.ids import sample_texts
from prlf_fast.data.loader import load_mmsa
from prlf_fast.data.mmsa import (
    LABEL_KEY,
    LENGTH_KEYS,
    REQUIRED_KEYS,
    SPLITS,
    check_split_shapes,
    prepare_mmsa,
    report_nonfinite,
)
from prlf_fast.data.safe_pickle import safe_load
from prlf_fast.data.split import Split
from prlf_fast.data.synthetic import synthesize
from prlf_fast.errors import PRLFError

# The embedded default data set: MOSI-shaped synthetic data, small enough for 2 CPU cores.
SYNTHETIC_DEFAULT = {"n_train": 800, "n_valid": 200, "n_test": 400, "seed": 0}


def data_spec(path: str | None, synthetic: dict | None = None) -> dict:
    """How to get a run's data back: a file path, or the synthetic set's sizes and seed."""
    if path is not None:
        return {"path": os.path.abspath(path), "synthetic": None}
    return {"path": None, "synthetic": dict(synthetic or SYNTHETIC_DEFAULT)}


def _tensor_splits(spec: dict, dataset: str) -> dict:
    if spec["path"] is not None:
        return load_mmsa(spec["path"], preset=dataset)
    s = spec["synthetic"]
    raw = synthesize(dataset, s["n_train"], s["n_valid"], s["n_test"], s["seed"])
    # The synthetic set holds −inf in audio on purpose (as MOSEI does); they become 0 silently.
    return prepare_mmsa(raw, source=f"synthetic {dataset}", preset=dataset, copy=False)[0]


def check_splits(tensors: dict, cfg: PRLFConfig, source: str, needed=SPLITS) -> None:
    """Errors for data the run cannot use: empty splits, shapes against the config, bad labels."""
    for name in needed:
        if name not in tensors:
            raise PRLFError(f"data {source}: split {name!r} is missing")
        part = tensors[name]
        n = part["regression_labels"].shape[0]
        if n == 0:
            raise PRLFError(f"data {source}: split {name!r} is empty")
        for m in MODALITIES:
            x = part[m]
            want_d, max_l = cfg.dims()[m], cfg.lengths()[m]
            if cfg.text_encoder == "bert" and m == "text":
                if "text_bert" not in part:
                    raise PRLFError(f"data {source}: split {name!r} has no 'text_bert' token ids, "
                                    "which text_encoder='bert' needs")
                continue
            if x.shape[-1] != want_d or x.shape[1] > max_l:
                raise PRLFError(f"data {source}: split {name!r} key {m!r} has shape {tuple(x.shape)}, "
                                f"but the {cfg.dataset} config expects (N, ≤{max_l}, {want_d})")
        bad = ~torch.isfinite(part["regression_labels"])
        if bad.any():
            first = int(bad.nonzero()[0, 0])
            raise PRLFError(f"data {source}: split {name!r} has {int(bad.sum())} non-finite "
                            f"regression_labels (first at index {first})")


def load_splits(spec: dict, cfg: PRLFConfig, device, needed=SPLITS) -> dict:
    """The run's data as ``Split`` objects on ``device``, checked against ``cfg``."""
    source = spec["path"] or "synthetic (embedded default)"
    tensors = _tensor_splits(spec, cfg.dataset)
    check_splits(tensors, cfg, source, needed)
    return {name: Split.from_mmsa(tensors[name], device=device) for name in needed}


CONVERTED_KEYS = (*REQUIRED_KEYS, "text_bert", *LENGTH_KEYS.values())   # what prepare_mmsa reads


def _pickle_split(path: str, split: str, cfg: PRLFConfig, device):
    """One split of an MMSA pickle, labels optional, other splits not needed: (Split, texts,
    has_labels). ``prepare_mmsa`` wants all three splits: the other two are stand-ins made of
    the split's first sample, converted and dropped."""
    raw = safe_load(path)
    texts = sample_texts(raw, path).get(split, {})
    part = raw.get(split) if isinstance(raw, dict) else None
    if not isinstance(part, dict):
        found = ", ".join(map(repr, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise PRLFError(f"data {path}: no split {split!r} (found: {found or 'none'})")
    part = {k: v for k, v in part.items() if k in CONVERTED_KEYS}
    has_labels = LABEL_KEY in part
    if not has_labels and "text" in part:   # predictions only: a stand-in label, never reported
        part[LABEL_KEY] = np.zeros(len(part["text"]), dtype=np.float32)
    check_split_shapes({k: np.shape(v) for k, v in part.items()}, path, split, preset=cfg.dataset)
    stand_in = {k: v[:1] for k, v in part.items()}
    tensors, nonfinite = prepare_mmsa({s: part if s == split else stand_in for s in SPLITS}, path, cfg.dataset)
    report_nonfinite(path, {k: n for k, n in nonfinite.items() if k.startswith(f"{split}/")})
    check_splits(tensors, cfg, path, needed=(split,))
    return Split.from_mmsa(tensors[split], device=device), texts, has_labels


def prediction_data(spec: dict, split: str, cfg: PRLFConfig, device):
    """``(Split, ids, has_labels)`` for ``split`` of a run's data ``spec`` (``run.data_spec``): a
    pickle (labels optional; ids from its ``id`` key), a converted cache (ids kept by ``data
    convert``) or the synthetic set. Samples without a stored id are named by their row number."""
    path = spec["path"]
    if split not in SPLITS:
        raise PRLFError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if path is not None and not is_cache(path):
        data, texts, has_labels = _pickle_split(path, split, cfg, device)
    else:
        data = load_splits(spec, cfg, device, needed=(split,))[split]
        texts, has_labels = (read_texts(path).get(split, {}) if path else {}), True
    ids = texts.get("id") or [str(i) for i in range(len(data))]
    return data, ids, has_labels


