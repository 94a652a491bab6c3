"""Anchor diagnostics of the robustness evaluation (issue #15): how good the run's choice of the
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


def summarize_intra(records: list) -> dict:
    """Per rate the mean over mask seeds; the average over rates (per seed, then over seeds)."""
    rates = sorted({r["rate"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    per_rate = [{"rate": rate, **mean_record([r["anchors"] for r in records if r["rate"] == rate])}
                for rate in rates]
    per_seed = [mean_record([r["anchors"] for r in records if r["seed"] == s]) for s in seeds]
    return {"per_rate": per_rate, "average": mean_record(per_seed)}


def summarize_inter(records: list) -> dict:
    """The mean over the six missing configurations."""
    return {"average": mean_record([r["anchors"] for r in records if r["dropped"]])}


def acc2_key(dataset: str) -> str:
    return "Mult_acc_2" if dataset == "sims" else "Has0_acc_2"


def markdown(results: dict, dataset: str) -> list:
    """report.md lines: one table, a row per rate, configuration and average, a column per anchor
    (MAE / Acc-2) and the headroom share."""
    intra, inter = results["intra"], results["inter"]
    if "anchors" not in intra:
        return []
    acc = acc2_key(dataset)

    def row(label, rec):
        cells = [f"{rec['metrics'][c]['MAE']:.4f} / {rec['metrics'][c][acc] * 100:.1f}" for c in COLUMNS]
        share = "—" if rec["headroom"] is None else f"{rec['headroom'] * 100:.0f}%"
        return "| " + " | ".join([label, *cells, share, f"{rec['rule_best_share'] * 100:.0f}%"]) + " |"

    lines = ["## Anchor choice: the run's anchor rule against fixed anchors and the per-sample best", "",
             f"MAE / Acc-2 ({acc}, %) on the same encodings, the anchor forced at inference. "
             "*best*: per sample the anchor with the lowest |ŷ − y| (sees the label: an optimistic "
             "bound). *captured*: (best fixed − AMRE) / (best fixed − best) in MAE; — where no "
             "anchor beats another. *AMRE best*: share of samples where AMRE's anchor is the best.", "",
             "| Case | AMRE | text | audio | vision | best | captured | AMRE best |",
             "|---|" + "---|" * 7]
    lines += [row(f"intra {r['rate']:.1f}", r) for r in intra["anchors"]["per_rate"]]
    lines.append(row("**intra average**", intra["anchors"]["average"]))
    lines += [row("inter " + ("complete" if not r["dropped"] else "−{" + ", ".join(r["dropped"]) + "}"), r["anchors"])
              for r in inter["records"]]
    lines += [row("**inter average (6)**", inter["anchors"]["average"]), ""]
    return lines
