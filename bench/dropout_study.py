"""The modality-dropout study of docs/studies.md (issue #22): training-time modality dropout
settings over training seeds on several data sets, compared with p = 0 by paired differences
with 95% confidence intervals (Student t over seeds), and issue #22's rule applied.

    python bench/dropout_study.py SWEEP [SWEEP ...] [--baseline p0]

Each SWEEP is a ``prlf-fast sweep`` directory whose variants are the settings (docs/studies.md
gives the commands); a set is a sweep dataset. Per set: each
setting's intra and inter average MAE (mean ± std over seeds) and its paired difference with the
baseline. The rule: the setting with the best inter-average MAE becomes the default if its CI
against the baseline lies below 0 on at least two sets and, on every set, the upper CI bound of
its intra-average MAE difference is at most +0.005; otherwise the baseline stays.
"""
from __future__ import annotations

import argparse

import numpy as np
from anchor_study import ci_text, load

from prlf_fast.study.aggregate import paired

INTRA_SLACK = 0.005


def average_mae(results: dict, proto: str) -> float:
    return results[proto]["average"]["mean"]["MAE"]


def compare(runs: dict, baseline: str) -> dict:
    """{setting: {proto: {"mean", "std", "n", "vs": paired(...) or None}}} for one set."""
    base = runs[baseline]
    out = {}
    for setting, seeds in sorted(runs.items(), key=lambda kv: kv[0] != baseline):  # the baseline first
        out[setting] = {}
        for proto in ("intra", "inter"):
            vals = [average_mae(seeds[s], proto) for s in sorted(seeds)]
            shared = sorted(s for s in seeds if s in base)
            vs = None if setting == baseline else paired([average_mae(seeds[s], proto) for s in shared],
                                                         [average_mae(base[s], proto) for s in shared])
            out[setting][proto] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1
                                   else None, "n": len(vals), "vs": vs}
    return out


def decide(tables: dict, baseline: str) -> tuple[str, str]:
    """(the setting the rule picks, why)."""
    settings = [s for s in next(iter(tables.values())) if s != baseline]
    inter_mean = {s: np.mean([t[s]["inter"]["mean"] for t in tables.values() if s in t]) for s in settings}
    best = min(settings, key=inter_mean.get)
    wins = [name for name, t in tables.items() if best in t and t[best]["inter"]["vs"]["ci95"] is not None
            and t[best]["inter"]["vs"]["ci95"][1] < 0]
    worse = [name for name, t in tables.items() if best in t and (t[best]["intra"]["vs"]["ci95"] is None
             or t[best]["intra"]["vs"]["ci95"][1] > INTRA_SLACK)]
    if len(wins) >= 2 and not worse:
        return best, (f"{best} has the best inter-average MAE; its CI against {baseline} excludes 0 on "
                      f"{', '.join(wins)} and its intra average is within +{INTRA_SLACK} (upper CI bound) on every set")
    return baseline, (f"{best} has the best inter-average MAE, but its CI against {baseline} lies below 0 on "
                      f"{len(wins)} set(s) ({', '.join(wins) or 'none'}; 2 needed) and its intra-average upper "
                      f"CI bound exceeds +{INTRA_SLACK} (or is undefined) on {', '.join(worse) or 'no set'}: "
                      f"{baseline} stays")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="+", metavar="SWEEP")
    p.add_argument("--baseline", default="p0")
    args = p.parse_args()
    tables = {name: compare(runs, args.baseline) for name, runs in load(*args.sweeps).items()
              if args.baseline in runs}
    for name, table in tables.items():
        print(f"\n#### {name}: average MAE (mean ± std over seeds) and − {args.baseline} (paired, 95% CI)\n")
        print("| setting | seeds | intra average | − baseline | inter average | − baseline |")
        print("|---|---|---|---|---|---|")
        for setting, row in table.items():
            cells = [f"{row[q]['mean']:.4f}" + ("" if row[q]["std"] is None else f" ± {row[q]['std']:.4f}")
                     + f" | {ci_text(row[q]['vs'])}" for q in ("intra", "inter")]
            print(f"| {setting} | {row['intra']['n']} | " + " | ".join(cells) + " |")
    choice, why = decide(tables, args.baseline)
    print(f"\nDecision: {choice}. {why}.")


if __name__ == "__main__":
    main()
