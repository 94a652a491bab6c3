"""``SWEEP/report.md`` and ``SWEEP/plots/<dataset>_intra.png`` from ``summary.json``: per dataset,
tables laid out like the LNLN paper's with mean ± std over training seeds per variant, the paired
comparisons with the reference variant, and each metric against the missing rate. The summary,
the report and the plots are written as one commit (a kill leaves the old set or the new)."""
from __future__ import annotations

import os

from prlf_fast import provenance
from prlf_fast.io.atomic import Commit, recover, write_json, write_text
from prlf_fast.io.rundir import REPORT
from prlf_fast.metrics import metric_names
from prlf_fast.report.run import columns
from prlf_fast.study.aggregate import SUMMARY
from prlf_fast.study.record import read_results

HEADLINE = ("Acc-2", "F1", "MAE", "Corr")  # columns of the comparison tables


def _pm(agg: dict, keys, pct: bool) -> str:
    """``mean ± std`` of the metric(s) ``keys`` (joined by " / ") of one aggregated entry."""
    scale = 100 if pct else 1
    parts = []
    for k in keys:
        mean, std = agg["mean"][k] * scale, agg["std"][k]
        digits = 2 if pct else 4
        parts.append(f"{mean:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}"))
    return " / ".join(parts)


def _diff(c: dict, pct: bool) -> str:
    scale, digits = (100, 2) if pct else (1, 4)
    if c["diff"] is None:
        return "–"
    text = f"{c['diff'] * scale:+.{digits}f}"
    if c["ci95"] is not None:
        lo, hi = (x * scale for x in c["ci95"])
        text += f" [{lo:+.{digits}f}, {hi:+.{digits}f}] p={c['p']:.3g}"
    return text


def _table(variants: dict, entry: str, ds: str) -> list:
    cols = columns(ds)
    lines = ["| Variant | n | " + " | ".join(c for c, _, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for v, agg in variants.items():
        lines.append(f"| {v} | {agg['n']} | " + " | ".join(_pm(agg[entry], k, p) for _, k, p in cols) + " |")
    return lines


def _entry_table(variants: dict, entries: list, titles: list, key: str, pct: bool) -> list:
    lines = ["| Variant | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for v, agg in variants.items():
        lines.append(f"| {v} | " + " | ".join(_pm(agg[e], (key,), pct) if e in agg else "–" for e in entries) + " |")
    return lines


def _dataset_section(name: str, d: dict, plot: str | None) -> list:
    ds, variants = d["dataset"], d["variants"]
    lines = [f"## {name} ({ds}, {d['data'] or 'synthetic'})", ""]
    if not variants:
        return lines + ["No finished cell yet.", ""]
    any_v = next(iter(variants.values()))
    rates = sorted(float(e.split("/")[1]) for e in any_v if e.startswith("intra/") and e != "intra/average")
    configs = [e for e in any_v if e.startswith("inter/") and e not in ("inter/average", "inter/complete")]
    two = next(k[0] for c, k, _ in columns(ds) if c == "Acc-2")
    lines += ["Mean ± std over training seeds (n finished seeds); accuracies and F1 in %, Acc-2 and F1 "
              "as Has0/Non0 (MOSI/MOSEI); MAE and Corr raw.", ""]
    lines += [f"### Intra-modality missing: average over rates {rates[0]:g}–{rates[-1]:g}", ""]
    lines += _table(variants, "intra/average", ds) + [""]
    lines += ["### Inter-modality missing: average of the six configurations", ""]
    lines += _table(variants, "inter/average", ds) + [""]
    lines += ["### Complete modalities", ""] + _table(variants, "inter/complete", ds) + [""]
    for key, pct in ((two, True), ("MAE", False)):
        lines += [f"### {key} per missing rate", ""]
        lines += _entry_table(variants, [f"intra/{r:g}" for r in rates], [f"{r:g}" for r in rates], key, pct) + [""]
        lines += [f"### {key} per inter-modality configuration (modalities dropped)", ""]
        lines += _entry_table(variants, configs, ["−" + e.split("/")[1] for e in configs], key, pct) + [""]
    if d["comparisons"]:
        cols = [c for c in columns(ds) if c[0] in HEADLINE]
        lines += [f"### Paired differences from `{d['reference']}` over seeds", "",
                  f"variant − {d['reference']} (percentage points for accuracies and F1), 95% CI and paired "
                  "t-test p-value over the seeds both finished; MAE: lower is better.", ""]
        lines += ["| Variant | Protocol | " + " | ".join(f"{c} ({k[0]})" for c, k, _ in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for v, comp in d["comparisons"].items():
            for entry, title in (("intra/average", "intra avg"), ("inter/average", "inter avg")):
                lines.append(f"| {v} | {title} | " + " | ".join(_diff(comp[entry][k[0]], p) for _, k, p in cols) + " |")
        lines += [""]
    if plot:
        lines += [f"![{name}: metrics against missing rate]({plot})", ""]
    return lines


def plot_rates(d: dict, path: str) -> None:
    """Each metric against the missing rate: one line per variant (mean over seeds), band ± std;
    accuracies and F1 in %."""
    from prlf_fast.report import plots

    plt = plots.plt
    names = metric_names(d["dataset"])
    ncols = 4
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.0 * nrows), layout="constrained", squeeze=False)
    for ax, metric in zip(axes.flat, names):
        for v, agg in d["variants"].items():
            rates = sorted(float(e.split("/")[1]) for e in agg if e.startswith("intra/") and e != "intra/average")
            scale = 1.0 if metric in ("MAE", "Corr") else 100.0
            mean = [agg[f"intra/{r:g}"]["mean"][metric] * scale for r in rates]
            std = [(agg[f"intra/{r:g}"]["std"][metric] or 0.0) * scale for r in rates]
            line, = ax.plot(rates, mean, marker="o", ms=3, label=v)
            ax.fill_between(rates, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.15)
        ax.set_title(metric)
        ax.set_ylabel(plots.y_label(metric, metric not in ("MAE", "Corr"), d["dataset"]), fontsize=8)
        ax.set_xlabel("missing rate")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Intra-modality missing: mean over training seeds, band ± std")
    plots.save(fig, path)


def write_sweep_report(sweep_dir: str, summary: dict) -> str:
    """Write summary.json, report.md and the plots of ``sweep_dir`` as one commit, finishing or
    discarding a commit a killed writer left first (call it holding the sweep's lock); return
    the report's path."""
    recover(sweep_dir)
    with Commit(sweep_dir) as commit:
        write_json(commit.file(SUMMARY), summary)
        write_text(commit.file(REPORT), "\n".join(_report_lines(sweep_dir, summary, commit)) + "\n")
    return os.path.join(sweep_dir, REPORT)


def _report_lines(sweep_dir: str, summary: dict, commit: Commit) -> list:
    """report.md's lines; the plots are written into ``commit``."""
    spec = summary["spec"]
    lines = [f"# PRLF sweep report — {os.path.basename(os.path.abspath(sweep_dir))}", ""]
    finished = sum(c["finished"] for c in summary["cells"])
    lines += [f"- cells: {finished} of {len(summary['cells'])} finished "
              f"(seeds {spec['seeds']} × variants {list(spec['variants'])} × datasets "
              f"{[d['name'] for d in spec['datasets']]})"]
    lines += ["- variants: " + "; ".join(f"{v}: " + (", ".join(f"{k}={x}" for k, x in o.items()) or "defaults")
                                        for v, o in spec["variants"].items())]
    if spec["train"] or spec["model"]:
        lines += ["- every cell (where its variant sets no other value): " + ", ".join(f"{k}={x}" for k, x in {**spec["train"], **spec["model"]}.items())]
    invocations = summary["invocations"]
    if invocations:
        last = invocations[-1]
        done = {k: c for i in invocations for k, c in i["cells"].items() if c.get("status") == "done"}
        wall = sum(i["wall_seconds"] or 0 for i in invocations)
        timed = [c["seconds"] for c in done.values() if c.get("seconds") is not None]
        lines += [f"- time: wall time {wall:.0f} s over {len(invocations)} invocation(s), which ran {len(done)} "
                  f"cells ({len(timed)} timed locally, submit to end: {sum(timed):.0f} s in all); the last: "
                  f"`{last['command']}` started {last['started']}, {last['executor']} executor, {last['parallel']} "
                  f"at once, {last['threads_per_cell']} thread(s) per cell on {last['device']}"]
    first_cell = next((c for c in summary["cells"] if c["finished"]), None)
    if first_cell:
        prov = (read_results(os.path.join(sweep_dir, first_cell["dir"]))[0] or {}).get("provenance")
        try:
            lines += [f"- provenance ({first_cell['key']}): {provenance.line(prov)}"]
        except (AttributeError, KeyError, TypeError):  # absent or not a provenance record: no line
            pass
    notes = [c["note"] for c in summary["cells"] if c.get("note")]
    lines += [f"- not counted (damaged results): {n}" for n in notes]
    lines += [""]
    for name, d in summary["datasets"].items():
        plot = None
        if d["variants"]:
            plot = f"plots/{name}_intra.png"
            plot_rates(d, commit.file(plot))
        lines += _dataset_section(name, d, plot)
    lines += ["## Cells", "", "| Dataset | Variant | Seed | Finished | Run directory |", "|---|---|---|---|---|"]
    lines += [f"| {c['dataset']} | {c['variant']} | {c['seed']} | {'yes' if c['finished'] else 'no'} | "
              f"[{c['dir']}]({c['dir']}/report.md) |" for c in summary["cells"]]
    return lines
