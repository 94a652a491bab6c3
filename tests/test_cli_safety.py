"""Outputs as a careless user or an attacker meets them: one writer per output (an OS lock; a
second writer fails at once), no silent overwrite, no write through a planted symlink, damaged
or mismatched checkpoints, edited config.json files, full disks, bad arguments: every one ends
in one line and exit code 2, with the previous files intact."""
import errno
import json
import math
import os
import pickle
import subprocess
import sys

import pytest
import torch
from helpers import EVAL, RUN, TINY_OPTS, assert_clean_error, copy_run, run_cli
from safetensors import safe_open
from safetensors.torch import save_file

from prlf_fast import PRLF, PRLFConfig
from prlf_fast.cli import main
from prlf_fast.config import TrainConfig
from prlf_fast.data import synthesize
from prlf_fast.io import atomic
from prlf_fast.io.checkpoint import save_checkpoint
from prlf_fast.train.trainer import Trainer

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    assert main(["train", *RUN, "--out", str(out), "--rates", "0.0", "--seeds", "0"]) == 0
    return out


def files(directory):
    return {os.path.relpath(os.path.join(p, f), directory): open(os.path.join(p, f), "rb").read()
            for p, _, fs in os.walk(directory) for f in fs}


def small_pickle(path, seed=3):
    with open(path, "wb") as f:
        pickle.dump(synthesize("mosi", 8, 4, 4, seed=seed), f)
    return path


# -- one writer per output -----------------------------------------------------------------------

# Another process's lock, taken as prlf-fast takes it (without importing it: starts fast).
HOLD = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\nsys.stdin.read()\n")


def hold_lock(path):
    """Another process holding the lock file ``path`` until it is killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_writer_fails_at_once_and_a_crashed_one_leaves_no_lock(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    cache, pkl = tmp_path / "cache", small_pickle(tmp_path / "a.pkl")
    cache.mkdir()
    holders = [hold_lock(run / ".lock"), hold_lock(cache / ".lock"), hold_lock(tmp_path / ".a.pkl.lock")]
    try:
        attempts = [
            ["train", *RUN, "--out", run],
            ["train", "--resume", "--out", run],
            ["eval", "--run", run, *EVAL],
            ["eval", "--run", trained, "--out", run, "--force", *EVAL],
            ["data", "convert", pkl, cache],
            ["data", "synth", "--preset", "mosi", "--out", pkl, "--force"],
        ]
        before = files(run)
        for argv in attempts:
            code, _, err = run_cli(capsys, *argv)
            assert_clean_error(code, err, "being written by another prlf-fast process", f"pid {holders[0].pid}"
                               if argv[0] != "data" else "pid")
        assert files(run) == before and os.listdir(cache) == [".lock"]
    finally:
        for h in holders:
            h.kill()  # as kill -9: the lock file stays behind, the lock goes with the process
            h.wait()
    assert (run / ".lock").exists()
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert code == 0, err
    assert not (run / ".lock").exists()


@pytest.mark.slow  # two processes that import torch: ~6 s on an idle 2-core CPU
def test_two_trainings_started_together_do_not_mix(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prlf_fast.cli", "train", *RUN, "--no-eval", "--out", str(out)]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    err = next(e for c, e in results if c == 2)
    assert ("being written by another prlf-fast process" in err or "already holds a run" in err), err
    seed = json.loads((out / "config.json").read_text())["train"]["seed"]
    winner = next(s for (c, _), s in zip(results, (1, 2)) if c == 0)
    assert seed == winner


# -- no silent overwrite ---------------------------------------------------------------------------

def test_convert_refuses_another_files_cache_without_force(tmp_path, capsys):
    a, b = small_pickle(tmp_path / "a.pkl"), small_pickle(tmp_path / "b.pkl", seed=4)
    cache = tmp_path / "cache"
    assert run_cli(capsys, "data", "convert", a, cache)[0] == 0
    assert run_cli(capsys, "data", "convert", a, cache)[0] == 0  # the same file: refreshed
    before = files(cache)
    code, _, err = run_cli(capsys, "data", "convert", b, cache)
    assert_clean_error(code, err, "holds the cache of another file", "a.pkl", "--force")
    assert files(cache) == before
    assert run_cli(capsys, "data", "convert", b, cache, "--force")[0] == 0
    assert json.loads((cache / "meta.json").read_text())["source"] == str(b)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    code, _, err = run_cli(capsys, "data", "convert", a, tmp_path / "notes")
    assert_clean_error(code, err, "not empty and holds no prlf_fast cache")


def test_synth_refuses_an_existing_file_without_force(tmp_path, capsys):
    out = tmp_path / "s.pkl"
    out.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "data", "synth", "--preset", "mosi", "--out", out, "--n-train", 4,
                           "--n-valid", 2, "--n-test", 2)
    assert_clean_error(code, err, "already exists", "--force")
    assert out.read_bytes() == b"precious"
    assert run_cli(capsys, "data", "synth", "--preset", "mosi", "--out", out, "--n-train", 4,
                   "--n-valid", 2, "--n-test", 2, "--force")[0] == 0
    assert out.read_bytes() != b"precious" and sorted(os.listdir(tmp_path)) == ["s.pkl"]


def test_eval_out_sits_beside_the_run(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    before = files(run)
    beside = tmp_path / "beside"
    code, out, err = run_cli(capsys, "eval", "--run", run, "--out", beside, "--device", "cpu",
                             "--rates", "0.7", "--seeds", "3")
    assert code == 0, err
    assert files(run) == before
    results = json.loads((beside / "results.json").read_text())
    assert [(r["rate"], r["seed"]) for r in results["intra"]["records"]] == [(0.7, 3)]
    assert sorted(os.listdir(beside)) == ["plots", "report.md", "results.json"]
    code, _, err = run_cli(capsys, "eval", "--run", run, "--out", beside, *EVAL)
    assert_clean_error(code, err, "already holds evaluation results", "--force")
    assert run_cli(capsys, "eval", "--run", run, "--out", beside, "--force", *EVAL)[0] == 0


# -- no write through a planted symlink ------------------------------------------------------------

def test_planted_symlinks_are_never_written_through(trained, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    run = tmp_path / "new"
    run.mkdir()
    os.symlink(victim, run / ".write-test")  # the old writability probe truncated this
    os.symlink(victim, run / ".staging")
    code, _, err = run_cli(capsys, "train", *RUN, "--no-eval", "--out", run)
    assert code == 0, err
    synth = tmp_path / "s.pkl"
    os.symlink(victim, tmp_path / "s.pkl.tmp")  # the old synth wrote through this name
    assert run_cli(capsys, "data", "synth", "--preset", "mosi", "--out", synth, "--n-train", 4,
                   "--n-valid", 2, "--n-test", 2)[0] == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    os.symlink(victim, locked / ".lock")
    code, _, err = run_cli(capsys, "train", *RUN, "--out", locked)
    assert_clean_error(code, err, ".lock")
    evaluated = copy_run(trained, tmp_path / "evaluated")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", evaluated / "plots")
    code, _, err = run_cli(capsys, "eval", "--run", evaluated, *EVAL)
    assert_clean_error(code, err, "plots", "not a directory")
    assert victim.read_text() == "do not touch" and os.listdir(tmp_path / "elsewhere") == []


def test_an_output_directory_named_through_the_users_own_symlink_is_used(tmp_path, capsys):
    (tmp_path / "scratch").mkdir()
    os.symlink(tmp_path / "scratch", tmp_path / "run")
    code, _, err = run_cli(capsys, "train", *RUN, "--no-eval", "--out", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "scratch" / "last.safetensors").is_file()


# -- damaged and mismatched checkpoints -------------------------------------------------------------

def test_flipped_bytes_in_a_checkpoint_are_refused(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    results = (run / "results.json").read_bytes()
    data = bytearray((run / "best.safetensors").read_bytes())
    header = int.from_bytes(data[:8], "little")
    start = 8 + header + (len(data) - 8 - header) // 2
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    (run / "best.safetensors").write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "best.safetensors", "damaged", "SHA-256")
    assert (run / "results.json").read_bytes() == results


def test_a_checkpoint_of_another_format_is_refused(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    with safe_open(str(run / "best.safetensors"), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "sha256"}
        meta["format"] = "prlf_fast-checkpoint-1"  # a format without the metadata digest
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(run / "best.safetensors"), metadata=meta)
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "best.safetensors", "format 'prlf_fast-checkpoint-1'", "prlf_fast-checkpoint-2")


def test_a_current_checkpoint_without_its_checksum_is_refused(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    with safe_open(str(run / "best.safetensors"), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(run / "best.safetensors"), metadata=meta)
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "best.safetensors", "SHA-256")


def test_checkpoint_tensors_of_another_config_are_one_line(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    cfg = PRLFConfig.from_dict(json.loads((run / "config.json").read_text())["model"])
    bigger = PRLF(PRLFConfig.from_dict({**cfg.to_dict(), "ffn_dim": 48}))
    save_checkpoint(str(run / "best.safetensors"), bigger, cfg)  # metadata says: the run's config
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "best.safetensors", "another shape", "(48, 16) (checkpoint) vs (32, 16)")


# -- config.json edited by hand ---------------------------------------------------------------------

def _edit(config, case):
    if case == "null":
        return None
    if case == "no-eval":
        del config["eval"]
    elif case == "eval-batch-size":
        config["train"]["eval_batch_size"] = "x"
    elif case == "rates-str":
        config["eval"]["rates"] = ["a"]
    elif case == "rates-empty":
        config["eval"]["rates"] = []
    elif case == "synthetic-no-seed":
        del config["data"]["synthetic"]["seed"]
    elif case == "data-int":
        config["data"] = 5
    elif case == "metric":
        config["train"]["select_metric"] = "Accuracy"
    elif case == "unknown-section":
        config["extra"] = {}
    elif case == "model-type":
        config["model"]["d_model"] = "big"
    return config


@pytest.mark.parametrize("case, fragments", [
    ("null", ["expected a JSON object", "found NoneType"]),
    ("no-eval", ["eval: missing section"]),
    ("eval-batch-size", ["train:", "eval_batch_size='x'", "expected int"]),
    ("rates-str", ["eval.rates", "['a']"]),
    ("rates-empty", ["eval.rates", "non-empty", "[]"]),
    ("synthetic-no-seed", ["data.synthetic", "seed"]),
    ("data-int", ["data: expected an object, found 5"]),
    ("metric", ["train.select_metric 'Accuracy' is not a mosi metric"]),
    ("unknown-section", ["extra: unknown section"]),
    ("model-type", ["model:", "d_model='big'"]),
])
def test_an_edited_config_is_one_line_naming_the_field(trained, tmp_path, capsys, case, fragments):
    run = copy_run(trained, tmp_path / "run")
    config = _edit(json.loads((run / "config.json").read_text()), case)
    (run / "config.json").write_text(json.dumps(config))
    before = files(run)
    for argv in (["eval", "--run", run, *EVAL], ["train", "--resume", "--out", run]):
        code, _, err = run_cli(capsys, *argv)
        assert_clean_error(code, err, "config.json", *fragments)
    assert files(run) == before


def test_provenance_is_allowed(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["provenance"] = {"git": "abc", "host": {"name": "x"}}
    (run / "config.json").write_text(json.dumps(config))
    assert run_cli(capsys, "eval", "--run", run, *EVAL)[0] == 0


# -- OS-level write failures ------------------------------------------------------------------------

def test_a_full_disk_while_writing_results_is_one_line_and_keeps_the_old_files(trained, tmp_path, capsys,
                                                                               monkeypatch):
    run = copy_run(trained, tmp_path / "run")
    before = files(run)
    replace = atomic._replace

    def full(src, dst):
        if os.path.basename(dst) == "report.md":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    monkeypatch.setattr(atomic, "_replace", full)
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "cannot write", str(run / "report.md"), "No space left on device",
                       "previous files are unchanged")
    assert files(run) == before


# -- settings checked before anything is written ----------------------------------------------------

def test_triton_backend_on_a_cpu_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "train", *RUN, "--no-eval", "--backend", "triton", "--out", out)
    assert_clean_error(code, err, "--backend triton", "TRITON_INTERPRET=1")
    assert not out.exists()
    assert run_cli(capsys, "train", *RUN, "--no-eval", "--out", out)[0] == 0


@pytest.mark.parametrize("data", ["nope.pkl", "junk.pkl"])
def test_a_data_error_leaves_no_output_directory(tmp_path, capsys, data):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    out = tmp_path / "parent" / "r"
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--data", tmp_path / data, "--out", out)
    assert_clean_error(code, err, data)
    assert not out.exists()
    code, _, err = run_cli(capsys, "data", "convert", tmp_path / data, tmp_path / "cache")
    assert_clean_error(code, err, data)
    assert not (tmp_path / "cache").exists()


def test_modality_dropout_one_says_why(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *RUN, "--modality-dropout", "1.0", "--out", tmp_path / "r")
    assert_clean_error(code, err, "modality_dropout=1.0", "[0, 1)", "keep one modality")


@pytest.mark.parametrize("argv", [
    ["train", "--rates", "1.5"],
    ["train", "--epochs", "many"],
    ["eval"],
    ["data", "convert"],
    ["data", "synth", "--preset", "imdb", "--out", "x.pkl"],
    ["nonsense"],
])
def test_argument_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("prlf-fast: error: "), err
    assert "--help)" in err and "usage" not in err


# -- a NaN validation score does not freeze selection -----------------------------------------------

def test_better_never_prefers_nan():
    corr, mae = TrainConfig(select_metric="Corr"), TrainConfig()
    nan = float("nan")
    assert corr.better(nan, None) and corr.better(0.1, nan) and corr.better(-0.5, nan)
    assert not corr.better(nan, 0.1) and not corr.better(nan, nan) and not mae.better(nan, 1.0)
    assert mae.better(1.0, nan) and mae.better(0.5, 1.0) and not mae.better(1.0, 0.5)


def test_nan_validation_scores_warn_once_and_never_win(tmp_path, capsys, monkeypatch):
    validate, scores = Trainer.validate, iter([float("nan"), 0.2, float("nan"), 0.1])

    def fake(self):
        metrics = validate(self)
        return {**metrics, "Corr": next(scores)}

    monkeypatch.setattr(Trainer, "validate", fake)
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "train", *RUN, "--epochs", "4", "--select-metric", "Corr", "--no-eval",
                           "--out", out)
    assert code == 0, err
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["select"]["best"] for h in history] == [True, True, False, False]
    assert math.isnan(history[0]["select"]["score"])
    log = (out / "train.log").read_text()
    assert log.count("validation Corr is NaN") == 1
    with safe_open(str(out / "best.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["trainer"])["epoch"] == 2
    assert torch.isfinite(torch.tensor(history[1]["select"]["score"]))
