"""Ratio tables from saved benchmark runs, and the renderer of BENCHMARKS.md.

Benchmarks in one group differ only in their implementation parameter (``variant`` or ``impl``);
each row shows the median time and the speed-up over the group's baseline (the first of
BASELINES present), so every ratio compares two timings taken side by side in one run.

    python bench/summarize.py run.json [more.json ...] [--markdown]   # print tables
    python bench/summarize.py --render                                # rewrite BENCHMARKS.md

``--render`` reads every machine folder under ``bench/results/`` (pytest-benchmark JSON and
``e2e_mosei.py`` JSON) and replaces the text between the two markers in BENCHMARKS.md; the
prose around them is kept.
"""
from __future__ import annotations

import argparse
import json
import pathlib
from collections import defaultdict

IMPL_KEYS = ("variant", "impl")
BASELINES = ("reference", "eager", "oracle", "baseline", "sdpa", "torch-ops", "pickle")
ROOT = pathlib.Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def rows(benchmarks):
    """(group, implementation, median seconds, speed-up over the group's baseline or None,
    achieved bandwidth in GB/s or None)."""
    groups = defaultdict(dict)
    for b in benchmarks:
        params = dict(b.get("params") or {})
        impl = next((str(params.pop(k)) for k in IMPL_KEYS if k in params), "-")
        name = b["name"].split("[")[0] + "[" + "-".join(f"{v}" for v in params.values()) + "]"
        groups[name][impl] = (b["stats"]["median"], b.get("extra_info", {}).get("bandwidth_GBps"))
    for name, impls in groups.items():
        base = next((impls[k][0] for k in BASELINES if k in impls), None)
        for impl, (median, bandwidth) in impls.items():
            yield name, impl, median, (base / median if base else None), bandwidth


def benchmark_table(benchmarks, markdown=True):
    lines = ["| benchmark | implementation | median (ms) | speed-up vs baseline | GB/s |",
             "|---|---|---:|---:|---:|"] if markdown else []
    for name, impl, median, ratio, bandwidth in rows(benchmarks):
        r = f"{ratio:.2f}x" if ratio else "-"
        bw = f"{bandwidth:.1f}" if bandwidth else ""
        if markdown:
            lines.append(f"| {name} | {impl} | {median * 1e3:.3f} | {r} | {bw or '-'} |")
        else:
            lines.append(f"{name:<55} {impl:<22} {median * 1e3:>10.3f} ms  {r:>8}" + (f"  {bw:>8} GB/s" if bw else ""))
    return lines


def e2e_table(run):
    lines = [f"MOSEI-shaped end to end on {run['device']} / {run.get('cpu')}, torch {run['torch']}, commit "
             f"{run.get('commit')}: {run['n_train']} training samples, batch {run['batch_size']}, {run['n_test']} "
             f"test samples, amp {run['amp']}.", "", f"Command: `{run.get('command')}`", "",
             "| variant | training epoch (s) | speed-up | robustness evaluation (s) | speed-up |",
             "|---|---:|---:|---:|---:|"]
    for name, v in run["variants"].items():
        lines.append(f"| {name} | {v['epoch_s']:.2f} | {v.get('epoch_speedup_vs_reference', 0):.2f}x "
                     f"| {v['robustness_eval_s']:.2f} | {v.get('eval_speedup_vs_reference', 0):.2f}x |")
    return lines


def render_machine(folder: pathlib.Path):
    lines = [f"### {folder.name}", ""]
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        rel = path.relative_to(ROOT)
        if "benchmarks" in data and data["benchmarks"]:
            info = data["benchmarks"][0].get("extra_info", {})
            lines += [f"`{rel}`: {info.get('device')} / {info.get('cpu')}, {info.get('threads')} threads, "
                      f"torch {info.get('torch')}, triton {info.get('triton')}, commit {info.get('commit')}, "
                      f"{data.get('datetime', '')[:19]}", "", f"Command: `{info.get('command')}`", ""]
            lines += benchmark_table(data["benchmarks"]) + [""]
        if "variants" in data:   # e2e_mosei.py's own file, or merged into gpu_check.sh's bench.json
            lines += [f"`{rel}`", ""] + e2e_table(data) + [""]
    return lines


def render(results: pathlib.Path, target: pathlib.Path):
    body = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        body += render_machine(folder)
    text = target.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{target}: markers {START} and {END} not found")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    target.write_text(head + START + "\n" + "\n".join(body) + "\n" + END + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--render", action="store_true", help="rewrite BENCHMARKS.md from bench/results/")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / "bench" / "results")
    parser.add_argument("--target", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.render:
        render(args.results, args.target)
        return
    if not args.files:
        parser.error("give benchmark JSON files, or --render")
    runs = [json.load(open(path)) for path in args.files]
    benchmarks = [b for run in runs for b in run.get("benchmarks", [])]
    lines = benchmark_table(benchmarks, markdown=args.markdown) if benchmarks else []
    for run in (r for r in runs if "variants" in r):
        lines += [""] + e2e_table(run)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
