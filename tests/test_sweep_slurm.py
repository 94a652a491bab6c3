"""``prlf-fast sweep --executor slurm``. On a real one-node Slurm cluster (``slurm`` marker; started
by tests/slurm/cluster.sh, which .ci/run runs): an array to completion with a failing cell and a
killed one, ``--no-wait`` then ``--report``, ``scancel`` then the same command resumes, ``scontrol
requeue`` and a time limit resume. With fake Slurm commands, what one node without GPUs cannot
show: the GPU request, and squeue/sacct answers."""
import contextlib
import getpass
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from helpers import TINY_MODEL, assert_clean_error, run_cli

from prlf_fast.study import launch

CLUSTER = os.environ.get("PRLF_SLURM_CLUSTER")
# 320 training samples of batch 16: 20 steps per epoch, about 0.6 s per epoch on this machine
CELL = ["--partition", "debug", "--device", "cpu", "--cpus", "1", "--synthetic", "320,16,16",
        "--train", "batch_size=16", *TINY_MODEL, "--rates", "0.0", "0.5", "--mask-seeds", "0"]


@pytest.fixture
def cluster(monkeypatch):
    if not CLUSTER:
        pytest.skip("no Slurm cluster: PRLF_SLURM_CLUSTER is unset (`tests/slurm/cluster.sh start DIR` "
                    "starts one; .ci/run does where slurm-wlm and munge install)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    assert ping.returncode == 0 and "UP" in ping.stdout, f"PRLF_SLURM_CLUSTER={CLUSTER} is not up: {ping}"
    assert not _squeue(), "the test cluster is not idle"
    monkeypatch.setattr(launch, "SLURM_POLL_S", 2)
    yield
    subprocess.run(["scancel", "--full", f"--user={getpass.getuser()}"], capture_output=True, check=False)


def _squeue(*options) -> list:
    """squeue's lines: one per pending, running or completing task of the test cluster."""
    return subprocess.run(["squeue", "--noheader", "--array", *options], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _wait(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def _job(sweep, key) -> str:
    return json.loads((sweep / "sweep.json").read_text())["invocations"][-1]["cells"][key]["job"]


def _cell(sweep, key):
    return sweep / "cells" / key


@contextlib.contextmanager
def _in_background(action):
    """Run ``action(stop_event)`` in a thread for the duration of the block; re-raise its failure."""
    stop, failure = threading.Event(), []

    def target():
        try:
            action(stop)
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
    if failure:
        raise failure[0]


def _release_requeued(stop):
    """Slurm holds a requeued job for about 2 minutes (reason BeginTime): start it now instead."""
    while not stop.wait(0.5):
        for line in _squeue("--format=%i|%T|%r"):
            task, state, reason = line.split("|", 2)
            if state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True,
                               check=False)


def _gpu_request(script: str) -> bool:
    return any(line.startswith(("#SBATCH --gpu", "#SBATCH --gres")) for line in script.splitlines())


def _assert_one_line_error(code, err, fragment):
    """Exit 2 and the error as the last line (after the sweep's progress lines), no traceback."""
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("prlf-fast: error: ") and fragment in last and "Traceback" not in err, err


def _assert_quiet(err):
    assert "Traceback" not in err and "Bypassing sacct" not in err, err


@pytest.mark.slurm
def test_array_to_completion_with_failing_and_killed_cells(tmp_path, capsys, cluster):
    bad = tmp_path / "bad"  # a cache directory without meta.json: the cell fails on loading it
    bad.mkdir()
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--out", sweep, "--executor", "slurm", *CELL, "--seeds", "1", "2", "--train", "epochs=2",
            "--dataset", "mosi", "--dataset", f"bad=mosi:{bad}", "--array-parallelism", "2"]

    def kill_seed2(stop):  # SIGKILL: the task ends without a result, as on an OOM kill or a lost node
        _wait(lambda: stop.is_set() or (_cell(sweep, "mosi/full/seed2") / "config.json").exists(), 120,
              "mosi/full/seed2 starts")
        if not stop.is_set():
            job_id = _squeue(f"--jobs={_job(sweep, 'mosi/full/seed2')}", "--format=%A")[0].strip()
            pids = subprocess.run(["scontrol", "listpids", f"{job_id}.0"], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[1:]  # PID JOBID STEPID ... of the cell's step
            for line in pids:
                os.kill(int(line.split()[0]), signal.SIGKILL)

    start = time.time()
    with _in_background(kill_seed2):
        code, out, err = run_cli(capsys, *argv)
    print(f"array of 4 to completion: {time.time() - start:.0f} s")
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("prlf-fast: error: 3 cell(s) failed: ") and "run the same command again" in last, err
    assert sorted(last.split(": ")[3].split("; ")[0].split(", ")) == ["bad/full/seed1", "bad/full/seed2",
                                                                     "mosi/full/seed2"]
    _assert_quiet(err)
    assert "submitted 4 cells as Slurm array" in err and "(1 of 4 cells finished" in out
    assert launch.is_finished(str(_cell(sweep, "mosi/full/seed1")))
    cells = json.loads((sweep / "sweep.json").read_text())["invocations"][-1]["cells"]
    assert cells["mosi/full/seed1"]["status"] == "done"
    for seed in (1, 2):
        assert cells[f"bad/full/seed{seed}"]["status"] == "failed"
        assert cells[f"bad/full/seed{seed}"]["error"].startswith(f"{bad}: not a prlf_fast data cache"), cells
    assert cells["mosi/full/seed2"]["error"] == "ended without a result (Slurm state: unknown)"
    assert err.count("keeps no accounting") == 1, err  # one note, not a warning per poll
    script = next((sweep / "submitit").glob("*_submission.sh")).read_text()
    for line in ("--array=0-3%2", "--partition=debug", "--cpus-per-task=1", "--time=240"):
        assert f"#SBATCH {line}\n" in script
    assert not _gpu_request(script)  # CPU cells ask for no GPU
    assert "| mosi | full | 1 | yes |" in (sweep / "report.md").read_text()


@pytest.mark.slurm
def test_no_wait_report_and_scancel_then_the_same_command_resumes(tmp_path, capsys, cluster):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--out", sweep, "--executor", "slurm", *CELL, "--seeds", "1", "2", "--train", "epochs=12",
            "--no-wait"]
    start = time.time()
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and "prlf-fast sweep --report" in out, err
    assert time.time() - start < 15  # returns once submitted
    seed1 = _cell(sweep, "mosi/full/seed1")
    _wait(lambda: (seed1 / "last.safetensors").exists(), 120, "seed1's first checkpoint")
    assert not launch.is_finished(str(seed1))
    subprocess.run(["scancel", _job(sweep, "mosi/full/seed1")], check=True)  # SIGTERM mid-training
    _wait(lambda: not _squeue(), 120, "the array ends")
    code, out, err = run_cli(capsys, "sweep", "--report", sweep)
    assert code == 0 and (sweep / "summary.json").exists(), err
    finished = {c["key"]: c["finished"] for c in json.loads((sweep / "summary.json").read_text())["cells"]}
    assert finished == {"mosi/full/seed1": False, "mosi/full/seed2": True}
    print(f"--no-wait, scancel, --report: {time.time() - start:.0f} s")

    code, out, err = run_cli(capsys, *argv)  # the same command: submits what is left
    assert code == 0, err
    assert "2 cells, 1 finished, 1 to run" in err and "submitted 1 cells" in err
    _wait(lambda: not _squeue(), 180, "the resumed cell ends")
    assert launch.is_finished(str(seed1))
    assert "resumed from last.safetensors" in (seed1 / "train.log").read_text()
    code, out, err = run_cli(capsys, "sweep", "--report", sweep)
    assert code == 0, err
    assert all(c["finished"] for c in json.loads((sweep / "summary.json").read_text())["cells"])
    print(f"... then resumed and reported: {time.time() - start:.0f} s")


@pytest.mark.slurm
def test_requeued_task_resumes_while_the_sweep_waits(tmp_path, capsys, cluster):
    sweep = tmp_path / "sweep"
    seed1 = _cell(sweep, "mosi/full/seed1")

    def requeue_seed1(stop):
        _wait(lambda: stop.is_set() or (seed1 / "last.safetensors").exists(), 120, "seed1's first checkpoint")
        if not stop.is_set():
            assert not launch.is_finished(str(seed1))
            subprocess.run(["scontrol", "requeue", _job(sweep, "mosi/full/seed1")], check=True)
            _release_requeued(stop)

    start = time.time()
    with _in_background(requeue_seed1):
        code, out, err = run_cli(capsys, "sweep", "--out", sweep, "--executor", "slurm", *CELL, "--seeds", "1", "2",
                                 "--train", "epochs=12")
    print(f"requeue: {time.time() - start:.0f} s")
    assert code == 0, err
    _assert_quiet(err)
    assert "(2 of 2 cells finished" in out
    log = (seed1 / "train.log").read_text()
    assert "resumed from last.safetensors" in log and log.count("evaluated best.safetensors") == 1


@pytest.mark.slurm
def test_cell_past_its_time_limit_is_requeued_and_finishes(tmp_path, capsys, cluster, monkeypatch):
    # --time 1 and the warning signal 40 s before the limit: slurmctld sends it at its first check
    # (every 30 s) after 20 s, 20-50 s into each attempt; submitit checkpoints the cell and requeues
    # it. About 60 s of training on 2 idle cores (0.4 s an epoch), twice that on a busy machine:
    # more than one attempt, and up to 10 requeues allowed so that a busy machine does not fail it.
    monkeypatch.setattr(launch, "SLURM_MAX_TIMEOUTS", 10)
    sweep = tmp_path / "sweep"
    start = time.time()
    with _in_background(_release_requeued):
        code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--executor", "slurm", *CELL, "--seeds", "1",
                               "--train", "epochs=150", "--time", "1", "--slurm-option", "signal=USR2@40")
    print(f"time limit: {time.time() - start:.0f} s")
    assert code == 0, err
    _assert_quiet(err)
    script = next((sweep / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --time=1\n" in script and "#SBATCH --signal=USR2@40\n" in script
    seed1 = _cell(sweep, "mosi/full/seed1")
    job_log = next((sweep / "submitit").glob("*_0_log.err")).read_text()
    assert "this job is timed-out" in job_log and "DUE TO JOB REQUEUE" in job_log
    assert launch.is_finished(str(seed1)) and "resumed from last.safetensors" in (seed1 / "train.log").read_text()


@pytest.mark.slurm
def test_gpu_request_on_a_cluster_without_gpus_is_one_line(tmp_path, capsys, cluster):
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "sweep", "--executor", "slurm", "--device", "cuda")
    _assert_one_line_error(code, err, "sbatch failed: sbatch: error: Invalid generic resource (gres) specification")


# -- fake Slurm commands ---------------------------------------------------------------------
def _fake_slurm(tmp_path, monkeypatch, **scripts):
    """Put shell scripts named after Slurm commands first on PATH (srun: submitit looks for it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, text in {"srun": "exit 0", **scripts}.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{text}\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(launch, "SLURM_POLL_S", 0)


def _submission(sweep):
    from submitit.core.utils import DelayedSubmission

    script = (sweep / "submitit" / "4242_submission.sh").read_text()
    cell, threads = DelayedSubmission.load(sweep / "submitit" / "4242_0_submitted.pkl").args
    return script, cell.device, threads


@pytest.mark.parametrize("options, gpus, device", [
    (["--device", "cuda"], 1, "cuda"),
    (["--device", "cuda", "--gpus", "2"], 2, "cuda"),
    (["--device", "auto"], None, "cpu"),     # a GPU only when asked
    (["--device", "auto", "--gpus", "1"], 1, "cuda"),
    (["--device", "cpu"], None, "cpu"),
])
def test_gpus_follow_the_device(tmp_path, capsys, monkeypatch, options, gpus, device):
    _fake_slurm(tmp_path, monkeypatch, sbatch="echo 'Submitted batch job 4242'")
    sweep = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--seeds", "1", "2", "--executor", "slurm",
                           "--no-wait", "--cpus", "3", *options)
    assert code == 0, err
    script, cell_device, threads = _submission(sweep)
    assert cell_device == device and threads == 3
    assert _gpu_request(script) == (gpus is not None)
    if gpus:
        assert f"#SBATCH --gpus-per-node={gpus}\n" in script


def test_contradictory_gpu_options_fail_before_anything_is_written(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for options, message in ((["--device", "cpu", "--gpus", "1"], "--gpus 1 with --device cpu"),
                             (["--device", "cuda", "--gpus", "0"], "--gpus 0 with --device cuda"),
                             (["--gpus", "-1"], "--gpus -1: expected ≥ 0")):
        code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--executor", "slurm", *options)
        assert_clean_error(code, err, message)
    assert not sweep.exists()


def test_slurm_command_failures_are_one_line(tmp_path, capsys, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, sbatch="echo 'Submitted batch job 4242'",
                squeue="echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "sweep", "--executor", "slurm")
    _assert_one_line_error(code, err, "squeue failed: squeue: error: Unable to contact slurm controller "
                                      f"(connect failure); the array goes on: prlf-fast sweep --report {tmp_path / 'sweep'}")
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: "
                                             "Invalid account' >&2\nexit 1\n")
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "sweep2", "--executor", "slurm")
    _assert_one_line_error(code, err, "sbatch failed: sbatch: error: Batch job submission failed: Invalid account")
    assert err.count("Invalid account") == 1  # not also printed by submitit


def test_tasks_that_end_without_a_result_on_a_cluster_without_accounting(tmp_path, capsys, monkeypatch):
    # squeue: every task has left the queue, none wrote a result; sacct: no accounting
    _fake_slurm(tmp_path, monkeypatch, sbatch="echo 'Submitted batch job 4242'", squeue="exit 0",
                sacct="echo 'Slurm accounting storage is disabled' >&2; exit 1")
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "sweep", "--seeds", "1", "2", "3",
                           "--executor", "slurm")
    assert code == 2 and "3 cell(s) failed" in err.strip().splitlines()[-1], err
    assert err.count("ended without a result (Slurm state: unknown)") == 3
    assert err.count("keeps no accounting") == 1, err
    (tmp_path / "bin" / "sacct").write_text("#!/bin/sh\necho '4242_0|CANCELLED by 0'\necho '4242_1|TIMEOUT'\n")
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "sweep", "--executor", "slurm")
    assert "mosi/full/seed1 FAILED: ended without a result (Slurm state: CANCELLED by 0)" in err
    assert "mosi/full/seed2 FAILED: ended without a result (Slurm state: TIMEOUT)" in err
    assert "accounting" not in err
