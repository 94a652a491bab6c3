"""An interrupted run continues with ``--resume`` from the step it saved and ends exactly where an
uninterrupted run ends: same parameters, optimizer state and metrics records."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from prlf_fast.cli import main
from prlf_fast.train.trainer import Trainer
from helpers import TINY_MODEL

# Dropout and the training protocol stay on, so RNG and mask-generator state must be restored.
ARGS = ["train", "--synthetic", "40,12,12", "--epochs", "3", "--batch-size", "8", "--device", "cpu",
        "--no-eval", *TINY_MODEL]


def interrupt_at(monkeypatch, step):
    """Make the trainer receive a stop request (as from Ctrl-C) right after global step ``step``."""
    original = Trainer._step

    def stepping(self, batch, global_size):
        out = original(self, batch, global_size)
        if self.state["step"] + 1 == step:
            self.request_stop()
        return out

    monkeypatch.setattr(Trainer, "_step", stepping)


def records(run):
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("seconds")
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("resume") / "straight"
    assert main([*ARGS, "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("stop_step", [7, 10])  # mid-epoch (epoch 2, batch 2) and at an epoch end
def test_resume_matches_uninterrupted_run(reference, tmp_path, monkeypatch, capsys, stop_step):
    run = tmp_path / "interrupted"
    with monkeypatch.context() as m:
        interrupt_at(m, stop_step)
        assert main([*ARGS, "--out", str(run)]) == 130
    saved = json.loads(load_meta(run / "last.safetensors")["trainer"])
    assert saved["step"] == stop_step
    assert "continue with --resume" in (run / "train.log").read_text()

    assert main(["train", "--resume", "--out", str(run)]) == 0
    log = (run / "train.log").read_text()
    assert f"step {stop_step}" in log.split("resumed from")[1].splitlines()[0]
    assert records(run) == records(reference)
    a, b = load_file(str(run / "last.safetensors")), load_file(str(reference / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def load_meta(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_resume_refuses_contradicting_options(reference, capsys):
    code = main(["train", "--resume", "--out", str(reference), "--epochs", "5"])
    err = capsys.readouterr().err
    assert code == 2 and "--epochs 5 (run has 3)" in err and "Traceback" not in err


def test_resume_of_a_finished_run_changes_nothing(reference):
    before = records(reference)
    assert main(["train", "--resume", "--no-eval", "--out", str(reference)]) == 0
    assert records(reference) == before


def test_resume_before_the_first_checkpoint_starts_over(tmp_path):
    run = tmp_path / "early"
    assert main([*ARGS, "--epochs", "1", "--out", str(run)]) == 0
    (run / "last.safetensors").unlink()  # as if killed before the first epoch ended
    (run / "metrics.jsonl").unlink()
    assert main(["train", "--resume", "--out", str(run)]) == 0
    assert "starting from the beginning" in (run / "train.log").read_text()
    assert [r["epoch"] for r in records(run)] == [1]
