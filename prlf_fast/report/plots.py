"""PNG plots of a run (matplotlib, Agg backend): robustness results and the training curve.

Every figure is at most ``MAX_WIDTH_PX`` wide at ``DPI``, so report.md (and a README) shows it at
its own size with readable labels. Each ``*_figure`` function returns the matplotlib Figure
(tests inspect its axes); ``save`` writes it atomically and closes it."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from prlf_fast.config import MODALITIES, PRESETS  # noqa: E402
from prlf_fast.io.atomic import atomic_path  # noqa: E402

DPI = 110
MAX_WIDTH_PX = 880  # about the width a Markdown viewer shows an image at
COLORS = {"text": "tab:blue", "audio": "tab:orange", "vision": "tab:green"}
LETTERS = {"text": "l", "audio": "a", "vision": "v"}
# Has0/Non0 get the same two colours in the intra and inter plots; a single metric another one.
SERIES_COLORS = ("tab:blue", "tab:orange")
SINGLE_COLOR = "tab:purple"
SERIES_NAMES = {"Has0": "Has0 (y ≥ 0 vs < 0)", "Non0": "Non0 (y = 0 left out)"}


def y_label(title: str, pct: bool, dataset: str) -> str:
    """Axis label with its unit: accuracies and F1 in %, MAE in label units, Corr as Pearson r."""
    if pct:
        return f"{title} (%)"
    if title == "MAE":
        span = PRESETS[dataset]["label_range"]
        return f"MAE (label scale [−{span:g}, {span:g}])"
    return "Pearson r" if title == "Corr" else title


def _series_name(key: str) -> str:
    return SERIES_NAMES.get(key.split("_")[0], key)


def _colors(keys) -> tuple:
    return SERIES_COLORS if len(keys) > 1 else (SINGLE_COLOR,)


def _series_legend(fig, axes) -> None:
    """One legend for the Has0/Non0 series, below the panels (inside one it would cover data)."""
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if len(handles) > 1:
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=8)
            return


def save(fig, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


def intra_figure(results: dict, dataset: str, cols: list):
    """Grid of panels (two rows), one per report column, against the intra missing rate; the band
    is ± one std over mask seeds."""
    per_rate = results["intra"]["per_rate"]
    rates = [r["rate"] for r in per_rate]
    n_cols = (len(cols) + 1) // 2
    fig, axes = plt.subplots(2, n_cols, figsize=(8, 5.4), layout="constrained", sharex=True, squeeze=False)
    for ax, (title, keys, pct) in zip(axes.flat, cols):
        scale = 100 if pct else 1
        for key, color in zip(keys, _colors(keys)):
            mean = [r["mean"][key] * scale for r in per_rate]
            std = [r["std"][key] * scale for r in per_rate]
            ax.plot(rates, mean, marker="o", ms=3, color=color, label=_series_name(key))
            ax.fill_between(rates, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=color, alpha=0.2, lw=0)
        ax.set_title(title)
        ax.set_ylabel(y_label(title, pct, dataset))
        ax.grid(alpha=0.3)
    _series_legend(fig, axes.flat)
    for ax in axes.flat[len(cols):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("missing rate r")
    seeds = results["intra"]["seeds"]
    band = f"; band: ± std over {len(seeds)} mask seeds" if len(seeds) > 1 else f"; mask seed {seeds[0]}"
    fig.suptitle(f"Intra-modality missing: test metrics against the missing rate{band}", fontsize=10)
    return fig


def inter_figure(results: dict, dataset: str, cols: list):
    """2 × 2 bars (Acc-2, F1, MAE, Corr) per inter-modality configuration; the dashed line is the
    mean of the six configurations that drop something."""
    records = results["inter"]["records"]
    average = results["inter"]["average"]["mean"]
    names = ["−" + "".join(LETTERS[m] for m in r["dropped"]) if r["dropped"] else "none" for r in records]
    panels = [c for c in cols if c[0] in ("Acc-2", "F1", "MAE", "Corr")]
    fig, axes = plt.subplots(2, 2, figsize=(8, 5.4), layout="constrained", squeeze=False)
    for ax, (title, keys, pct) in zip(axes.flat, panels):
        scale = 100 if pct else 1
        width = 0.8 / len(keys)
        for i, (key, color) in enumerate(zip(keys, _colors(keys))):
            x = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(records))]
            values = [r["metrics"][key] * scale for r in records]
            ax.bar(x, values, width=width, color=color, label=_series_name(key) if len(keys) > 1 else None)
            ax.axhline(average[key] * scale, color=color, ls="--", lw=1)
        ax.axvspan(len(records) - 1.5, len(records) - 0.5, color="0.9", zorder=0)  # the complete case
        ax.set_xticks(range(len(records)), names, fontsize=9)
        ax.set_title(title)
        ax.set_ylabel(y_label(title, pct, dataset))
        ax.grid(axis="y", alpha=0.3)
    _series_legend(fig, axes.flat)
    for ax in axes[-1]:
        ax.set_xlabel("dropped modalities (l text, a audio, v vision)")
    fig.suptitle("Inter-modality missing: whole modalities dropped; grey: complete case; "
                 "dashed: mean of the six", fontsize=10)
    return fig


def dominant_figure(results: dict):
    """Stacked shares of test samples per dominant modality against the intra missing rate; the
    legend sits outside the axes so it covers no band."""
    per_rate = results["intra"]["per_rate"]
    rates = [r["rate"] for r in per_rate]
    shares = [[r["dominant_share"][m] * 100 for r in per_rate] for m in MODALITIES]
    fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
    if len(set(rates)) > 1:
        ax.stackplot(rates, *shares, labels=MODALITIES, colors=[COLORS[m] for m in MODALITIES], alpha=0.8)
        ax.set_xlim(min(rates), max(rates))
    else:  # one evaluated rate: a band would have no width, so one stacked bar
        bottom = 0.0
        for m, share in zip(MODALITIES, shares):
            ax.bar(rates, share, width=0.05, bottom=bottom, label=m, color=COLORS[m], alpha=0.8)
            bottom += share[0]
    ax.set_xlabel("missing rate r")
    ax.set_ylabel("test samples (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Dominant modality chosen by AMRE")
    ax.legend(*[list(reversed(h)) for h in ax.get_legend_handles_labels()],  # same order as the bands
              title="dominant", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
    return fig


def training_figure(history: list, select_metric: str, selected_epoch: int | None):
    """Training losses (total and task; recognition and alignment, unweighted) and the validation
    selection metric per epoch; a dotted line and a star mark the selected epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (main, aux, val) = plt.subplots(1, 3, figsize=(8, 3.2), layout="constrained")
    for ax, keys in ((main, (("total", "total"), ("task", "task (|ŷ − y|)"))),
                     (aux, (("rec", "recognition (CE)"), ("align", "alignment (1 − cos)")))):
        for key, label in keys:
            ax.plot(epochs, [h["train"][key] for h in history], marker="o", ms=3, label=label)
        ax.set_ylabel("loss (epoch mean)")
    main.set_title("training loss")
    aux.set_title("auxiliary losses (unweighted)")
    pct = select_metric not in ("MAE", "Corr")
    scale = 100 if pct else 1
    values = [h["valid"][select_metric] * scale for h in history]
    val.plot(epochs, values, marker="o", ms=3, color="tab:red")
    rate = history[-1].get("select", {}).get("rate")
    val.set_title(f"validation {select_metric}" + (f" at r = {rate}" if rate is not None else ""))
    val.set_ylabel(f"{select_metric} (%)" if pct else select_metric)
    if selected_epoch in epochs:
        best = values[epochs.index(selected_epoch)]
        val.plot([selected_epoch], [best], marker="*", ms=14, color="black", ls="none",
                 label=f"selected: epoch {selected_epoch}")
        for ax in (main, aux, val):
            ax.axvline(selected_epoch, color="0.4", ls=":", lw=1.2)
    for ax in (main, aux, val):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, markerscale=0.6)
    return fig
