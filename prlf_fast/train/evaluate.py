"""The robustness protocols of DESIGN §3 on one split: intra-modality missing over rates × mask
seeds (one draw of U per seed, shared by every rate, so masks are nested) and inter-modality
missing over the six configurations plus the complete case. Batched: each batch is gathered
once and run at every rate."""
from __future__ import annotations

import numpy as np
import torch

from prlf_fast.config import MODALITIES
from prlf_fast.data import missing
from prlf_fast.metrics import mmsa_metrics
from prlf_fast.profiling import nvtx_range


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a disabled context elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def _predict(model, split, variants: dict, batch_size: int, device, amp: bool):
    """Run every variant (name -> fn(batch, idx) -> batch) over ``split``.

    Returns name -> (predictions (N,), dominant (N,)) as CPU tensors.
    """
    was_training = model.training
    model.eval()
    preds = {k: [] for k in variants}
    doms = {k: [] for k in variants}
    try:
        for idx, batch in split.iter_batches(batch_size):
            for name, corrupt in variants.items():
                with nvtx_range("data"):
                    corrupted = corrupt(batch, idx)
                with autocast(device, amp):
                    out = model(corrupted)
                preds[name].append(out.prediction.float().cpu())
                doms[name].append(out.dominant.cpu())
    finally:
        model.train(was_training)
    return {k: (torch.cat(preds[k]), torch.cat(doms[k])) for k in variants}


def _dominant_share(dominant: torch.Tensor) -> dict:
    counts = torch.bincount(dominant, minlength=len(MODALITIES)).double() / max(len(dominant), 1)
    return {m: float(counts[i]) for i, m in enumerate(MODALITIES)}


def intra(model, split, dataset: str, rates, seeds, batch_size: int = 256, device="cpu", amp=True) -> list:
    """One record per (rate, seed): metrics and the share of samples each modality dominates."""
    device = torch.device(device)
    label = split.label.float().cpu()
    records = []
    for seed in seeds:
        uniforms = missing.eval_uniforms(split, seed)

        def at_rate(rate):
            return lambda batch, idx: missing.intra_corrupt(
                batch, rate, missing.select_uniforms(uniforms, idx))

        out = _predict(model, split, {r: at_rate(r) for r in rates}, batch_size, device, amp)
        for rate in rates:
            pred, dom = out[rate]
            records.append({"rate": float(rate), "seed": int(seed),
                            "metrics": mmsa_metrics(pred, label, dataset),
                            "dominant_share": _dominant_share(dom)})
    return records


def inter_name(dropped) -> str:
    return "complete" if not dropped else "-".join(dropped)


def inter(model, split, dataset: str, batch_size: int = 256, device="cpu", amp=True) -> list:
    """One record per inter-modality configuration and the complete case (deterministic: no seed)."""
    device = torch.device(device)
    configs = [tuple(c) for c in missing.INTER_CONFIGS] + [()]
    variants = {c: (lambda batch, idx, c=c: missing.inter_drop(batch, c) if c else batch) for c in configs}
    out = _predict(model, split, variants, batch_size, device, amp)
    label = split.label.float().cpu()
    return [{"config": inter_name(c), "dropped": list(c),
             "available": [m for m in MODALITIES if m not in c],
             "metrics": mmsa_metrics(out[c][0], label, dataset),
             "dominant_share": _dominant_share(out[c][1])} for c in configs]


def _stats(dicts: list) -> tuple[dict, dict]:
    keys = dicts[0].keys()
    mean = {k: float(np.mean([d[k] for d in dicts])) for k in keys}
    std = {k: float(np.std([d[k] for d in dicts])) for k in keys}
    return mean, std


def summarize_intra(records: list) -> dict:
    """Mean and std over seeds at each rate; the average over rates (std over seeds of it)."""
    rates = sorted({r["rate"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    per_rate = []
    for rate in rates:
        at = [r for r in records if r["rate"] == rate]
        mean, std = _stats([r["metrics"] for r in at])
        share, _ = _stats([r["dominant_share"] for r in at])
        per_rate.append({"rate": rate, "mean": mean, "std": std, "dominant_share": share})
    per_seed_avg = [_stats([r["metrics"] for r in records if r["seed"] == s])[0] for s in seeds]
    mean, std = _stats(per_seed_avg)
    return {"rates": rates, "seeds": seeds, "per_rate": per_rate, "average": {"mean": mean, "std": std}}


def summarize_inter(records: list) -> dict:
    """The mean of the six missing configurations (the complete case is reported apart)."""
    missing_only = [r["metrics"] for r in records if r["dropped"]]
    mean, std = _stats(missing_only)
    return {"average": {"mean": mean, "std": std}}


DEFAULT_SEEDS = (0, 1, 2)  # mask seeds of the robustness evaluation


def robustness(model, split, dataset: str, rates=None, seeds=DEFAULT_SEEDS, batch_size: int = 256,
               device="cpu", amp=True) -> dict:
    """Both protocols on ``split``: records and summaries, ready for results.json."""
    rates = list(missing.DEFAULT_RATES if rates is None else rates)
    intra_records = intra(model, split, dataset, rates, seeds, batch_size, device, amp)
    inter_records = inter(model, split, dataset, batch_size, device, amp)
    return {
        "intra": {"records": intra_records, **summarize_intra(intra_records)},
        "inter": {"records": inter_records, **summarize_inter(inter_records)},
    }
