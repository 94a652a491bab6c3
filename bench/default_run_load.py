"""The README's main job (``prlf-fast train``: training and the robustness evaluation on the
embedded synthetic set) end to end, idle and beside N busy processes, for one or more source trees
(e.g. a checkout of an earlier commit against this one), interleaved, each run in a fresh process
that sets its own defaults as a user's would (BENCHMARKS.md, "The default run under load").

    git worktree add /tmp/before <commit>; cp prlf_fast/_C*.so prlf_fast/_build_info.json /tmp/before/prlf_fast/
    python bench/default_run_load.py --trees /tmp/before . --loads 0 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_check import BusyLoad, host_dir  # noqa: E402

from prlf_fast import malloc  # noqa: E402
from prlf_fast.threads import WAIT_VARS  # noqa: E402


def commit(tree: str) -> str:
    return subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def run_once(tree: str) -> float:
    """Wall seconds of ``prlf-fast train --out DIR`` from ``tree``'s sources (interpreter start included)."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*WAIT_VARS, *malloc.USER_VARS, "GLIBC_TUNABLES", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = os.path.abspath(tree)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "prlf_fast.cli", "train", "--out", os.path.join(tmp, "run")],
                       env=env, check=True, capture_output=True, cwd=tmp, timeout=3600)
        return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", nargs="+", default=["."])
    p.add_argument("--loads", type=int, nargs="+", default=[0, 4])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out-dir", help="default bench/results/<host>")
    ns = p.parse_args(argv)
    rows = []
    for n_busy in ns.loads:
        load = BusyLoad()
        try:
            load.start(n_busy)
            for _ in range(ns.rounds):
                for tree in ns.trees:
                    seconds = run_once(tree)
                    rows.append({"busy": n_busy, "tree": tree, "commit": commit(tree), "seconds": seconds})
                    print(f"N={n_busy} {commit(tree)}: {seconds:.1f} s", flush=True)
        finally:
            load.stop()
    result = {"command": " ".join(sys.argv), "load_average_after": os.getloadavg(), "rows": rows}
    out_dir = ns.out_dir or host_dir()
    os.makedirs(out_dir, exist_ok=True)
    from prlf_fast.io.atomic import write_json

    write_json(os.path.join(out_dir, "default_run_load.json"), result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
