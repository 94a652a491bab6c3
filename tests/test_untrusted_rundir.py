"""Run and cache directories written by someone else: planted symlinks, special files and forged
commit journals can neither move, copy nor expose a file outside the directory, nor hang or
exhaust memory; each ends in one line (exit 2) or is ignored. Fails on the code before io.files."""
import json
import os
import stat

import pytest
from helpers import EVAL, RUN, assert_clean_error, copy_run, run_cli

from prlf_fast.cli import main
from prlf_fast.data import cache
from prlf_fast.errors import PRLFError
from prlf_fast.io import atomic, files
from prlf_fast.train.predict import load_run

NAMES = ("config.json", "best.safetensors", "last.safetensors", "metrics.jsonl", "train.log")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrusted") / "run"
    assert main(["train", *RUN, "--out", str(out), "--rates", "0.0", "--seeds", "0"]) == 0
    return out


def plant_commit(run, victim, name="best.safetensors"):
    """A journal naming ``name`` and a ``.staging`` that is a symlink to the victim's folder."""
    (run / ".commit.json").write_text(json.dumps({"files": [name]}))
    os.symlink(victim.parent, run / ".staging")


@pytest.mark.parametrize("command", ["load_run", "eval", "predict"])
def test_a_planted_journal_through_a_symlinked_staging_moves_nothing(trained, tmp_path, capsys, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "best.safetensors"
    victim.write_text("the victim's file")
    run = copy_run(trained, tmp_path / "run", NAMES)
    best = (run / "best.safetensors").read_bytes()
    plant_commit(run, victim)
    if command == "load_run":
        load_run(run, device="cpu")
    elif command == "eval":
        assert run_cli(capsys, "eval", "--run", run, *EVAL)[0] == 0
    else:
        assert run_cli(capsys, "predict", "--run", run, "--out", tmp_path / "p.csv", "--device", "cpu")[0] == 0
    assert victim.read_text() == "the victim's file"
    assert (run / "best.safetensors").read_bytes() == best
    assert not os.path.lexists(run / ".staging") and not os.path.lexists(run / ".commit.json")


def test_a_journal_naming_a_path_through_a_symlinked_subfolder_is_discarded(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / ".staging" / "plots").mkdir(parents=True)
    outside.mkdir()
    (root / ".staging" / "plots" / "a.png").write_text("staged")
    os.symlink(outside, root / "plots")
    (root / ".commit.json").write_text(json.dumps({"files": ["plots/a.png"]}))
    atomic.recover(str(root))
    assert os.listdir(outside) == [] and not os.path.lexists(root / ".staging")


def test_a_plain_journal_is_still_finished(tmp_path):
    root = tmp_path / "root"
    (root / ".staging").mkdir(parents=True)
    (root / ".staging" / "a.txt").write_text("new")
    (root / ".commit.json").write_text(json.dumps({"files": ["a.txt"]}))
    atomic.recover(str(root))
    assert (root / "a.txt").read_text() == "new"


def secret(tmp_path):
    path = tmp_path / "secret"
    path.write_text("private key")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_train_log_symlink_to_a_private_file_is_not_copied(trained, tmp_path, capsys, command):
    run = copy_run(trained, tmp_path / "run", NAMES[:-1])
    os.symlink(secret(tmp_path), run / "train.log")
    if command == "eval":
        code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    else:
        code, _, err = run_cli(capsys, "train", "--resume", "--out", run, "--epochs", "1", "--device", "cpu",
                               "--no-eval")
    assert_clean_error(code, err, "train.log", "symlink")
    assert os.path.islink(run / "train.log")
    assert "private key" not in "".join(p.read_text(errors="replace") for p in run.iterdir()
                                        if p.is_file() and not p.is_symlink() and p.suffix != ".safetensors")


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge"])
def test_metrics_that_is_a_special_or_huge_file_is_one_line(trained, tmp_path, capsys, kind):
    run = copy_run(trained, tmp_path / "run", NAMES)
    (run / "metrics.jsonl").unlink()
    if kind == "dev_zero":
        os.symlink("/dev/zero", run / "metrics.jsonl")
    elif kind == "fifo":
        os.mkfifo(run / "metrics.jsonl")
    else:
        with open(run / "metrics.jsonl", "wb") as f:
            f.truncate(files.TEXT_LIMIT + 1)  # sparse: no disk used
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "metrics.jsonl")


def test_config_json_that_is_a_fifo_is_one_line(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run", NAMES[1:])
    os.mkfifo(run / "config.json")
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "config.json", "not a regular file")


def cache_dir(tmp_path):
    pkl = tmp_path / "d.pkl"
    assert main(["data", "synth", "--preset", "mosi", "--out", str(pkl), "--n-train", "4",
                 "--n-valid", "2", "--n-test", "2"]) == 0
    out = tmp_path / "cache"
    assert main(["data", "convert", str(pkl), str(out)]) == 0
    return out


@pytest.mark.parametrize("target", ["meta", "texts", "split"])
def test_cache_files_that_are_special_files_are_one_line(tmp_path, target):
    out = cache_dir(tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    name = {"meta": "meta.json", "texts": meta.get("texts"), "split": meta["files"]["train"]}[target]
    if name is None:
        pytest.skip("this synthetic pickle has no ids")
    (out / name).unlink()
    os.symlink("/dev/zero", out / name)
    with pytest.raises(PRLFError, match=name.replace(".", r"\.")):
        cache.read_texts(str(out)) if target == "texts" else cache.read_cache(str(out))


def test_open_regular_refuses_links_fifos_and_names_with_separators(tmp_path):
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "f", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    assert files.read_text(str(tmp_path), "f") == "x"
    for name, why in [("link", "symlink"), ("fifo", "not a regular file"), ("../f", "plain file name")]:
        with pytest.raises(files.ReadError, match=why):
            files.read_bytes(str(tmp_path), name)
    with pytest.raises(files.ReadError, match="more than"):
        files.read_bytes(str(tmp_path), "f", limit=0)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
