"""``prlf-fast sweep --executor slurm`` with fake Slurm commands: the GPU request follows the
device, sbatch/squeue failures are one line, tasks that end without a result on a cluster
without accounting give one note."""
import os

import pytest
from test_cli_train_eval import assert_clean_error, run_cli

from prlf_fast.study import launch


def _gpu_request(script: str) -> bool:
    return any(line.startswith(("#SBATCH --gpu", "#SBATCH --gres")) for line in script.splitlines())


def _assert_one_line_error(code, err, fragment):
    """Exit 2 and the error as the last line (after the sweep's progress lines), no traceback."""
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("prlf-fast: error: ") and fragment in last and "Traceback" not in err, err


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
    argv, threads = DelayedSubmission.load(sweep / "submitit" / "4242_0_submitted.pkl").args
    return script, argv[argv.index("--device") + 1], threads


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
