"""``prlf-fast sweep``: a 2 seeds × 2 variants sweep on a tiny synthetic set through submitit's
local executor, killed mid-way and completed by running the same command again; summary.json
against the cells' results.json; the grid, its checks and the statistics (Slurm:
test_sweep_slurm.py)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from scipy import stats
from helpers import TINY_MODEL, assert_clean_error, run_cli

from prlf_fast.study import aggregate, launch
from prlf_fast.study.spec import Dataset, SweepSpec, parse_variant
from prlf_fast.train.spec import RunSpec

GRID = ["--seeds", "1", "2", "--variant", "full:", "--variant", "noalign:lambda_align=0",
        "--synthetic", "32,16,16", "--train", "epochs=2", "--train", "batch_size=16",
        *TINY_MODEL, "--rates", "0.0", "0.5", "--mask-seeds", "0", "--device", "cpu", "--parallel", "2"]
CELLS = [f"mosi/{v}/seed{s}" for v in ("full", "noalign") for s in (1, 2)]


def _cell(sweep, key):
    return sweep / "cells" / key


def _state(sweep, key):
    """finished / started (holds a run) / absent."""
    d = _cell(sweep, key)
    if launch.is_finished(str(d)):
        return "finished"
    return "started" if (d / "config.json").exists() else "absent"


@pytest.mark.slow
def test_sweep_killed_midway_completes_on_rerun(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--out", str(sweep), *GRID]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prlf_fast.cli", *argv], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill the sweep and its cells (a crash) once a cell is finished and another one started
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            states = [_state(sweep, k) for k in CELLS]
            if "finished" in states and "started" in states:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {k: _state(sweep, k) for k in CELLS}
    assert "finished" in before.values() and "finished" != before[CELLS[-1]], before
    finished_mtime = {k: (_cell(sweep, k) / "results.json").stat().st_mtime_ns
                      for k, s in before.items() if s == "finished"}

    code, out, err = run_cli(capsys, *argv)  # the same command again
    assert code == 0, err
    n_finished = sum(s == "finished" for s in before.values())
    assert f"4 cells, {n_finished} finished, {4 - n_finished} to run" in err
    assert all(_state(sweep, k) == "finished" for k in CELLS)
    for k, mtime in finished_mtime.items():  # skipped, not redone
        assert (_cell(sweep, k) / "results.json").stat().st_mtime_ns == mtime
    for k, s in before.items():
        log = (_cell(sweep, k) / "train.log").read_text()
        assert ("--resume" in json.loads((_cell(sweep, k) / "results.json").read_text())["provenance"]["command"]
                ) == (s == "started")
        if s == "started":  # resumed from its checkpoint, or restarted before its first one
            assert "resumed from last.safetensors" in log or "no last.safetensors yet" in log
    state = json.loads((sweep / "sweep.json").read_text())
    assert len(state["invocations"]) == 2 and state["invocations"][1]["threads_per_cell"] >= 1
    assert all(c["status"] in ("done", "skipped (finished)") for c in state["invocations"][1]["cells"].values())

    # summary.json: mean and sample std over seeds of the cells' results.json
    summary = json.loads((sweep / "summary.json").read_text())
    variants = summary["datasets"]["mosi"]["variants"]
    for v in ("full", "noalign"):
        cells = [json.loads((_cell(sweep, f"mosi/{v}/seed{s}") / "results.json").read_text()) for s in (1, 2)]
        for entry, get in (("intra/average", lambda r: r["intra"]["average"]["mean"]),
                           ("intra/0.5", lambda r: r["intra"]["per_rate"][1]["mean"]),
                           ("inter/text-vision", lambda r: r["inter"]["records"][4]["metrics"]),
                           ("inter/complete", lambda r: r["inter"]["records"][6]["metrics"]),
                           ("inter/average", lambda r: r["inter"]["average"]["mean"])):
            for metric in ("Has0_acc_2", "Mult_acc_7", "MAE", "Corr"):
                values = [get(r)[metric] for r in cells]
                assert variants[v][entry]["mean"][metric] == pytest.approx(np.mean(values), abs=1e-12)
                assert variants[v][entry]["std"][metric] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    comp = summary["datasets"]["mosi"]["comparisons"]["noalign"]["intra/average"]["MAE"]
    full, other = (variants[v]["intra/average"]["values"]["MAE"] for v in ("full", "noalign"))
    assert comp["diff"] == pytest.approx(np.mean(np.subtract(other, full)))
    report = (sweep / "report.md").read_text()
    assert "| full | 2 |" in report and "Paired differences from `full`" in report
    assert (sweep / "plots" / "mosi_intra.png").stat().st_size > 0

    os.unlink(sweep / "report.md")
    code, out, _ = run_cli(capsys, "sweep", "--report", str(sweep))
    assert code == 0 and (sweep / "report.md").read_text() == report


def test_grid_from_options_and_yaml(tmp_path):
    assert parse_variant("nofisher:reliability=confidence,gate_streams=false") == (
        "nofisher", {"reliability": "confidence", "gate_streams": False})
    assert parse_variant("full:") == parse_variant("full") == ("full", {})
    d = Dataset.parse("varying=mosi:data/v.pkl")
    assert (d.name, d.preset, d.data) == ("varying", "mosi", os.path.abspath("data/v.pkl"))
    assert Dataset.parse("mosei:/x/MOSEI.pkl").name == "MOSEI" and Dataset.parse("sims").data is None
    (tmp_path / "v.pkl").write_bytes(b"")
    (tmp_path / "s.yaml").write_text(
        "seeds: [1, 2, 3]\nvariants:\n  full:\n  fixed_text: {anchor: text}\n"
        "datasets:\n  synth: {preset: mosi}\n  varying: {preset: mosi, data: v.pkl}\n"
        "train: {epochs: 4, amp: false}\nset: {d_model: 32}\nsynthetic: [40, 10, 10]\n")
    spec = SweepSpec.from_args(tmp_path / "s.yaml", seeds=[5], train=["lr=0.001"])
    assert spec.seeds == [5] and list(spec.variants) == ["full", "fixed_text"] and spec.reference == "full"
    assert spec.train == {"epochs": 4, "amp": False, "lr": 0.001}
    synth, varying = spec.datasets
    assert synth.synthetic == [40, 10, 10] and varying.data == str(tmp_path / "v.pkl")
    run = spec.run_spec(str(tmp_path / "sw"), varying, "fixed_text", 5)
    assert (run.dataset, run.train["seed"], run.synthetic) == ("mosi", 5, None)
    assert launch.cell_dir(str(tmp_path / "sw"), "varying", "fixed_text", 5) == \
        str(tmp_path / "sw" / "cells" / "varying" / "fixed_text" / "seed5")
    assert run.data == str(tmp_path / "sw" / "data" / "varying")  # the converted cache
    assert run.train == {"epochs": 4, "amp": False, "lr": 0.001, "seed": 5}
    assert run.model == {"d_model": 32, "anchor": "text"}
    argv = run.argv()
    assert "--no-amp" in argv and ["--epochs", "4"] == argv[argv.index("--epochs"):argv.index("--epochs") + 2]
    assert "d_model=32" in argv and "anchor=text" in argv
    assert spec.run_spec(str(tmp_path / "sw"), synth, "full", 5).synthetic == (40, 10, 10)
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_bad_grids_fail_before_anything_is_written(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--variant", "bad:no_such_field=1", "--device", "cpu")
    assert_clean_error(code, err, "variant bad", "no_such_field")
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--train", "seed=3")
    assert_clean_error(code, err, "unknown training setting(s) seed")
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--variant", "a/b:")
    assert_clean_error(code, err, "variant name 'a/b'")
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--dataset", "mosi:/no/such.pkl")
    assert_clean_error(code, err, "/no/such.pkl")
    (tmp_path / "typo.yaml").write_text("seed: [1, 2]\n")
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, "--config", tmp_path / "typo.yaml")
    assert_clean_error(code, err, "unknown key(s) seed")
    assert not sweep.exists()
    spec = SweepSpec.from_args(seeds=[1], train=["epochs=2"])
    with pytest.raises(Exception, match="other settings .*train"):
        SweepSpec.from_args(seeds=[1, 2], train=["epochs=3"]).check_compatible(spec, "S")
    SweepSpec.from_args(seeds=[1, 2], train=["epochs=2"], variants=["x:d_model=8"]).check_compatible(spec, "S")
    # A smaller grid on a saved sweep continues the whole sweep: nothing saved is dropped.
    grown = SweepSpec.from_args(seeds=[2], train=["epochs=2"], variants=["x:d_model=8"]).grown_from(spec)
    assert grown.seeds == [1, 2] and list(grown.variants) == ["full", "x"]


def test_local_slots_split_gpus_and_cores(monkeypatch):
    import torch

    assert launch._local_slots(launch.Runtime(device="cpu", parallel=3)) == ([None] * 3, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert launch._local_slots(launch.Runtime(per_gpu=2)) == ([0, 1, 0, 1], "cuda")
    assert launch._local_slots(launch.Runtime(parallel=3, per_gpu=2)) == ([0, 1, 0], "cuda")
    with pytest.raises(Exception, match="more than 2 GPU"):
        launch._local_slots(launch.Runtime(parallel=3))


def test_paired_comparison_matches_scipy():
    a, b = [0.81, 0.79, 0.84, 0.80], [0.78, 0.78, 0.80, 0.79]
    c = aggregate.paired(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * np.std(d, ddof=1) / 2
    assert c["n"] == 4 and c["diff"] == pytest.approx(d.mean())
    assert c["ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert c["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert aggregate.paired([1.0], [0.5]) == {"n": 1, "diff": 0.5, "ci95": None, "p": None}
    assert aggregate.paired([1.0, 2.0], [0.5, 1.5])["p"] is None  # constant difference: no test


def test_sigterm_stops_the_running_local_cells(tmp_path, monkeypatch):
    class Job:
        cancelled = False

        def done(self):
            return self.cancelled

    monkeypatch.setattr(launch, "_signal_cell", lambda job, signum: setattr(job, "cancelled", True))

    class Executor:
        def __init__(self):
            self.jobs = []

        def update_parameters(self, **kwargs):
            pass

        def submit(self, fn, *args):
            self.jobs.append(Job())
            return self.jobs[-1]

    sweep = launch.Sweep(SweepSpec.from_args(), str(tmp_path), launch.Runtime(device="cpu"))
    sweep.executor, sweep.record = Executor(), {"cells": {}}
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        sweep._run_local([launch.Cell(k, str(tmp_path / k), RunSpec(), "cpu", "fast", False) for k in "abc"],
                         [None, None], 1)
    timer.join()
    assert len(sweep.executor.jobs) == 2 and all(j.cancelled for j in sweep.executor.jobs)
    assert signal.getsignal(signal.SIGTERM) is before


def test_pickles_are_converted_to_the_cache_once(tmp_path):
    import torch

    from prlf_fast.data import load_mmsa, synthesize
    from prlf_fast.data.synthetic import write_pickle

    pkl = tmp_path / "v.pkl"
    write_pickle(synthesize("mosi", 6, 3, 3, seed=1, reliability="varying"), pkl)
    spec = SweepSpec.from_args(datasets=[f"v=mosi:{pkl}", "mosi"])
    messages = []
    for _ in range(2):
        launch.prepare_data(spec, str(tmp_path / "sw"), messages.append)
    assert len(messages) == 1 and "converted" in messages[0]  # once; the synthetic set needs none
    cache = tmp_path / "sw" / "data" / "v"
    with pytest.warns(UserWarning):  # the pickle's −inf audio values, reported when loading it
        from_pickle = load_mmsa(pkl)
    assert torch.equal(load_mmsa(cache)["test"]["audio"], from_pickle["test"]["audio"])
    assert sorted(os.listdir(tmp_path / "sw" / "data")) == ["v"]  # no temporary left behind
