"""Running a sweep: check every cell's settings, convert each dataset to the cache once, then run
the unfinished cells through submitit (local processes or a Slurm array) and keep a record of
each invocation in ``SWEEP/sweep.json``.

A cell is an ordinary ``prlf-fast train`` run. It is skipped when finished (``results.json`` and
``report.md`` exist) and resumed with ``--resume`` when it holds a run, so running the same sweep
command again after a crash completes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time

import submitit

from prlf_fast.errors import PRLFError, reported
from prlf_fast.io.atomic import write_json
from prlf_fast.io.files import open_regular
from prlf_fast.io.rundir import CONFIG
from prlf_fast.study import slurm
from prlf_fast.study.record import is_finished, lock, read_state
from prlf_fast.provenance import set_command
from prlf_fast.study.spec import SWEEP_FILE, SweepSpec, cell_dir, cell_key, data_path
from prlf_fast.malloc import configure_malloc
from prlf_fast.threads import apply_threads, configure_openmp
from prlf_fast.train.spec import RunSpec, start

SUBMITIT = "submitit"
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # submitit's local default (2 min) would kill every real cell
LOG_TAIL = 64 * 1024  # of a failed cell's log, the part searched for its error
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_S = 60  # how long a stopped local cell has to save its checkpoint
SLURM_POLL_S = 10  # at most this long between two squeue calls while waiting for the array
SLURM_MAX_TIMEOUTS = 3  # time-limit requeues of one cell (submitit's default); preemptions are not counted


@dataclasses.dataclass
class Runtime:
    """How the cells run (not part of the sweep's identity: may change between invocations)."""

    executor: str = "local"           # local | slurm
    parallel: int | None = None       # local: cells at once (default: GPUs × per_gpu, else 1)
    per_gpu: int = 1                  # local: cells sharing one GPU
    threads: int | None = None        # CPU threads per cell (default: cores / parallel; Slurm: cpus)
    device: str = "auto"              # auto | cpu | cuda
    backend: str = "fast"
    tensorboard: bool = False
    wait: bool = True                 # wait for the cells, then write the report
    partition: str | None = None      # slurm
    time_min: int = 240
    gpus: int | None = None           # slurm: GPUs per cell (default: 1 with device cuda, else 0)
    cpus: int = 4
    array_parallelism: int = 64
    slurm_options: dict = dataclasses.field(default_factory=dict)

    def slurm_gpus(self) -> int:
        """GPUs each Slurm cell asks for: ``gpus``, else 1 for ``device="cuda"`` and none for
        ``cpu`` or ``auto`` (a GPU only when asked: a CPU partition refuses a GPU request)."""
        if self.gpus is None:
            return 1 if self.device == "cuda" else 0
        if self.gpus < 0:
            raise PRLFError(f"--gpus {self.gpus}: expected ≥ 0")
        if self.gpus and self.device == "cpu":
            raise PRLFError(f"--gpus {self.gpus} with --device cpu: CPU cells ask for no GPU (drop --gpus)")
        if not self.gpus and self.device == "cuda":
            raise PRLFError("--gpus 0 with --device cuda: CUDA cells need a GPU")
        return self.gpus


def log_tail(path: str, limit: int = LOG_TAIL) -> str:
    """The last ``limit`` bytes of the log ``path`` as text ("" when it is absent, a symlink or
    not a regular file)."""
    directory, name = os.path.split(path)
    try:
        with open_regular(directory, name, sys.maxsize) as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            return f.read(limit).decode("utf-8", errors="replace")
    except (OSError, PRLFError):
        return ""


def _log_lines(stderr: str) -> list:
    return [line.strip() for line in log_tail(stderr).splitlines() if line.strip()]


def own_error(stderr: str) -> str | None:
    """The last ``prlf-fast: ...`` line (the one-line error of ``prlf-fast train``) in the tail
    of a cell's log ``stderr``, without the prefix; None when the cell wrote none (killed)."""
    own = [line for line in _log_lines(stderr) if line.startswith("prlf-fast: ")]
    return own[-1].removeprefix("prlf-fast: ").removeprefix("error: ") if own else None


def cell_error(stderr: str, fallback: str) -> str:
    """A failed cell's own error (``own_error``), else its log's last line, else ``fallback``."""
    lines = _log_lines(stderr)
    return own_error(stderr) or (lines[-1] if lines else fallback)


@dataclasses.dataclass
class Cell:
    """One cell to run: its key, run directory and run, and how it runs here."""

    key: str
    out: str
    spec: RunSpec
    device: str
    backend: str
    tensorboard: bool


def _own_session() -> None:
    """Make a local cell's process hear a stop once, from the sweep's controller: leave its
    process group (a Ctrl-C or a group SIGTERM goes to the controller, which passes SIGINT on),
    take SIGINT back from the ignore it inherited, and die with submitit's process (as a kill of
    the group would have killed it: ``PR_SET_PDEATHSIG``, Linux)."""
    if os.getpid() != os.getpgrp():
        os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _cell_pids(job) -> list:
    """The processes of a local job's cell: the children of submitit's process (Linux /proc)."""
    pid = job._process.pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _signal_cell(job, signum) -> None:
    """Send ``signum`` to the cell of ``job`` itself (submitit's own cancel SIGKILLs it ~1 s after
    its SIGINT); where its process is unknown, SIGTERM to submitit's, which passes it on."""
    pids = _cell_pids(job)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    if not pids and signum != signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            job._process.send_signal(signal.SIGTERM)
    elif signum == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            job._process.kill()


def _submit(executor, *args):
    """``executor.submit`` with SIGINT ignored in submitit's process (inherited), so that a
    Ctrl-C to the terminal's group does not make it SIGKILL the cell."""
    if threading.current_thread() is not threading.main_thread():
        return executor.submit(*args)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return executor.submit(*args)
    finally:
        signal.signal(signal.SIGINT, previous)


class CellJob(submitit.helpers.Checkpointable):
    """The job of one cell. On Slurm a timeout or preemption requeues it (submitit's
    ``Checkpointable``), and the requeued job resumes the cell from its last checkpoint."""

    def __call__(self, cell: Cell, threads: int) -> None:
        """Run (or resume) ``cell`` with ``threads`` CPU threads, as ``prlf-fast train`` would
        (its errors are one ``prlf-fast:`` line in this log). Its outcome is its run directory
        (the controller never reads this job's result pickle)."""
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported in this process
        configure_openmp()
        configure_malloc()
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":
            _own_session()
        if is_finished(cell.out):  # e.g. a Slurm job requeued after it finished
            return
        resume = os.path.isfile(os.path.join(cell.out, CONFIG))
        argv = ["train", *cell.spec.argv(), "--out", cell.out, "--device", cell.device, "--backend", cell.backend,
                "--threads", str(threads), *(["--tensorboard"] if cell.tensorboard else []),
                *(["--resume"] if resume else [])]
        set_command(argv)  # what the run's provenance records

        def run() -> None:
            apply_threads(threads)
            start(cell.spec, cell.out, cell.device, cell.backend, resume, tensorboard=cell.tensorboard)

        code = reported(run)
        if code != 0:
            raise RuntimeError(f"prlf-fast {' '.join(argv)} exited with code {code} (its error is in this log)")


# -- checks and data -------------------------------------------------------------------------
def validate(spec: SweepSpec, sweep_dir: str) -> None:
    """Every (dataset, variant)'s settings as ``prlf-fast train`` checks them, before anything
    is written: unknown or bad ``--set``/training values fail here, once."""
    for d in spec.datasets:
        if d.data is not None and not os.path.exists(d.data):
            raise PRLFError(f"dataset {d.name}: {d.data}: no such file or directory")
        for variant in spec.variants:
            try:
                spec.run_spec(sweep_dir, d, variant, spec.seeds[0]).config()
            except (PRLFError, ValueError) as exc:
                raise PRLFError(f"dataset {d.name}, variant {variant}: {exc}") from None


def prepare_data(spec: SweepSpec, sweep_dir: str, log) -> None:
    """Convert each pickle to a memory-mapped cache once (SWEEP/data/NAME), so K parallel cells
    share one copy of the data in the page cache instead of unpickling K copies."""
    from prlf_fast.data.cache import META
    from prlf_fast.data.loader import convert

    for d in spec.datasets:
        if d.data is None or os.path.isdir(d.data):
            continue
        target = data_path(sweep_dir, d)
        if os.path.isfile(os.path.join(target, META)):
            continue
        start = time.perf_counter()
        convert(d.data, target, d.preset)  # commits as a whole (meta.json last): old cache or new
        log(f"converted {d.data} to the cache {target} in {time.perf_counter() - start:.1f} s")


# -- executors -------------------------------------------------------------------------------
def _local_slots(rt: Runtime) -> tuple[list, str]:
    """One entry per concurrent cell: the GPU it uses (None on CPU); and the cells' device."""
    import torch

    n_gpus = torch.cuda.device_count() if rt.device != "cpu" and torch.cuda.is_available() else 0
    if rt.device == "cuda" and n_gpus == 0:
        raise PRLFError("--device cuda: no CUDA device is available")
    if rt.per_gpu < 1 or (rt.parallel is not None and rt.parallel < 1):
        raise PRLFError("--parallel and --per-gpu must be ≥ 1")
    if n_gpus == 0:
        return [None] * (rt.parallel or 1), "cpu"
    capacity = n_gpus * rt.per_gpu
    parallel = rt.parallel or capacity
    if parallel > capacity:
        raise PRLFError(f"--parallel {parallel} is more than {n_gpus} GPU(s) × --per-gpu {rt.per_gpu}")
    return [slot % n_gpus for slot in range(parallel)], "cuda"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cpu_cores() -> int:
    from prlf_fast.threads import cpu_budget

    return cpu_budget()["cpus"]


class Sweep:
    """One invocation of a sweep directory: plan, launch, record."""

    def __init__(self, spec: SweepSpec, sweep_dir: str, rt: Runtime, log=None):
        self.spec, self.dir, self.rt = spec, os.path.abspath(sweep_dir), rt
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.record: dict = {}
        self.earlier: list = []  # records of earlier invocations
        self.executor = None  # submitit's, made by run() once the settings are checked
        self.accounting = True  # False once sacct said the Slurm cluster keeps none

    def _save(self) -> None:
        write_json(os.path.join(self.dir, SWEEP_FILE),
                   {"spec": self.spec.to_dict(), "invocations": [*self.earlier, self.record]})

    def run(self, then=None) -> dict:
        """Run every unfinished cell, then call ``then()`` (the CLI writes the report there);
        return this invocation's record. Holds the sweep directory's lock throughout: a second
        ``prlf-fast sweep`` (or ``--report``) on it fails at once with one line."""
        self._read_saved()
        validate(self.spec, self.dir)   # settings are checked before anything is written
        if self.rt.executor == "slurm":
            self.rt.slurm_gpus()
        os.makedirs(self.dir, exist_ok=True)
        with lock(self.dir):
            self._read_saved()          # again: another invocation may have saved in between
            record = self._run()
            if then is not None:
                then()
            return record

    def _read_saved(self) -> None:
        saved = read_state(self.dir)
        if saved is not None:
            old, self.earlier = saved
            self.spec.check_compatible(old, self.dir)
            self.spec = self.spec.grown_from(old)

    def _run(self) -> dict:
        from prlf_fast import provenance

        if self.rt.executor == "local":
            slots, device = _local_slots(self.rt)
            threads = self.rt.threads or max(1, cpu_cores() // len(slots))
        else:
            slots, device, threads = None, "cuda" if self.rt.slurm_gpus() else "cpu", self.rt.threads or self.rt.cpus
        self.executor = self._make_executor()
        start = time.time()
        prov = provenance.collect("cpu", start)
        self.record = {"started": prov["started"], "command": prov["command"], "provenance": prov,
                       "executor": self.rt.executor, "parallel": len(slots) if slots else self.rt.array_parallelism,
                       "threads_per_cell": threads, "device": device, "cells": {}, "wall_seconds": None}
        self._save()
        prepare_data(self.spec, self.dir, self.log)
        todo = []
        for d, v, s in self.spec.cells():
            key, out = cell_key(d.name, v, s), cell_dir(self.dir, d.name, v, s)
            if is_finished(out):
                self.record["cells"][key] = {"status": "skipped (finished)"}
                continue
            todo.append(Cell(key, out, self.spec.run_spec(self.dir, d, v, s), device, self.rt.backend,
                             self.rt.tensorboard))
        n_cells = len(self.spec.cells())
        self.log(f"sweep {self.dir}: {n_cells} cells, {n_cells - len(todo)} finished, {len(todo)} to run "
                 f"({self.rt.executor}, {self.record['parallel']} at once, {threads} thread(s) per cell, {device})")
        try:
            if self.rt.executor == "local":
                self._run_local(todo, slots, threads)
            else:
                self._run_slurm(todo, threads)
        finally:
            self.record["wall_seconds"] = round(time.time() - start, 2)
            self._save()
        return self.record

    def _ended(self, cell: Cell, job, wall: float | None, n_done: int, n_all: int) -> None:
        """Record a cell whose job ended: done when its run directory holds committed results
        (``seconds``: submit to end on the controller's clock, local only), else failed with
        the error in its log. Nothing submitit wrote (result pickles) is read."""
        key = cell.key
        if not is_finished(cell.out):
            self._failed(key, job, cell_error(str(job.paths.stderr), "ended without results"), n_done, n_all)
            return
        self.record["cells"][key] = {"status": "done", "seconds": None if wall is None else round(wall, 2)}
        self.log(f"[{n_done}/{n_all}] {key} done" + ("" if wall is None else f" in {wall:.1f} s"))
        self._save()

    def _failed(self, key: str, job, error: str, n_done: int, n_all: int) -> None:
        self.record["cells"][key] = {"status": "failed", "error": error, "log": str(job.paths.stderr)}
        self.log(f"[{n_done}/{n_all}] {key} FAILED: {error}; log {job.paths.stderr}")
        self._save()

    def _make_executor(self):
        folder = os.path.join(self.dir, SUBMITIT)
        if self.rt.executor == "local":
            executor = submitit.LocalExecutor(folder=folder)
            executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
            return executor
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=SLURM_MAX_TIMEOUTS)
        except RuntimeError as exc:  # submitit's "Could not detect srun"
            raise PRLFError(f"--executor slurm: {exc}") from None
        params = dict(name="prlf-sweep", timeout_min=self.rt.time_min, cpus_per_task=self.rt.cpus,
                      tasks_per_node=1, nodes=1, slurm_array_parallelism=self.rt.array_parallelism)
        if self.rt.slurm_gpus():  # no GPU request at all for CPU cells
            params["gpus_per_node"] = self.rt.slurm_gpus()
        if self.rt.partition:
            params["slurm_partition"] = self.rt.partition
        if self.rt.slurm_options:
            params["slurm_additional_parameters"] = dict(self.rt.slurm_options)
        executor.update_parameters(**params)
        return executor

    def _run_local(self, todo: list, slots: list, threads: int) -> None:
        """Run ``todo`` on the local slots. SIGTERM or SIGINT stops the sweep: each running
        cell gets SIGINT and up to ``STOP_GRACE_S`` to save its checkpoint (further signals
        are ignored meanwhile), then KeyboardInterrupt is raised."""
        executor = self.executor
        pending, running, n_done = list(todo), {}, 0
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS} if main else {}
        try:
            while pending or running:
                for slot, gpu in enumerate(slots):
                    if slot in running or not pending:
                        continue
                    cell = pending.pop(0)
                    if gpu is None:
                        executor.update_parameters(gpus_per_node=0, visible_gpus=())
                    else:
                        executor.update_parameters(gpus_per_node=1, visible_gpus=(gpu,))
                    running[slot] = (cell, _submit(executor, CellJob(), cell, threads), time.perf_counter())
                for slot, (cell, job, t0) in list(running.items()):
                    if job.done():
                        del running[slot]
                        n_done += 1
                        self._ended(cell, job, time.perf_counter() - t0, n_done, len(todo))
                time.sleep(0.2)
        except KeyboardInterrupt:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            jobs = [job for _, job, _ in running.values()]
            if jobs:
                self.log(f"stopping: {len(jobs)} running cell(s) save a checkpoint to resume from")
            for job in jobs:
                _signal_cell(job, signal.SIGINT)
            deadline = time.time() + STOP_GRACE_S
            while any(not job.done() for job in jobs) and time.time() < deadline:
                time.sleep(0.2)
            for job in jobs:
                if not job.done():
                    _signal_cell(job, signal.SIGKILL)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run_slurm(self, todo: list, threads: int) -> None:
        executor = self.executor
        if not todo:
            return
        submitted = slurm.submit_array(executor, [(CellJob(), cell, threads) for cell in todo])
        jobs = list(zip([cell.key for cell in todo], submitted))
        cells = {cell.key: cell for cell in todo}
        for key, job in jobs:
            self.record["cells"][key] = {"status": "submitted", "job": job.job_id}
        self._save()
        array_id = jobs[0][1].job_id.split("_")[0]
        self.log(f"submitted {len(jobs)} cells as Slurm array {array_id}")
        if not self.rt.wait:
            return
        # A task has ended once Slurm no longer holds it (a requeued task is pending again, and
        # its earlier attempt's result file is not its outcome); squeue, not submitit's sacct
        # polling, which a cluster without accounting fails at every call.
        remaining, n_done, start = dict(jobs), 0, time.time()
        while remaining:
            time.sleep(min(SLURM_POLL_S, 1 + (time.time() - start) / 10))  # 1 s, then up to every 10 s
            try:
                active = slurm.queued(array_id)
            except PRLFError as exc:
                raise PRLFError(f"{exc}; the array goes on: prlf-fast sweep --report {self.dir} once it ends") from None
            for key, job in list(remaining.items()):
                if job.job_id in active:
                    continue
                del remaining[key]
                n_done += 1
                if is_finished(cells[key].out):
                    self._ended(cells[key], job, None, n_done, len(jobs))
                    continue
                # a killed task wrote no error of its own: the last line of its log would mislead
                error = own_error(str(job.paths.stderr)) or \
                    f"ended without a result (Slurm state: {self._final_states(array_id).get(job.job_id, 'unknown')})"
                self._failed(key, job, error, n_done, len(jobs))

    def _final_states(self, array_id: str) -> dict:
        """sacct's states of the array's tasks; {} on a cluster without accounting (one note)."""
        if self.accounting:
            states = slurm.final_states(array_id)
            if states is not None:
                return states
            self.accounting = False
            self.log("note: this Slurm cluster keeps no accounting (sacct), so how a task that "
                     "ended without a result ended is unknown")
        return {}
