"""``report.md`` (tables laid out like the LNLN paper's) of a run's robustness results, and its
PNG plots (drawn by :mod:`prlf_fast.report.plots`, imported only when plots are written)."""
from __future__ import annotations

import os

from prlf_fast.config import MODALITIES
from prlf_fast.eval import anchors
from prlf_fast.metrics import acc2_key
from prlf_fast.io.atomic import write_text

# (column title, metric keys joined by "/", is a percentage). LNLN shows Acc-2 and F1 as Has0/Non0.
COLUMNS = {
    "regression3": [("Acc-7", ("Mult_acc_7",), True), ("Acc-5", ("Mult_acc_5",), True),
                    ("Acc-2", ("Has0_acc_2", "Non0_acc_2"), True),
                    ("F1", ("Has0_F1_score", "Non0_F1_score"), True),
                    ("MAE", ("MAE",), False), ("Corr", ("Corr",), False)],
    "sims": [("Acc-5", ("Mult_acc_5",), True), ("Acc-3", ("Mult_acc_3",), True),
             ("Acc-2", ("Mult_acc_2",), True), ("F1", ("F1_score",), True),
             ("MAE", ("MAE",), False), ("Corr", ("Corr",), False)],
}
PLOTS = {"intra": "plots/intra_missing_rate.png", "inter": "plots/inter_modality.png",
         "dominant": "plots/dominant_modality.png", "training": "plots/training.png"}
# What the numbers mean, per dataset (the report's note under its title).
NOTES = {
    "regression3": "Accuracies and F1 in %; Acc-2 and F1 as Has0/Non0 (Has0: negative vs non-negative labels; "
                   "Non0: samples labelled 0 left out, negative vs positive); MAE and Corr raw.",
    "sims": "Accuracies and F1 in %; Acc-2 negative [−1, 0] vs positive (0, 1], Acc-3 and Acc-5 over "
            "MMSA's SIMS bins, F1 weighted over the Acc-2 classes; MAE and Corr raw.",
}


def _family(dataset: str) -> str:
    return "sims" if dataset == "sims" else "regression3"


def columns(dataset: str):
    return COLUMNS[_family(dataset)]


def _fmt(metrics: dict, keys, pct: bool) -> str:
    return "/".join(f"{metrics[k] * 100:.2f}" if pct else f"{metrics[k]:.4f}" for k in keys)


def _row(label: str, metrics: dict, dataset: str, after=()) -> str:
    return "| " + " | ".join([label] + [_fmt(metrics, k, p) for _, k, p in columns(dataset)] + list(after)) + " |"


def _header(first: str, dataset: str, extra=(), after=()) -> list:
    titles = [first, *extra] + [c for c, _, _ in columns(dataset)] + list(after)
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]


def _std_note(std: dict, dataset: str) -> str:
    return "; ".join(f"{c} {_fmt(std, k, p)}" for c, k, p in columns(dataset))


def markdown(results: dict, info: dict, plots=()) -> str:
    """The report: run facts, intra table (per rate + average), dominant shares, inter table."""
    ds = info["dataset"]
    intra, inter = results["intra"], results["inter"]
    lines = [f"# PRLF robustness report — {ds}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"{NOTES[_family(ds)]} Metrics on the test split; the model was selected on the validation split.",
              ""]

    lines += ["## Intra-modality missing (random positions dropped at rate r in every modality)", ""]
    lines += _header("Missing rate", ds)
    lines += [_row(f"{r['rate']:.1f}", r["mean"], ds) for r in intra["per_rate"]]
    lines += [_row("**Average**", intra["average"]["mean"], ds), ""]
    if len(intra["seeds"]) > 1:
        lines += [f"Mean over mask seeds {intra['seeds']}; std over seeds of the average: "
                  f"{_std_note(intra['average']['std'], ds)}.", ""]
    else:
        lines += [f"Mask seed {intra['seeds'][0]}.", ""]

    lines += ["## Dominant modality chosen by AMRE (share of test samples)", ""]
    lines += ["| Missing rate | " + " | ".join(MODALITIES) + " |", "|---|" + "---|" * len(MODALITIES)]
    lines += ["| " + f"{r['rate']:.1f} | " + " | ".join(f"{r['dominant_share'][m] * 100:.1f}" for m in MODALITIES)
              + " |" for r in intra["per_rate"]]
    lines += [""]

    lines += ["## Inter-modality missing (whole modalities dropped)", ""]
    lines += _header("Dropped", ds, extra=("Available",), after=("Residual",))
    for r in inter["records"]:
        if r["dropped"]:
            lines.append(_row(f"{{{', '.join(r['dropped'])}}} | {{{', '.join(r['available'])}}}",
                              r["metrics"], ds, [f"{r['mean_residual']:+.4f}"]))
    lines.append(_row("**Average (6)** | ", inter["average"]["mean"], ds, [f"{inter['average']['mean_residual']:+.4f}"]))
    complete = next(r for r in inter["records"] if not r["dropped"])
    lines += [_row("none (complete) | {" + ", ".join(complete["available"]) + "}", complete["metrics"], ds,
                   [f"{complete['mean_residual']:+.4f}"]), "",
              "*Residual*: mean(ŷ − y) over the test samples, the level shift MAE hides (positive: "
              "predictions too high).", ""]
    lines += anchor_table(results, ds)
    if "permutation" in results:
        lines += permutation_table(results["permutation"], ds)
    lines += ["## Plots", ""] + [f"![{k}]({PLOTS[k]})" for k in plots] + [""]
    return "\n".join(lines)


def write_report(run_dir: str, results: dict, info: dict, history=None, select_metric="MAE") -> list:
    """Write report.md and the plots into ``run_dir``; return the paths written."""
    from prlf_fast.report import plots

    ds = info["dataset"]
    paths = {k: os.path.join(run_dir, p) for k, p in PLOTS.items()}
    plots.save(plots.intra_figure(results, ds, columns(ds)), paths["intra"])
    plots.save(plots.inter_figure(results, ds, columns(ds)), paths["inter"])
    plots.save(plots.dominant_figure(results), paths["dominant"])
    if history:
        selected = results.get("checkpoint", {}).get("epoch")
        plots.save(plots.training_figure(history, select_metric, selected), paths["training"])
    else:
        paths.pop("training")
    report = os.path.join(run_dir, "report.md")
    write_text(report, markdown(results, info, plots=list(paths)))
    return [report, *paths.values()]


def anchor_table(results: dict, dataset: str) -> list:
    """report.md lines of the anchor diagnostics: a row per rate, configuration and average, a
    column per anchor (MAE / Acc-2) and the headroom share."""
    intra, inter = results["intra"], results["inter"]
    if "anchors" not in intra:
        return []
    acc = acc2_key(dataset)

    def row(label, rec):
        cells = [f"{rec['metrics'][c]['MAE']:.4f} / {rec['metrics'][c][acc] * 100:.1f}" for c in anchors.COLUMNS]
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


def permutation_table(result: dict, dataset: str) -> list:
    """report.md lines of the reliability permutation test: a row per rate, configuration and average."""
    acc = acc2_key(dataset)

    def row(label, e):
        cells = []
        for key, scale, digits in (("MAE", 1, 4), (acc, 100, 2)):
            v = e[key]
            cells += [f"{v['clean'] * scale:.{digits}f}", f"{v['permuted'] * scale:.{digits}f}",
                      f"{v['gap'] * scale:+.{digits}f} (p={v['p']:.3f})", f"{v['oracle_gap'] * scale:+.{digits}f}"]
        return "| " + " | ".join([label, *cells]) + " |"

    lines = ["## Reliability permutation test: do the scores drive the predictions?", "",
             f"AMRE's scores permuted across test samples with the same present modalities, {result['k']} "
             f"permutations (seed {result['seed']}); *gap* clean − permuted (MAE: negative means the "
             "scores help; Acc-2 in %: positive), one-sided permutation p-value; *control*: clean − the "
             "positive control (per sample the best of its own and each present modality's one-hot "
             "score: sees the label, a bound).", "",
             "| Case | MAE | MAE permuted | MAE gap | MAE control | Acc-2 | Acc-2 permuted | Acc-2 gap "
             "| Acc-2 control |", "|---|" + "---|" * 8]
    lines += [row(f"intra {e['rate']:.1f}", e) for e in result["intra"]["per_rate"]]
    lines.append(row("**intra average**", result["intra"]["average"]))
    lines += [row(f"inter {e['config']}", e) for e in result["inter"]["per_config"]]
    lines += [row("**inter average (6)**", result["inter"]["average"]), ""]
    return lines
