"""``report.md`` (tables laid out like the LNLN paper's) and PNG plots (matplotlib, Agg backend)
of a run's robustness results and training curve."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prlf_fast.config import MODALITIES  # noqa: E402
from prlf_fast.train import anchors  # noqa: E402
from prlf_fast.train.atomic import atomic_path, write_text  # noqa: E402

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
COLORS = {"text": "tab:blue", "audio": "tab:orange", "vision": "tab:green"}
LETTERS = {"text": "l", "audio": "a", "vision": "v"}


def columns(dataset: str):
    return COLUMNS["sims" if dataset == "sims" else "regression3"]


def _fmt(metrics: dict, keys, pct: bool) -> str:
    return "/".join(f"{metrics[k] * 100:.2f}" if pct else f"{metrics[k]:.4f}" for k in keys)


def _row(label: str, metrics: dict, dataset: str) -> str:
    return "| " + " | ".join([label] + [_fmt(metrics, k, p) for _, k, p in columns(dataset)]) + " |"


def _header(first: str, dataset: str, extra=()) -> list:
    titles = [first, *extra] + [c for c, _, _ in columns(dataset)]
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]


def _std_note(std: dict, dataset: str) -> str:
    return "; ".join(f"{c} {_fmt(std, k, p)}" for c, k, p in columns(dataset))


def markdown(results: dict, info: dict, plots=()) -> str:
    """The report: run facts, intra table (per rate + average), dominant shares, inter table."""
    ds = info["dataset"]
    intra, inter = results["intra"], results["inter"]
    lines = [f"# PRLF robustness report — {ds}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "Accuracies and F1 in %, Acc-2 and F1 as Has0/Non0 (MOSI/MOSEI); MAE and Corr raw. "
              "Metrics on the test split; the model was selected on the validation split.", ""]

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
    lines += _header("Dropped", ds, extra=("Available",))
    for r in inter["records"]:
        if r["dropped"]:
            lines.append(_row(f"{{{', '.join(r['dropped'])}}} | {{{', '.join(r['available'])}}}",
                              r["metrics"], ds))
    lines.append(_row("**Average (6)** | ", inter["average"]["mean"], ds))
    complete = next(r for r in inter["records"] if not r["dropped"])
    lines += [_row("none (complete) | {" + ", ".join(complete["available"]) + "}", complete["metrics"], ds), ""]
    lines += anchors.markdown(results, ds)
    lines += ["## Plots", ""] + [f"![{k}]({PLOTS[k]})" for k in plots] + [""]
    return "\n".join(lines)


def _save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_intra(results: dict, dataset: str, path: str) -> None:
    per_rate = results["intra"]["per_rate"]
    rates = [r["rate"] for r in per_rate]
    cols = columns(dataset)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), layout="constrained")
    for ax, (title, keys, pct) in zip(axes, cols):
        for key in keys:
            scale = 100 if pct else 1
            mean = [r["mean"][key] * scale for r in per_rate]
            std = [r["std"][key] * scale for r in per_rate]
            ax.plot(rates, mean, marker="o", ms=3, label=key)
            ax.fill_between(rates, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("missing rate")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.suptitle("Intra-modality missing: test metrics against missing rate")
    _save(fig, path)


def plot_inter(results: dict, dataset: str, path: str) -> None:
    records = results["inter"]["records"]
    names = ["−" + "−".join(LETTERS[m] for m in r["dropped"]) if r["dropped"] else "complete" for r in records]
    cols = [c for c in columns(dataset) if c[0] in ("Acc-2", "F1", "MAE", "Corr")]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.4 * len(cols), 3.4), layout="constrained")
    for ax, (title, keys, pct) in zip(axes, cols):
        values = [r["metrics"][keys[0]] * (100 if pct else 1) for r in records]
        ax.bar(range(len(records)), values, color=["tab:gray" if not r["dropped"] else "tab:purple" for r in records])
        ax.set_xticks(range(len(records)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{title} ({keys[0]})" if len(keys) > 1 else title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Inter-modality missing (−l: text dropped, −a: audio, −v: vision)")
    _save(fig, path)


def plot_dominant(results: dict, path: str) -> None:
    per_rate = results["intra"]["per_rate"]
    rates = [r["rate"] for r in per_rate]
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.stackplot(rates, *[[r["dominant_share"][m] * 100 for r in per_rate] for m in MODALITIES],
                 labels=MODALITIES, colors=[COLORS[m] for m in MODALITIES], alpha=0.8)
    ax.set_xlabel("missing rate")
    ax.set_ylabel("% of test samples")
    ax.set_ylim(0, 100)
    ax.set_title("Dominant modality chosen by AMRE")
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_training(history: list, select_metric: str, path: str) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
    for key in ("total", "task"):
        a.plot(epochs, [h["train"][key] for h in history], marker="o", ms=3, label=key)
    a.set_title("training loss")
    a.set_xlabel("epoch")
    a.legend(fontsize=8)
    b.plot(epochs, [h["valid"][select_metric] for h in history], marker="o", ms=3, color="tab:red")
    b.set_title(f"validation {select_metric} (selection)")
    b.set_xlabel("epoch")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    _save(fig, path)


def write_report(run_dir: str, results: dict, info: dict, history=None, select_metric="MAE") -> list:
    """Write report.md and the plots into ``run_dir``; return the paths written."""
    ds = info["dataset"]
    paths = {k: os.path.join(run_dir, p) for k, p in PLOTS.items()}
    plot_intra(results, ds, paths["intra"])
    plot_inter(results, ds, paths["inter"])
    plot_dominant(results, paths["dominant"])
    if history:
        plot_training(history, select_metric, paths["training"])
    else:
        paths.pop("training")
    report = os.path.join(run_dir, "report.md")
    write_text(report, markdown(results, info, plots=list(paths)))
    return [report, *paths.values()]
