"""The anchor diagnosis of docs/model.md (issue #15), from per-sample predictions of a trained run:
per modality the confidence c, Fisher information F (and its two terms), ‖z‖, ‖u‖ and the score s,
split by whether the run's anchor (AMRE's argmax) was the per-sample best one.

    python bench/anchor_diagnosis.py RUN_DIR [--rates 0.0 0.5 0.9] [--mask-seed 0]

Prints markdown tables. Inference only (a few seconds on CPU for the 400 test samples of the
embedded synthetic set)."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from prlf_fast import load_run
from prlf_fast.config import MODALITIES
from prlf_fast.data import missing
from prlf_fast.data.runs import load_splits
from prlf_fast.io.rundir import RunDir
from prlf_fast.reference.fisher import fisher_reliability, gelu_grad, recognition_logits


@torch.no_grad()
def per_sample(model, split, rate: float, mask_seed: int) -> dict:
    """Per-sample arrays: prediction error per anchor (4, N) [rule, text, audio, vision], and per
    modality (N, 3) c, F, the terms of F, ‖z‖, ‖u‖, s, present."""
    idx = torch.arange(len(split))
    batch = missing.intra_corrupt(split.batch(idx), rate,
                                  missing.select_uniforms(missing.eval_uniforms(split, mask_seed), idx))
    hidden, present = model.encode(batch)
    outs = [model.fuse(hidden, present)] + [model.fuse(hidden, present, anchor=m) for m in MODALITIES]
    err = torch.stack([(o.prediction - batch.label).abs() for o in outs])
    amre = model.amre
    z = hidden.mean(dim=2)
    a, u, o = recognition_logits(z, amre.w1, amre.b1, amre.w2, amre.b2)
    p = torch.softmax(o, dim=-1)
    c, f = fisher_reliability(z, amre.w1, amre.b1, amre.w2, amre.b2)
    head_term = (1 - p.square().sum(-1)) * (u.square().sum(-1) + 1)
    g2 = gelu_grad(a).square()
    spread = (g2 * (torch.einsum("bmk,mkh->bmh", p, amre.w2.square())
                    - torch.einsum("bmk,mkh->bmh", p, amre.w2).square())).sum(-1)
    return {"err": err, "dominant": outs[0].dominant, "present": present, "c": c, "F": f,
            "F_head": head_term, "F_hidden": spread * (z.square().sum(-1) + 1), "spread": spread,
            "znorm": z.norm(dim=-1), "unorm": u.norm(dim=-1), "s": outs[0].scores,
            "label": batch.label}


def report(d: dict, rate: float) -> None:
    err = d["err"]
    fixed = err[1:]                                          # (3, N)
    best = fixed.min(dim=0).values
    rule_best = err[0] <= best
    best_m = fixed.argmin(dim=0)
    n = err.shape[1]
    print(f"\n### rate {rate}: AMRE's anchor is the best in {rule_best.float().mean() * 100:.1f}% of "
          f"{n} samples; MAE rule {err[0].mean():.4f}, fixed "
          + ", ".join(f"{m} {fixed[i].mean():.4f}" for i, m in enumerate(MODALITIES))
          + f", per-sample best {best.mean():.4f}\n")
    print("chosen \\ best | " + " | ".join(MODALITIES) + " |\n|---|---|---|---|")
    for i, m in enumerate(MODALITIES):
        row = [(d["dominant"] == i) & (best_m == j) for j in range(3)]
        print(f"| {m} | " + " | ".join(f"{int(r.sum())}" for r in row) + " |")
    print("\nMAE on the samples AMRE anchors on each modality, with each anchor forced:\n\n"
          "| AMRE's anchor | samples | " + " | ".join(f"{m} fixed" for m in MODALITIES) + " | best |\n|---|---|---|---|---|---|")
    for i, m in enumerate(MODALITIES):
        sel = d["dominant"] == i
        if sel.any():
            print(f"| {m} | {int(sel.sum())} | " + " | ".join(f"{fixed[j][sel].mean():.4f}" for j in range(3))
                  + f" | {best[sel].mean():.4f} |")
    print("\n| modality | quantity | all: mean ± std | AMRE best | AMRE not best |\n|---|---|---|---|---|")
    for j, m in enumerate(MODALITIES):
        pres = d["present"][:, j]
        for q, f in (("c", lambda x: x), ("log(1+F)", torch.log1p), ("F head term", lambda x: x),
                     ("F hidden term", lambda x: x), ("‖z‖", lambda x: x), ("‖u‖", lambda x: x), ("s", lambda x: x)):
            key = {"c": "c", "log(1+F)": "F", "F head term": "F_head", "F hidden term": "F_hidden",
                   "‖z‖": "znorm", "‖u‖": "unorm", "s": "s"}[q]
            v = f(d[key][:, j].double())
            cells = [v[pres & sel].mean().item() if (pres & sel).any() else float("nan")
                     for sel in (rule_best, ~rule_best)]
            print(f"| {m} | {q} | {v[pres].mean().item():.3f} ± {v[pres].std().item():.3f} | "
                  + " | ".join(f"{x:.3f}" for x in cells) + " |")
    print("\nCorrelation over present samples of log(1+F) with log(1+‖z‖²), log(1+‖u‖²), and of each "
          "score with −|ŷ_m − y| (the fixed-m error):\n\n| modality | corr(log F, log ‖z‖²) | "
          "corr(log F, log ‖u‖²) | corr(s, −err_m) | corr(log c, −err_m) | corr(−log F, −err_m) |\n|---|---|---|---|---|---|")
    for j, m in enumerate(MODALITIES):
        pres = d["present"][:, j]
        lf = torch.log1p(d["F"][pres, j]).double().numpy()
        e = -err[1 + j][pres].double().numpy()
        cols = [np.corrcoef(lf, np.log1p(d["znorm"][pres, j].double().numpy() ** 2))[0, 1],
                np.corrcoef(lf, np.log1p(d["unorm"][pres, j].double().numpy() ** 2))[0, 1],
                np.corrcoef(d["s"][pres, j].double().numpy(), e)[0, 1],
                np.corrcoef(np.log(d["c"][pres, j].double().numpy()), e)[0, 1],
                np.corrcoef(-lf, e)[0, 1]]
        print(f"| {m} | " + " | ".join(f"{x:.3f}" for x in cols) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run")
    p.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.5, 0.9])
    p.add_argument("--mask-seed", type=int, default=0)
    args = p.parse_args()
    model = load_run(args.run, device="cpu")
    split = load_splits(RunDir(args.run, echo=False).read_config()["data"], model.config, "cpu",
                        needed=("test",))["test"]
    print(f"α = {model.amre.alpha.item():.3f}, β = {model.amre.beta.item():.3f}")
    for rate in args.rates:
        report(per_sample(model, split, rate, args.mask_seed), rate)


if __name__ == "__main__":
    main()
