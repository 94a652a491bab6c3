"""The Slurm commands a sweep runs besides submitit's: submit an array (sbatch), which tasks are
still queued or running (squeue), and how the tasks that left the queue without a result ended
(sacct, where the cluster keeps accounting). Every failure of these commands is one
``PRLFError`` line with Slurm's own message."""
from __future__ import annotations

import contextlib
import io
import subprocess

from submitit.core.utils import FailedJobError, FailedSubmissionError

from prlf_fast.errors import PRLFError

NO_ACCOUNTING = "accounting storage is disabled"
UNKNOWN_JOB = "Invalid job id specified"


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip()) or "no message"


def submit_array(executor, calls: list) -> list:
    """Submit ``calls`` (each ``(function, *args)``) as one Slurm array; return the jobs."""
    try:
        # submitit prints sbatch's stderr before raising it: the error below says it once
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():
            jobs = [executor.submit(*call) for call in calls]
    except (FailedJobError, FailedSubmissionError) as exc:
        raise PRLFError(f"sbatch failed: {one_line(str(exc))}") from None
    return jobs


def _run(argv: list) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PRLFError(f"{argv[0]} failed: {exc}") from None


def queued(array_id: str) -> set:
    """Ids (``ARRAY_TASK``, or ``JOB`` alone) of the tasks of ``array_id`` that Slurm still holds
    pending, running or completing (requeued ones included)."""
    proc = _run(["squeue", "--noheader", "--array", f"--jobs={array_id}", "--format=%i"])
    if proc.returncode != 0:
        if UNKNOWN_JOB in proc.stderr:  # every task ended and the controller forgot the array
            return set()
        raise PRLFError(f"squeue failed: {one_line(proc.stderr or proc.stdout)}")
    return set(proc.stdout.split())


def final_states(array_id: str) -> dict | None:
    """``{task id: state}`` from sacct (e.g. ``CANCELLED by 0``, ``TIMEOUT``), or None on a
    cluster without accounting."""
    proc = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                 f"--jobs={array_id}"])
    if proc.returncode != 0:
        if NO_ACCOUNTING in proc.stderr:
            return None
        raise PRLFError(f"sacct failed: {one_line(proc.stderr or proc.stdout)}")
    return dict(line.split("|", 1) for line in proc.stdout.splitlines() if "|" in line)
