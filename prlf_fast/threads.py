"""CPU threads of this process: how many CPUs it may really use, how many threads it runs, and
how the OpenMP runtime's idle threads wait.

The thread count is ``--threads`` if given, else ``OMP_NUM_THREADS``, else the CPU budget: the
CPUs of the affinity mask (taskset, a Slurm cpuset) capped by the cgroup CPU quota (a container's
``--cpus``, a systemd or Slurm CPU limit), rounded up. ``configure_openmp`` bounds the OpenMP
spin-wait (idle threads that spin for a core another process holds make a step 10× slower on a
loaded machine); it must run before torch is imported, which is why this module imports torch
only inside ``apply_threads``. docs/training.md, "Threads and shared machines".
"""
from __future__ import annotations

import math
import os

from prlf_fast.errors import PRLFError

# Variables that choose how OpenMP threads wait (libgomp; Intel OpenMP): a user's own wins.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# libgomp spins this many iterations (microseconds) before sleeping, instead of its default 300000
# (its own value when it has more threads than CPUs); Intel OpenMP sleeps at once. Measured
# against PASSIVE and 10000 in BENCHMARKS.md, "Threads under load".
DEFAULT_WAIT = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
_state: dict = {"wait_set_by": None, "source": None}


def configure_openmp(environ=None) -> dict:
    """Set ``DEFAULT_WAIT`` in ``environ`` (default ``os.environ``) unless it holds any of
    ``WAIT_VARS``; returns the variables set (empty when the user's are kept). Takes effect only
    if torch is not imported yet: the OpenMP runtime reads them once, when it loads."""
    env = os.environ if environ is None else environ
    present = {var: env[var] for var in WAIT_VARS if var in env}
    if not present:
        env.update(DEFAULT_WAIT)
    if env is os.environ and _state["wait_set_by"] is None:  # inherited defaults: a sweep cell
        _state["wait_set_by"] = "prlf-fast" if present in ({}, DEFAULT_WAIT) else "user"
    return {} if present else dict(DEFAULT_WAIT)


def wait_policy() -> dict:
    """The wait-policy variables in effect (name -> value) and who set them: ``set_by`` is
    "prlf-fast", "user" (present before ``configure_openmp``) or None (neither: the runtime's
    default, e.g. a Python user who did not call it)."""
    env = {var: os.environ[var] for var in WAIT_VARS if var in os.environ}
    set_by = _state["wait_set_by"] or ("user" if env else None)
    return {"variables": env, "set_by": set_by}


def affinity_cpus(affinity=None) -> int:
    """CPUs in this process's affinity mask (``affinity``: fn(pid) -> set, default
    ``os.sched_getaffinity``; ``os.cpu_count()`` where the platform has none)."""
    affinity = affinity or getattr(os, "sched_getaffinity", None)
    if affinity is None:
        return os.cpu_count() or 1
    return max(1, len(affinity(0)))


def _read(path: str, limit: int = 4096) -> str | None:
    """The first ``limit`` characters of a /proc or /sys file, stripped; None if unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit).strip()
    except OSError:
        return None


def _ancestors(base: str, cgroup_path: str):
    """``base/cgroup_path`` and each parent directory up to ``base`` (its own limit too: in a
    cgroup namespace the process's path may not exist under the mount)."""
    parts = [p for p in cgroup_path.strip("/").split("/") if p and p not in (".", "..")]
    for i in range(len(parts), -1, -1):
        yield os.path.join(base, *parts[:i])


def _quota_v2(directory: str) -> float | None:
    text = _read(os.path.join(directory, "cpu.max"))  # "max 100000" or "200000 100000"
    fields = text.split() if text else []
    if len(fields) == 2 and fields[0] != "max":
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def _quota_v1(directory: str) -> float | None:
    quota, period = (_read(os.path.join(directory, name)) for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None  # quota -1: no limit


def cgroup_quota(proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> float | None:
    """The tightest CPU quota (in CPUs, e.g. 1.5) over this process's cgroup and its ancestors,
    cgroup v2 (``cpu.max``; mounted at ``cgroup_root`` or, hybrid, ``cgroup_root/unified``) and
    v1 (``cpu.cfs_quota_us / cpu.cfs_period_us`` under the ``cpu`` controller's mount); None
    when there is none or nothing is readable."""
    table = _read(os.path.join(proc_root, "self", "cgroup")) or ""
    quotas = []
    for line in table.splitlines():  # "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            unified = os.path.join(cgroup_root, "unified")
            base = unified if os.path.isdir(unified) else cgroup_root
            quotas += [_quota_v2(d) for d in _ancestors(base, path)]
        elif "cpu" in controllers.split(","):
            for mount in dict.fromkeys((controllers, "cpu,cpuacct", "cpu")):
                base = os.path.join(cgroup_root, mount)
                if os.path.isdir(base):
                    quotas += [_quota_v1(d) for d in _ancestors(base, path)]
                    break
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def cpu_budget(proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup", affinity=None) -> dict:
    """What this process may really use: ``cpus`` (≥ 1) = the affinity mask's ``affinity`` count
    capped by ceil(``cgroup_quota``) (None: no quota)."""
    mask = affinity_cpus(affinity)
    quota = cgroup_quota(proc_root, cgroup_root)
    cpus = mask if quota is None else min(mask, max(1, math.ceil(quota - 1e-9)))
    return {"cpus": cpus, "affinity": mask, "cgroup_quota": quota}


def choose_threads(explicit: int | None = None, environ=None, budget: dict | None = None) -> tuple:
    """(threads, source): ``explicit`` ("--threads"), else ``OMP_NUM_THREADS`` of ``environ``
    (its first level, "4,2" -> 4), else the CPU budget ("cpu budget"). Raises ``ValueError`` for
    ``explicit`` < 1 and ``PRLFError`` for an ``OMP_NUM_THREADS`` that is not a positive integer."""
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"--threads {explicit} must be ≥ 1")
        return explicit, "--threads"
    env = os.environ if environ is None else environ
    text = env.get("OMP_NUM_THREADS", "").strip()
    if text:
        first = text.split(",")[0].strip()
        if not first.isdigit() or int(first) < 1:
            raise PRLFError(f"OMP_NUM_THREADS={text!r}: expected a positive integer")
        return int(first), "OMP_NUM_THREADS"
    return (budget or cpu_budget())["cpus"], "cpu budget"


def apply_threads(explicit: int | None = None) -> int:
    """Run torch's intra-op pool with ``choose_threads(explicit)`` threads, set ``OMP_NUM_THREADS``
    to it for child processes and record its source for ``summary``/``record``; returns the count. The
    call for Python users of ``prlf_fast.load_run``: ``configure_openmp()`` before ``import torch``,
    ``apply_threads()`` after."""
    n, source = choose_threads(explicit)
    import torch

    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    _state["source"] = source
    return n


def openmp_runtime() -> str | None:
    """File name of the OpenMP runtime loaded in this process (``libgomp.so.1``,
    ``libiomp5.so``, ``libomp.so``), from ``/proc/self/maps``; None when none is found."""
    maps = _read("/proc/self/maps", 1 << 24) or ""
    names = {os.path.basename(line.split()[-1]) for line in maps.splitlines() if "omp" in line and "/" in line}
    for name in sorted(names):
        if name.startswith(("libgomp", "libiomp", "libomp")):
            return name
    return None


def record() -> dict:
    """The provenance entry ``cpu_threads``: ``source`` of the thread count ("--threads",
    "OMP_NUM_THREADS", "cpu budget"; None when ``apply_threads`` was not called),
    ``cpu_budget``, ``openmp`` (the wait policy) and ``runtime`` (the OpenMP library loaded)."""
    return {"source": _state["source"], "cpu_budget": cpu_budget(), "openmp": wait_policy(),
            "runtime": openmp_runtime()}


def summary() -> str:
    """One line for train.log, e.g. ``threads: 2 (cpu budget: affinity 2, cgroup quota none);
    OpenMP: GOMP_SPINCOUNT=1000 KMP_BLOCKTIME=0 (set by prlf-fast)``."""
    import torch

    rec = record()
    b, omp = rec["cpu_budget"], rec["openmp"]
    quota = "none" if b["cgroup_quota"] is None else f"{b['cgroup_quota']:g}"
    source = "" if rec["source"] in (None, "cpu budget") else f"{rec['source']}; "
    wait = " ".join(f"{k}={v}" for k, v in omp["variables"].items()) or "runtime default"
    set_by = f" (set by {omp['set_by']})" if omp["set_by"] else ""
    return (f"threads: {torch.get_num_threads()} ({source}cpu budget: affinity {b['affinity']}, "
            f"cgroup quota {quota}); OpenMP: {wait}{set_by}")
