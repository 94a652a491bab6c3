"""What survives a kill: a run killed at ANY change to its directory (every rename and removal
the product makes) and then resumed ends with the files of an uninterrupted run, bit for bit
(timings aside); an evaluation killed at any point leaves the previous results whole; temporary
and staged files of the killed process are cleaned on the next start."""
import json
import os
import shutil

import pytest
from helpers import TINY_MODEL, Killed, kill_at
from safetensors import safe_open

from prlf_fast.cli import main
from prlf_fast.io import atomic
from prlf_fast.io.rundir import RunDir

# Two epochs, so a kill can interrupt epoch 2's commit while epoch 1's stands. The evaluation's
# own commit is killed at every step in test_killed_evaluation_leaves_the_previous_results_whole.
ARGS = ["train", "--synthetic", "16,8,8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
        "--no-eval", *TINY_MODEL]
EVAL = ["--device", "cpu", "--rates", "0.0", "--seeds", "0"]


def snapshot(run):
    """Every file of a run, timings and provenance (start times) removed: metrics without seconds,
    checkpoints as metadata plus tensor bytes, config and results without provenance (results
    also without eval_seconds), the report without its time and provenance lines."""
    out = {}
    for parent, _, files in os.walk(run):
        for name in files:
            path = os.path.join(parent, name)
            rel = os.path.relpath(path, run)
            if name == "train.log":
                continue
            if name.endswith(".safetensors"):
                with safe_open(path, framework="pt") as f:
                    out[rel] = (f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()})
            elif name == "metrics.jsonl":
                out[rel] = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                            for line in open(path).read().splitlines()]
            elif name in ("results.json", "config.json"):
                out[rel] = {k: v for k, v in json.load(open(path)).items() if k not in ("eval_seconds", "provenance")}
            elif name == "report.md":
                out[rel] = [line for line in open(path).read().splitlines()
                            if "evaluation time" not in line and "provenance" not in line]
            else:
                out[rel] = open(path, "rb").read()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("commit") / "straight"
    with pytest.MonkeyPatch.context() as m:
        state = kill_at(m, 0)
        assert main([*ARGS, "--out", str(run)]) == 0
    return run, state["n"]


def test_uninterrupted_run_leaves_no_staging(reference):
    run, boundaries = reference
    assert boundaries > 20
    assert sorted(os.listdir(run)) == ["best.safetensors", "config.json", "last.safetensors",
                                      "metrics.jsonl", "train.log"]


@pytest.mark.slow  # ~25 kills and resumes of a tiny run: ~40 s on an idle 2-core CPU
def test_resume_after_a_kill_at_every_write_matches_the_uninterrupted_run(reference, tmp_path, capsys):
    straight, boundaries = reference
    expected = snapshot(straight)
    for k in range(1, boundaries + 1):
        run = tmp_path / f"kill{k}"
        with pytest.MonkeyPatch.context() as m:
            kill_at(m, k)
            with pytest.raises(Killed):
                main([*ARGS, "--out", str(run)])
        if (run / "config.json").exists():
            assert main(["train", "--resume", "--no-eval", "--out", str(run)]) == 0, k
        else:  # killed before the run existed: start it again
            assert main([*ARGS, "--out", str(run)]) == 0, k
        capsys.readouterr()
        leftovers = [os.path.join(p, f) for p, dirs, files in os.walk(run) for f in files + dirs
                     if f.startswith(".")]
        assert leftovers == [], (k, leftovers)
        assert snapshot(run) == expected, k


@pytest.mark.slow  # ~20 killed evaluations of a tiny run: ~40 s on an idle 2-core CPU
def test_killed_evaluation_leaves_the_previous_results_whole(reference, tmp_path, capsys):
    straight, _ = reference
    run = tmp_path / "run"

    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "best.safetensors", "metrics.jsonl"):
        (base / name).write_bytes((straight / name).read_bytes())
    assert main(["eval", "--run", str(base), *EVAL]) == 0

    def reset():
        atomic.remove(str(run))
        shutil.copytree(base, run)

    reset()
    before = snapshot(run)
    argv = ["eval", "--run", str(run), "--device", "cpu", "--rates", "0.3", "--seeds", "4"]
    with pytest.MonkeyPatch.context() as m:
        state = kill_at(m, 0)
        assert main(argv) == 0
    after = snapshot(run)
    assert after["results.json"] != before["results.json"]
    for k in range(1, state["n"] + 1):
        reset()
        with pytest.MonkeyPatch.context() as m:
            kill_at(m, k)
            with pytest.raises(Killed):
                main(argv)
        committed = (run / ".commit.json").exists()
        if not committed:  # without a journal the visible files are all old or all new
            visible = {n: v for n, v in snapshot(run).items() if not any(
                part.startswith(".") for part in n.split(os.sep))}
            assert visible in (before, after), k
            committed = visible == after
        # The next reader or writer of the run finishes or discards the interrupted commit and
        # removes the killed process's temporary files.
        RunDir(str(run)).read_config()
        assert snapshot(run) == (after if committed else before), k
        assert not [n for n in os.listdir(run) if n.startswith(".")], k
    capsys.readouterr()


def test_recover_removes_strays_and_uncommitted_staging(tmp_path):
    (tmp_path / "plots").mkdir()
    strays = [tmp_path / ".metrics.jsonl.abcd1234.tmp", tmp_path / "plots" / ".a.png.x_y9ABCD.tmp"]
    for p in strays:
        p.write_text("half")
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "last.safetensors").write_text("uncommitted")
    (tmp_path / "last.safetensors").write_text("committed")
    (tmp_path / "keep.tmp").write_text("not ours")
    atomic.recover(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["keep.tmp", "last.safetensors", "plots"]
    assert os.listdir(tmp_path / "plots") == []
    assert (tmp_path / "last.safetensors").read_text() == "committed"


def test_recover_finishes_a_journaled_commit(tmp_path):
    with pytest.MonkeyPatch.context() as m:
        # 1 clear staging, 2-3 write a and b there, 4 journal, 5 move a: killed before moving b
        kill_at(m, 6)
        with pytest.raises(Killed):
            with atomic.Commit(str(tmp_path)) as c:
                atomic.write_text(c.file("a.txt"), "new a")
                atomic.write_text(c.file("sub/b.txt"), "new b")
    assert (tmp_path / "a.txt").read_text() == "new a" and not (tmp_path / "sub" / "b.txt").exists()
    atomic.recover(str(tmp_path))
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "sub" / "b.txt").read_text() == "new b"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "sub"]


@pytest.mark.parametrize("journal", ['{"files": ["../outside.txt"]}', '{"files": ["/etc/x"]}', "[1]", "{not json"])
def test_a_journal_not_written_by_prlf_fast_is_discarded(tmp_path, journal):
    root = tmp_path / "run"
    (root / ".staging").mkdir(parents=True)
    (root / ".staging" / "x").write_text("planted")
    (root / ".commit.json").write_text(journal)
    atomic.recover(str(root))
    assert os.listdir(root) == [] and sorted(os.listdir(tmp_path)) == ["run"]
