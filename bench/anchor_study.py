"""The anchor study of docs/studies.md (issue #15): variants of AMRE over training seeds on several
data sets, compared by paired differences with 95% confidence intervals (Student t over seeds).

    python bench/anchor_study.py SWEEP [SWEEP ...] [--baseline amre] [--metric MAE]

Each SWEEP is a ``prlf-fast sweep`` directory (its cells' results.json hold the anchor
diagnostics); a set is a sweep dataset. Per set it prints, for the intra average
and the inter average (mean of the six configurations): every variant's value of the metric with
its own rule, with each fixed anchor forced at inference and with the per-sample best (mean ± std
over seeds), the headroom share AMRE captures, and the paired differences over the seeds both
variants share: variant − baseline and variant − its best fixed anchor (the fixed anchor with the
best mean on that set: lowest MAE, highest otherwise). The headroom share is shown for MAE only.
Needs scipy.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

from prlf_fast.io.rundir import RESULTS
from prlf_fast.study.aggregate import paired
from prlf_fast.study.spec import CELLS

COLUMNS = ("amre", "text", "audio", "vision", "best")
FIXED = ("text", "audio", "vision")


def load(*sweeps: str) -> dict:
    """{dataset: {variant: {seed: results}}} of the finished cells of ``prlf-fast sweep``
    directories (SWEEP/cells/<dataset>/<variant>/seed<S>/results.json)."""
    out: dict = {}
    for sweep in sweeps:
        for path in sorted(glob.glob(os.path.join(sweep, CELLS, "*", "*", "seed*", RESULTS))):
            seed_dir = os.path.dirname(path)
            variant_dir = os.path.dirname(seed_dir)
            name = os.path.basename(os.path.dirname(variant_dir))
            with open(path) as f:
                out.setdefault(name, {}).setdefault(os.path.basename(variant_dir), {})[
                    int(os.path.basename(seed_dir).removeprefix("seed"))] = json.load(f)
    return out


def value(results: dict, proto: str, column: str, metric: str) -> float:
    return results[proto]["anchors"]["average"]["metrics"][column][metric]


def ci_text(vs: dict | None) -> str:
    """``aggregate.paired``'s result as "diff [lo, hi]" ("—" for None)."""
    if vs is None:
        return "—"
    if vs["ci95"] is None:
        return f"{vs['diff']:+.4f} (n = {vs['n']})"
    return f"{vs['diff']:+.4f} [{vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}]"


def headroom(means: dict) -> str:
    best_fixed = min(means[m] for m in FIXED)
    room = best_fixed - means["best"]
    return "—" if room < 1e-9 else f"{(best_fixed - means['amre']) / room * 100:.0f}%"


def table(runs: dict, proto: str, metric: str, baseline: str) -> list:
    lines = [f"| variant | seeds | own rule | text fixed | audio fixed | vision fixed | per-sample best "
             f"| captured | − {baseline} (own rule) | − best fixed |", "|---|" + "---|" * 9]
    base = runs.get(baseline, {})
    for variant, seeds in runs.items():
        order = sorted(seeds)
        vals = {c: [value(seeds[s], proto, c, metric) for s in order] for c in COLUMNS}
        means = {c: float(np.mean(v)) for c, v in vals.items()}
        cells = [f"{means[c]:.4f} ± {np.std(vals[c], ddof=1) if len(order) > 1 else 0:.4f}" for c in COLUMNS]
        shared = [s for s in order if s in base]
        vs_base = "—" if variant == baseline or not shared else ci_text(paired(
            [value(seeds[s], proto, "amre", metric) for s in shared],
            [value(base[s], proto, "amre", metric) for s in shared]))
        best_fixed = (min if metric == "MAE" else max)(FIXED, key=lambda m: means[m])
        vs_fixed = f"{best_fixed}: " + ci_text(paired(vals["amre"], vals[best_fixed]))
        lines.append(f"| {variant} | {len(order)} | " + " | ".join(cells) + f" | {headroom(means) if metric == 'MAE' else '—'} | {vs_base} | {vs_fixed} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("sweeps", nargs="+", metavar="SWEEP")
    p.add_argument("--baseline", default="amre")
    p.add_argument("--metric", default="MAE")
    args = p.parse_args()
    for name, runs in load(*args.sweeps).items():
        for proto, title in (("intra", "intra average (rates 0.0–0.9)"), ("inter", "inter average (six configurations)")):
            print(f"\n#### {name}: {title}, {args.metric}\n")
            print("\n".join(table(runs, proto, args.metric, args.baseline)))


if __name__ == "__main__":
    main()
