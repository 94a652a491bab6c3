"""Aggregation over training seeds: the content of ``SWEEP/summary.json``.

For each dataset and variant, every metric of every protocol entry of the cells' results.json
(``intra/average``, ``intra/<rate>``, ``inter/<configuration>`` with ``complete``, and
``inter/average`` over the six) as mean and sample standard deviation (n − 1) over the finished
seeds, with the per-seed values. Each variant is compared with the reference variant (default
``full``) on the seeds both finished: mean paired difference (variant − reference), its 95%
confidence interval (Student t, n − 1 degrees of freedom) and the paired t-test p-value
(``scipy.stats.ttest_rel``); null where n < 2 or the differences do not vary.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

from prlf_fast.io.rundir import RESULTS
from prlf_fast.study.record import read_results, read_state
from prlf_fast.study.spec import cell_dir, cell_key

SUMMARY = "summary.json"
AVERAGES = ("intra/average", "inter/average")


def entries(results: dict) -> dict:
    """``entry -> {metric: value}`` of one run's results.json."""
    out = {"intra/average": results["intra"]["average"]["mean"]}
    out.update({f"intra/{r['rate']:g}": r["mean"] for r in results["intra"]["per_rate"]})
    out.update({f"inter/{r['config']}": r["metrics"] for r in results["inter"]["records"]})
    out["inter/average"] = results["inter"]["average"]["mean"]
    return out


def _std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def stats(per_seed: dict) -> dict:
    """``{seed: {entry: {metric: v}}}`` → ``{entry: {"mean", "std", "values"}}`` (values in
    seed order)."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    out = {}
    for entry, metrics in first.items():
        values = {m: [per_seed[s][entry][m] for s in seeds] for m in metrics}
        out[entry] = {"mean": {m: float(np.mean(v)) for m, v in values.items()},
                      "std": {m: _std(v) for m, v in values.items()}, "values": values}
    return out


def paired(a, b) -> dict:
    """Paired comparison of ``a`` against ``b`` (same seeds, same order)."""
    from scipy import stats as st

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    out = {"n": n, "diff": float(d.mean()) if n else None, "ci95": None, "p": None}
    if n < 2 or float(np.std(d, ddof=1)) == 0.0:
        return out
    half = float(st.t.ppf(0.975, n - 1)) * float(np.std(d, ddof=1)) / math.sqrt(n)
    out["ci95"] = [out["diff"] - half, out["diff"] + half]
    with warnings.catch_warnings():  # nearly equal values: scipy warns about precision, p stays valid
        warnings.simplefilter("ignore", RuntimeWarning)
        out["p"] = float(st.ttest_rel(a, b).pvalue)
    return out


def _mismatch(results: dict, preset: str, per_seed: dict) -> str | None:
    """Why a cell's (schema-checked) results cannot join its variant's other seeds, or None."""
    if results["dataset"] != preset:
        return f"dataset {results['dataset']!r}, but the sweep's is {preset!r}"
    found, first = entries(results), next(iter(per_seed.values()), None)
    if first is not None and {e: sorted(m) for e, m in found.items()} != {e: sorted(m) for e, m in first.items()}:
        return f"its protocol entries and metrics differ from seed {min(per_seed)}'s"
    return None


def summarize(sweep_dir: str) -> dict:
    """Read every finished cell of the sweep in ``sweep_dir``; return summary.json's content.
    A cell whose results are damaged counts as unfinished, with a ``note`` naming the file, and
    so does one whose protocol entries differ from its variant's first finished seed's."""
    from prlf_fast.errors import PRLFError

    state = read_state(sweep_dir)
    if state is None:
        raise PRLFError(f"{sweep_dir} holds no sweep (sweep.json is missing)")
    spec, invocations = state
    cells, datasets = [], {}
    for d in spec.datasets:
        per_variant = {}
        for v in spec.variants:
            per_seed = {}
            for s in spec.seeds:
                out = cell_dir(sweep_dir, d.name, v, s)
                results, note = read_results(out)
                if results is not None:
                    note = _mismatch(results, d.preset, per_seed)
                    if note:
                        results, note = None, f"{os.path.join(out, RESULTS)}: {note}"
                    else:
                        per_seed[s] = entries(results)
                cells.append({"key": cell_key(d.name, v, s), "dataset": d.name, "variant": v, "seed": s,
                              "dir": os.path.relpath(out, sweep_dir), "finished": results is not None,
                              **({"note": note} if note else {})})
            if per_seed:
                per_variant[v] = {"seeds": sorted(per_seed), "n": len(per_seed), **stats(per_seed)}
        comparisons = {}
        ref = per_variant.get(spec.reference)
        for v, agg in per_variant.items():
            if v == spec.reference or ref is None:
                continue
            common = [s for s in agg["seeds"] if s in ref["seeds"]]
            ia, ir = [agg["seeds"].index(s) for s in common], [ref["seeds"].index(s) for s in common]
            comparisons[v] = {"seeds": common, **{
                entry: {m: paired([agg[entry]["values"][m][i] for i in ia],
                                  [ref[entry]["values"][m][i] for i in ir])
                        for m in agg[entry]["values"] if m in ref[entry]["values"]}
                for entry in agg if "/" in entry and entry in ref}}
        datasets[d.name] = {"preset": d.preset, "dataset": d.preset, "data": d.data,
                            "variants": per_variant, "reference": spec.reference, "comparisons": comparisons}
    return {"spec": spec.to_dict(), "cells": cells, "datasets": datasets, "invocations": invocations}
