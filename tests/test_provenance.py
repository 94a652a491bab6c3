"""Provenance in config.json, results.json and report.md; ``--threads``; ``--tensorboard``."""
import json
import subprocess
import sys

import pytest
import torch
from helpers import TINY_RUN, assert_clean_error, run_cli

from prlf_fast import provenance

KEYS = {"command", "prlf_fast", "git_commit", "python", "torch", "cuda", "triton", "device", "device_name",
        "threads", "cpu_threads", "malloc", "host", "started"}


@pytest.fixture
def keep_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # apply_threads writes it; monkeypatch restores it
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_train_records_provenance_threads_and_tensorboard(tmp_path, capsys, keep_threads):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--out", out, "--rates", "0.0", "--seeds", "0",
                           "--threads", "1", "--tensorboard")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for p in (config["provenance"], results["provenance"]):
        assert set(p) == KEYS
        assert p["command"].startswith("prlf-fast train --synthetic 48,16,24") and f"--out {out}" in p["command"]
        assert p["threads"] == 1 and p["torch"] == torch.__version__ and p["device"] == "cpu"
        assert p["started"].endswith("Z")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=provenance.__file__.rsplit("/prlf_fast/", 1)[0])
    if head.returncode == 0:  # installed from a checkout
        assert config["provenance"]["git_commit"].split("+")[0] == head.stdout.strip()
    report = (out / "report.md").read_text().splitlines()
    lines = [line for line in report if line.startswith("- provenance: `prlf-fast train")]
    assert len(lines) == 1 and "1 threads" in lines[0] and f"torch {torch.__version__}" in lines[0]

    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/total", "valid/MAE", "lr", "select/score"} <= set(events.Tags()["scalars"])
    mae = events.Scalars("valid/MAE")
    assert [e.step for e in mae] == [h["step"] for h in history]
    assert [e.value for e in mae] == pytest.approx([h["valid"]["MAE"] for h in history])

    # A resumed run keeps the epochs before the resume point in TensorBoard (it rewrites them).
    code, _, err = run_cli(capsys, "train", "--out", out, "--resume", "--tensorboard", "--no-eval")
    assert code == 0, err
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("valid/MAE")] == [h["step"] for h in history]


def test_tensorboard_missing_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--out", out, "--tensorboard")
    assert_clean_error(code, err, "--tensorboard needs the tensorboard package",
                       "pip install 'prlf_fast[tensorboard]'")
    assert not out.exists()


def test_threads_must_be_positive(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--out", tmp_path / "run", "--threads", "0")
    assert_clean_error(code, err, "--threads 0 must be ≥ 1")
