"""Anchor diagnostics of the robustness evaluation: how good the run's choice of the
dominant modality (AMRE's argmax by default) is, against each fixed anchor and against the
per-sample best anchor, on the same encodings.

Each evaluated batch is encoded once (``PRLF.encode``); AMRE, ProgInteract and the head then run
once with the run's own anchor rule and once per fixed anchor (``PRLF.fuse(..., anchor=m)``; a
sample without m falls back to the adaptive rule, as the ``anchor`` switch does). The per-sample
best takes, for every sample, the prediction with the lowest |ŷ − y| among those four: an oracle
that sees the label, so an optimistic bound on what any anchor rule could reach. The headroom
share AMRE captures is (best fixed − AMRE) / (best fixed − per-sample best) in MAE, where "best
fixed" is the fixed anchor with the lowest MAE in that row: 1 means AMRE reaches the per-sample
best, 0 the best fixed anchor, and below 0 it is worse than the best fixed anchor. It is ``None``
(no headroom) when the denominator is below ``HEADROOM_EPS``: no fixed anchor can be improved on
per sample, as when only one modality is available.
"""
from __future__ import annotations

import numpy as np
import torch

from prlf_fast.config import MODALITIES
from prlf_fast.metrics import mmsa_metrics

RULE = "amre"                        # the run's own anchor rule (its config's ``anchor``)
COLUMNS = (RULE, *MODALITIES, "best")
HEADROOM_EPS = 1e-9


def fuse_all(model, name, hidden, present) -> dict:
    """``{name: fuse with the run's rule, (name, m): fuse with m as the anchor}`` for one encoding
    (``PRLF.encode``'s hidden (B, 3, T, d) and present (B, 3))."""
    out = {name: model.fuse(hidden, present)}
    for m in MODALITIES:
        out[(name, m)] = model.fuse(hidden, present, anchor=m)
    return out


def headroom(mae: dict) -> float | None:
    """The headroom share AMRE captures, from the MAE of each column (see the module doc)."""
    best_fixed = min(mae[m] for m in MODALITIES)
    room = best_fixed - mae["best"]
    return None if room < HEADROOM_EPS else (best_fixed - mae[RULE]) / room


def per_sample_best(preds: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Of candidate predictions ``preds`` (C, N), per sample the one with the lowest |ŷ − y|
    (ties: the first), (N,); and the errors (C, N) in float64."""
    err = (preds.double() - label.double()).abs()
    return preds.gather(0, err.argmin(dim=0, keepdim=True))[0], err


def record(outputs: dict, name, label, dataset: str) -> dict:
    """Metrics of every column for case ``name`` of ``evaluate.collect``'s ``outputs`` (as
    ``fuse_all`` names them), the headroom share, and ``rule_best_share``: the share of samples
    whose prediction with the run's rule is (one of) the per-sample best."""
    preds = torch.stack([outputs[name]["prediction"]] + [outputs[(name, m)]["prediction"] for m in MODALITIES])
    best, err = per_sample_best(preds, label)                           # (N,), (4, N)
    metrics = {c: mmsa_metrics(p, label, dataset) for c, p in zip(COLUMNS, [*preds, best])}
    return {"metrics": metrics, "headroom": headroom({c: m["MAE"] for c, m in metrics.items()}),
            "rule_best_share": float((err[0] <= err.min(dim=0).values).double().mean())}


def mean_record(records: list) -> dict:
    """Per column the mean over ``records`` (each as ``record`` returns it) of every metric, and the
    headroom share of those means."""
    metrics = {c: {k: float(np.mean([r["metrics"][c][k] for r in records])) for k in records[0]["metrics"][c]}
               for c in COLUMNS}
    return {"metrics": metrics, "headroom": headroom({c: m["MAE"] for c, m in metrics.items()}),
            "rule_best_share": float(np.mean([r["rule_best_share"] for r in records]))}
