"""A sweep directory someone else wrote, and signals: nothing of submitit's is read back (a
planted result pickle runs no code), ``sweep.json`` and the sweep YAML are schema-checked with
one-line errors, the outputs are one commit, ``--report`` needs no submitit, SIGTERM stops the
cells with a checkpoint, and variants may carry training settings."""
import os
import pickle
import subprocess
import sys

import pytest
from submitit.local.local import LocalJob

from prlf_fast.study import launch
from prlf_fast.study.spec import SweepSpec


class _Touch:
    """A pickle that creates ``marker`` when it is loaded (what a planted result pickle can do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(job, marker):
    job.paths.folder.mkdir(parents=True, exist_ok=True)
    job.paths.result_pickle.write_bytes(pickle.dumps(("success", _Touch(marker))))
    job.paths.stderr.write_text("epoch 1/2\nprlf-fast: error: the cell's own error\n")


def _sweep(tmp_path, **rt):
    sweep = launch.Sweep(SweepSpec.from_args(), str(tmp_path / "sweep"), launch.Runtime(device="cpu", **rt),
                         log=lambda msg: None)
    sweep.record = {"cells": {}}
    os.makedirs(sweep.dir, exist_ok=True)
    return sweep


def test_a_planted_result_pickle_of_a_local_cell_is_never_loaded(tmp_path):
    marker, folder = tmp_path / "code-ran", tmp_path / "sweep" / "submitit"

    class Executor:
        def update_parameters(self, **kwargs):
            pass

        def submit(self, fn, *args):  # a cell that dies without results, beside a planted pickle
            job = LocalJob(folder, "4242", process=subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"]))
            _plant(job, marker)
            return job

    sweep = _sweep(tmp_path)
    sweep.executor = Executor()
    sweep._run_local([("mosi/full/seed1", ["train", "--out", str(tmp_path / "cell")])], [None], 1)
    assert not marker.exists()
    assert sweep.record["cells"]["mosi/full/seed1"]["status"] == "failed"
    assert sweep.record["cells"]["mosi/full/seed1"]["error"] == "the cell's own error"


def test_a_slurm_cell_is_done_by_its_directory_not_by_a_result_pickle(tmp_path, monkeypatch):
    folder = tmp_path / "sweep" / "submitit"

    class Job(LocalJob):
        def result(self):
            raise AssertionError("the job's result pickle was read")

    jobs = [Job(folder, f"7_{i}") for i in range(2)]
    for job in jobs:
        _plant(job, tmp_path / "code-ran")
    monkeypatch.setattr(launch.slurm, "submit_array", lambda executor, calls: jobs)
    monkeypatch.setattr(launch.slurm, "queued", lambda array_id: set())
    monkeypatch.setattr(launch.slurm, "final_states", lambda array_id: {"7_1": "FAILED"})
    monkeypatch.setattr(launch, "SLURM_POLL_S", 0)
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.json").write_text('{"dataset": "mosi"}')
    (done / "report.md").write_text("# report\n")
    sweep = _sweep(tmp_path, executor="slurm")
    sweep._run_slurm([("a", ["train", "--out", str(done)]), ("b", ["train", "--out", str(tmp_path / "none")])], 1)
    cells = sweep.record["cells"]
    assert cells["a"]["status"] == "done" and cells["a"]["seconds"] is None
    assert cells["b"] == {"status": "failed", "error": "ended without a result (Slurm state: FAILED)",
                          "log": str(jobs[1].paths.stderr)}


@pytest.mark.parametrize("damage", ["no report", "not json", "a list", "symlink", "fifo"])
def test_a_cell_is_finished_only_with_committed_readable_results(tmp_path, damage):
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "report.md").write_text("# report\n")
    (tmp_path / "elsewhere.json").write_text('{"dataset": "mosi"}')
    (cell / "results.json").write_text('{"dataset": "mosi"}')
    assert launch.is_finished(str(cell))
    os.unlink(cell / "results.json")
    if damage == "no report":
        os.unlink(cell / "report.md")
        (cell / "results.json").write_text('{"dataset": "mosi"}')
    elif damage == "not json":
        (cell / "results.json").write_text('{"dataset": ')
    elif damage == "a list":
        (cell / "results.json").write_text('[1, 2]')
    elif damage == "symlink":
        os.symlink(tmp_path / "elsewhere.json", cell / "results.json")
    else:
        os.mkfifo(cell / "results.json")
    assert not launch.is_finished(str(cell))


def test_a_failed_cell_error_comes_from_a_bounded_tail_of_its_log(tmp_path):
    log = tmp_path / "x_0_log.err"
    log.write_text("prlf-fast: error: early\n" + "x" * (launch.LOG_TAIL * 4) + "\nTraceback ...\nValueError: late\n")
    assert launch.cell_error(str(log), "none") == "ValueError: late"
    os.unlink(log)
    os.symlink("/etc/passwd", log)
    assert launch.cell_error(str(log), "none") == "none"
