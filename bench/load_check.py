"""Training under a controlled background load: N busy-loop processes (started here, always
stopped) beside the MOSI-preset batch-64 training step (reference and fast) and one epoch of the
default main job (``prlf-fast train`` on the embedded synthetic set, ``--epochs 1 --no-eval``),
for each OpenMP wait setting. BENCHMARKS.md, "Threads under load".

    python bench/load_check.py            # N = 0, cores, 2 x cores; 3 settings; writes
                                          # bench/results/<host>/load.json and load.md
    python bench/load_check.py --quick    # smoke run: N = 0 and cores, 1 setting, 2 steps

Every measurement runs in a fresh subprocess (the wait policy is read when torch loads), in
round-robin order over settings and backends, so a change of the machine's own load hits all of
them alike. The fair-share bound for N busy processes on C CPUs and T threads of ours is
max(1, min(T, C)·(N + T)/(C·T)) × the idle time of the same setting and backend.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from prlf_fast.threads import DEFAULT_WAIT, WAIT_VARS, cpu_budget  # noqa: E402

# setting name -> wait-policy variables of its subprocesses (the others unset), and "malloc": the
# allocator's thresholds as prlf-fast sets them (prlf_fast.malloc; else glibc's defaults)
SETTINGS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "prlf-fast": {**DEFAULT_WAIT, "malloc": "prlf-fast"}, "spin-1000": dict(DEFAULT_WAIT)}
BACKENDS = ("reference", "fast")
CHILD_TIMEOUT_S = 3600


# -- measurements, in the child ------------------------------------------------------------------
def child_step(backend: str, steps: int, warmup: int) -> dict:
    """Seconds of each of ``steps`` MOSI-preset batch-64 training steps after ``warmup``."""
    import torch
    from test_bench_e2e import TRAIN_BATCH, build, make_batch

    model, forward = build("mosi", backend, "cpu", train=True)
    batch = make_batch(model.config, TRAIN_BATCH, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.loss(forward(batch), batch)["total"].backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "all": times}


def child_job(backend: str, synthetic: str | None) -> dict:
    """Wall seconds of ``prlf-fast train --epochs 1 --no-eval`` (the command's work; not the
    interpreter's start). Runs the command without the CLI's ``configure_openmp`` and
    ``configure_malloc``: the parent set the setting's variables, ``child`` its allocator."""
    from prlf_fast.cli import build_parser

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", "--out", os.path.join(tmp, "run"), "--epochs", "1", "--no-eval", "--device", "cpu",
                "--backend", backend, *(["--synthetic", synthetic] if synthetic else [])]
        args = build_parser().parse_args(argv)
        start = time.perf_counter()
        args.func(args)
        return {"seconds": time.perf_counter() - start}


def child(ns) -> None:
    import torch
    from environment import environment_info

    from prlf_fast import malloc, threads

    if os.environ.get("LOAD_CHECK_MALLOC") == "prlf-fast":
        malloc.configure_malloc()
    threads.apply_threads()
    out = child_step(ns.backend, ns.steps, ns.warmup) if ns.child == "step" else child_job(ns.backend, ns.synthetic)
    out.update(threads=torch.get_num_threads(), cpu_threads=threads.record(), malloc=malloc.record(), environment=environment_info(" ".join(sys.argv)))
    print("LOAD_CHECK " + json.dumps(out), flush=True)


# -- background load and orchestration, in the parent ----------------------------------------
# Each spins until stopped, or until its parent is gone (a parent killed by SIGKILL).
BUSY = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(100000): pass"


class BusyLoad:
    """Busy-loop processes in one process group of their own (so a Ctrl-C reaches the parent
    only); ``stop`` kills the group (idempotent)."""

    def __init__(self):
        self.procs, self.pgid = [], None

    def start(self, n: int) -> None:
        for _ in range(n):
            p = subprocess.Popen([sys.executable, "-c", BUSY], process_group=self.pgid or 0)
            self.pgid = self.pgid or p.pid
            self.procs.append(p)

    def stop(self) -> None:
        if self.pgid:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()
        self.procs, self.pgid = [], None


def setting_env(name: str) -> dict:
    """The environment of a setting's subprocess: ``SETTINGS[name]``, or ``VAR=VALUE,...``."""
    wait = SETTINGS.get(name)
    if wait is None:
        wait = dict(item.split("=", 1) for item in name.split(","))
        if not all(k in (*WAIT_VARS, "malloc") for k in wait):
            raise SystemExit(f"--settings {name!r}: expected one of {', '.join(SETTINGS)} or VAR=VALUE of "
                             f"{WAIT_VARS} and malloc=prlf-fast")
    env = {k: v for k, v in os.environ.items() if k not in (*WAIT_VARS, "LOAD_CHECK_MALLOC")}
    env.update({k: v for k, v in wait.items() if k != "malloc"})
    if wait.get("malloc") == "prlf-fast":
        env["LOAD_CHECK_MALLOC"] = "prlf-fast"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def measure(kind: str, setting: str, backend: str, ns) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--backend", backend,
           "--steps", str(ns.steps), "--warmup", str(ns.warmup), *(["--synthetic", ns.synthetic] if ns.synthetic else [])]
    proc = subprocess.run(cmd, env=setting_env(setting), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("LOAD_CHECK ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} {setting} {backend} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("LOAD_CHECK "):])


def fair_share(n_busy: int, cores: int, threads: int) -> float:
    """The best slowdown fair sharing allows: min(T, C)·(N + T)/(C·T) (our share of the C cores
    is C·T/(N + T) against min(T, C) idle), and 1 where the N + T threads fit the cores."""
    return max(1.0, min(threads, cores) * (n_busy + threads) / (cores * threads))


def run(ns) -> dict:
    cores = cpu_budget()["cpus"]
    loads = ns.loads if ns.loads is not None else [0, cores, 2 * cores]
    kinds = [("step", b) for b in ns.backends] + ([] if ns.no_job else [("job", b) for b in ns.job_backends])
    samples: dict = {}  # (load, setting, kind, backend) -> [seconds]
    info = {}
    for n_busy in loads:
        load = BusyLoad()
        try:
            load.start(n_busy)
            time.sleep(0.5 if n_busy else 0)
            for _ in range(ns.rounds):  # round-robin: every setting and backend once per round
                for setting in ns.settings:
                    for kind, backend in kinds:
                        r = measure(kind, setting, backend, ns)
                        samples.setdefault((n_busy, setting, kind, backend), []).append(r["seconds"])
                        info = info or r
                        threads_used = r["threads"]
                        print(f"N={n_busy} {setting:>10} {kind} {backend:>9}: {r['seconds']:.3f} s", flush=True)
        finally:
            load.stop()
    rows = []
    for (n_busy, setting, kind, backend), values in samples.items():
        seconds = statistics.median(values)
        idle = samples.get((0, setting, kind, backend))
        bound = fair_share(n_busy, cores, threads_used) * statistics.median(idle) if idle else None
        rows.append({"busy": n_busy, "setting": setting, "kind": kind, "backend": backend, "seconds": seconds,
                     "samples": values, "bound_seconds": bound, "ratio_to_bound": seconds / bound if bound else None})
    return {"environment": info["environment"], "cpu_budget": cores, "threads": threads_used,
            "loads": loads, "settings": {s: SETTINGS.get(s, s) for s in ns.settings},
            "steps": ns.steps, "warmup": ns.warmup, "rounds": ns.rounds, "job": job_text(ns),
            "load_average_after": os.getloadavg(), "command": " ".join(sys.argv), "rows": rows}


def job_text(ns) -> str:
    return "prlf-fast train --epochs 1 --no-eval" + (f" --synthetic {ns.synthetic}" if ns.synthetic else "") + \
        " (embedded synthetic set; command time, not interpreter start)"


def markdown(result: dict) -> str:
    env = result["environment"]
    head = [f"# Training under load ({env['machine']}, {env['cpu']})", "",
            f"commit {env['commit']}, torch {env['torch']}, {result['threads']} threads on a CPU budget of "
            f"{result['cpu_budget']}; background load: N busy-loop processes; step: MOSI preset, batch 64, "
            f"median of {result['steps']} after {result['warmup']} warm-up, {result['rounds']} round(s) interleaved; "
            f"job: {result['job']}; load average after: {', '.join(f'{v:.1f}' for v in result['load_average_after'])}; "
            f"command `{result['command']}`", "",
            "| N busy | setting | measured | backend | seconds | fair-share bound | ratio to bound |",
            "|---|---|---|---|---|---|---|"]
    body = [f"| {r['busy']} | {r['setting']} | {r['kind']} | {r['backend']} | {r['seconds']:.3f} | "
            + (f"{r['bound_seconds']:.3f} | {r['ratio_to_bound']:.2f}× |" if r["bound_seconds"] else "– | – |")
            for r in sorted(result["rows"], key=lambda r: (r["kind"], r["busy"], r["setting"], r["backend"]))]
    return "\n".join(head + body) + "\n"


def host_dir() -> str:
    from prlf_fast.provenance import _cpu_name

    words = re.sub(r"[^a-z0-9]+", "-", _cpu_name().lower()).strip("-").split("-")[:2]
    return os.path.join(ROOT, "bench", "results", f"cpu-{'-'.join(words)}-{os.cpu_count()}core")


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: N = 0 and cores, setting prlf-fast, backend fast, 2 steps, a tiny job")
    p.add_argument("--loads", type=int, nargs="+", help="busy processes (default: 0, cores, 2 x cores)")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), help="default, passive, prlf-fast or VAR=VALUE,...")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="of the step")
    p.add_argument("--job-backends", nargs="+", default=["fast"], choices=BACKENDS, help="of the job")
    p.add_argument("--no-job", action="store_true", help="measure the step only")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--synthetic", help="TRAIN,VALID,TEST sizes of the job's synthetic set (default: the embedded one)")
    p.add_argument("--out-dir", help="where load.json and load.md go (default bench/results/<host>)")
    p.add_argument("--child", choices=("step", "job"), help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.child:
        child(ns)
        return 0
    if ns.quick:
        cores = cpu_budget()["cpus"]
        ns.loads, ns.settings, ns.backends, ns.steps, ns.warmup, ns.rounds = [0, cores], ["prlf-fast"], ["fast"], 2, 1, 1
        ns.synthetic = ns.synthetic or "64,16,16"
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(ns)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out_dir = ns.out_dir or host_dir()
    os.makedirs(out_dir, exist_ok=True)
    from prlf_fast.io.atomic import write_json, write_text

    write_json(os.path.join(out_dir, "load.json"), result)
    write_text(os.path.join(out_dir, "load.md"), markdown(result))
    print(f"wrote {out_dir}/load.json and load.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
