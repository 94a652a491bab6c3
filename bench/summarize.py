"""Print a ratio table from pytest-benchmark JSON files.

Benchmarks in one group differ only in their implementation parameter (``variant`` or ``impl``);
each row shows the mean time and the speed-up over the group's baseline (the first of
BASELINES present). Usage: ``python bench/summarize.py results.json [more.json ...] [--markdown]``.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

IMPL_KEYS = ("variant", "impl")
BASELINES = ("reference", "eager", "oracle", "baseline", "sdpa", "torch-ops", "pickle")


def rows(benchmarks):
    groups = defaultdict(dict)
    for b in benchmarks:
        params = dict(b.get("params") or {})
        impl = next((str(params.pop(k)) for k in IMPL_KEYS if k in params), b["name"])
        name = b["name"].split("[")[0] + "[" + "-".join(f"{v}" for v in params.values()) + "]"
        groups[name][impl] = b["stats"]["mean"]
    for name, impls in groups.items():
        base = next((impls[k] for k in BASELINES if k in impls), None)
        for impl, mean in impls.items():
            yield name, impl, mean, (base / mean if base else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    benchmarks, machine = [], None
    for path in args.files:
        data = json.load(open(path))
        benchmarks += data["benchmarks"]
        machine = machine or data.get("machine_info", {})
    if args.markdown:
        print("| benchmark | implementation | mean (ms) | speed-up vs baseline |\n|---|---|---:|---:|")
    for name, impl, mean, ratio in rows(benchmarks):
        r = f"{ratio:.2f}x" if ratio else "-"
        if args.markdown:
            print(f"| {name} | {impl} | {mean * 1e3:.3f} | {r} |")
        else:
            print(f"{name:<55} {impl:<22} {mean * 1e3:>10.3f} ms  {r:>8}")


if __name__ == "__main__":
    main()
