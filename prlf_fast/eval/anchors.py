"""Anchor diagnostics of the robustness evaluation: how good the run's choice of the
dominant modality (AMRE's argmax by default) is, against each fixed anchor and against the
per-sample best anchor, on the same encodings.

Each evaluated batch is encoded once (``PRLF.encode``) and AMRE runs once; ProgInteract and the
head run with the run's own anchor rule, and with each fixed anchor m only for the samples whose
order m changes (``fuse_all``; a sample without m falls back to the adaptive rule, as the
``anchor`` switch does). The result is bit for bit ``PRLF.fuse(..., anchor=m)`` on the batch. The per-sample
best takes, for every sample, the prediction with the lowest |ŷ − y| among those four: an oracle
that sees the label, so an optimistic bound on what any anchor rule could reach. The headroom
share AMRE captures is (best fixed − AMRE) / (best fixed − per-sample best) in MAE, where "best
fixed" is the fixed anchor with the lowest MAE in that row: 1 means AMRE reaches the per-sample
best, 0 the best fixed anchor, and below 0 it is worse than the best fixed anchor. It is ``None``
(no headroom) when the denominator is below ``HEADROOM_EPS``: no fixed anchor can be improved on
per sample, as when only one modality is available.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prlf_fast.config import MODALITIES
from prlf_fast.metrics import mmsa_metrics
from prlf_fast.model.amre import reliability_weights_and_order

RULE = "amre"                        # the run's own anchor rule (its config's ``anchor``)
COLUMNS = (RULE, *MODALITIES, "best")
HEADROOM_EPS = 1e-9


@dataclass
class AnchorOutput:
    """The fields of ``PRLFOutput`` that the evaluation collects, for one fixed anchor."""
    prediction: torch.Tensor   # (B,)
    dominant: torch.Tensor     # (B,) int64: the anchor (or the rule's, where it is absent)


def fuse_all(model, name, hidden, present) -> dict:
    """``{name: PRLF.fuse with the run's rule, (name, m): AnchorOutput with m as the anchor}`` for
    one encoding (``PRLF.encode``'s hidden (B, 3, T, d) and present (B, 3)), each bit for bit
    ``model.fuse(hidden, present, anchor=m)``.

    Reliability weights do not depend on the anchor, and where m leaves a sample's order as the
    rule's (m is its anchor, or absent) neither does its prediction: the rule's is reused. That
    leaves each sample at most two anchors to run (of three modalities, those present that are not
    its anchor). Pass k runs ``PRLF.predict`` on the whole batch with, in every sample's own row,
    its k-th such anchor's order (the rule's where it has none), so every product keeps the shape
    and row of the batch's (a CPU GEMM rounds a row by its position in the tiles, not only by its
    values): two passes where the rule's and three forced ones ran."""
    rule = model.fuse(hidden, present)
    orders = torch.stack([reliability_weights_and_order(rule.scores, model.amre.tau, m)[1]
                          for m in MODALITIES])                                  # (3, B, 3)
    changes = (orders != rule.order).any(dim=-1)                                # (3, B)
    rank = changes.long().cumsum(dim=0) - 1                                     # k of anchor m for sample i
    predictions = rule.prediction.expand(len(MODALITIES), -1).clone()
    samples = torch.arange(len(rule.prediction), device=rule.prediction.device)
    for k in range(int(changes.sum(dim=0).max()) if changes.numel() else 0):
        kth = changes & (rank == k)                                             # (3, B): m is i's k-th
        has_k, anchor_k = kth.any(dim=0), kth.long().argmax(dim=0)
        order = torch.where(has_k[:, None], orders[anchor_k, samples], rule.order)
        prediction = model.predict(hidden, rule.weights, order)[0]
        predictions[anchor_k[has_k], samples[has_k]] = prediction[has_k]
    out = {name: rule}
    for i, m in enumerate(MODALITIES):
        out[(name, m)] = AnchorOutput(predictions[i], orders[i][:, 0])
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
