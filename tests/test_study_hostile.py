"""A sweep directory someone else wrote, and signals: nothing of submitit's is read back (a
planted result pickle runs no code), ``sweep.json`` and the sweep YAML are schema-checked with
one-line errors, the outputs are one commit, ``--report`` needs no submitit, SIGTERM stops the
cells with a checkpoint, and variants may carry training settings."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
from submitit.local.local import LocalJob
from helpers import TINY_MODEL, assert_clean_error, run_cli

from prlf_fast.metrics import metric_names
from prlf_fast.study import launch
from prlf_fast.study.spec import SweepSpec
from prlf_fast.train.spec import RunSpec

TINY = ["--seeds", "1", "--synthetic", "32,16,16", "--train", "epochs=1", "--train", "batch_size=16", *TINY_MODEL,
        "--rates", "0.0", "0.5", "--mask-seeds", "0", "--device", "cpu"]


def _todo(key: str, out) -> launch.Cell:
    return launch.Cell(key, str(out), RunSpec(), "cpu", "fast", False)


def _results(dataset="mosi") -> dict:
    """The smallest results.json the aggregation accepts."""
    m = {n: 0.5 for n in metric_names(dataset)}
    return {"dataset": dataset, "intra": {"average": {"mean": m}, "per_rate": [{"rate": 0.0, "mean": m}]},
            "inter": {"average": {"mean": m}, "records": [{"config": "complete", "metrics": m}]}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-cell sweep (run once per module; tests work on copies)."""
    sweep = tmp_path_factory.mktemp("finished") / "sweep"
    from prlf_fast.cli import main

    assert main(["sweep", "--out", str(sweep), *TINY]) == 0
    return sweep


@pytest.fixture
def sweep_copy(finished, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(finished, copy, symlinks=True)
    state = json.loads((copy / "sweep.json").read_text())
    for d in state["spec"]["datasets"]:  # nothing in it names the original directory
        assert str(finished) not in json.dumps(d)
    return copy


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
    sweep._run_local([_todo("mosi/full/seed1", tmp_path / "cell")], [None], 1)
    assert not marker.exists()
    assert sweep.record["cells"]["mosi/full/seed1"]["status"] == "failed"
    assert sweep.record["cells"]["mosi/full/seed1"]["error"] == "the cell's own error"


def test_a_slurm_cell_is_done_by_its_directory_not_by_a_result_pickle(tmp_path, monkeypatch):
    folder = tmp_path / "sweep" / "submitit"

    class Job(LocalJob):
        def result(self):
            raise AssertionError("the job's result pickle was read")

    jobs = [Job(folder, f"7_{i}") for i in range(3)]
    for job in jobs:
        _plant(job, tmp_path / "code-ran")
    jobs[2].paths.stderr.write_text("epoch 1/2\n")  # killed: no error line of its own
    monkeypatch.setattr(launch.slurm, "submit_array", lambda executor, calls: jobs)
    monkeypatch.setattr(launch.slurm, "queued", lambda array_id: set())
    monkeypatch.setattr(launch.slurm, "final_states", lambda array_id: {"7_1": "FAILED", "7_2": "FAILED"})
    monkeypatch.setattr(launch, "SLURM_POLL_S", 0)
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.json").write_text(json.dumps(_results()))
    (done / "report.md").write_text("# report\n")
    sweep = _sweep(tmp_path, executor="slurm")
    sweep._run_slurm([_todo("a", done), _todo("b", tmp_path / "none"), _todo("c", tmp_path / "none2")], 1)
    cells = sweep.record["cells"]
    assert cells["a"]["status"] == "done" and cells["a"]["seconds"] is None
    assert cells["b"] == {"status": "failed", "error": "the cell's own error", "log": str(jobs[1].paths.stderr)}
    assert cells["c"] == {"status": "failed", "error": "ended without a result (Slurm state: FAILED)",
                          "log": str(jobs[2].paths.stderr)}
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("damage", ["no report", "not json", "a list", "symlink", "fifo"])
def test_a_cell_is_finished_only_with_committed_readable_results(tmp_path, damage):
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "report.md").write_text("# report\n")
    (tmp_path / "elsewhere.json").write_text(json.dumps(_results()))
    (cell / "results.json").write_text(json.dumps(_results()))
    assert launch.is_finished(str(cell))
    os.unlink(cell / "results.json")
    if damage == "no report":
        os.unlink(cell / "report.md")
        (cell / "results.json").write_text(json.dumps(_results()))
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


def _edit(path, change):
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def _set(*keys_value):
    *keys, value = keys_value

    def change(state):
        obj = state
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return change


def _cell(state):
    return next(iter(state["invocations"][0]["cells"]))


SWEEP_JSON_DAMAGE = {
    "not json": lambda p: p.write_text('{"spec": '),
    "a list": lambda p: p.write_text("[]"),
    "nested deeply": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "no spec": lambda p: _edit(p, lambda s: s.pop("spec")),
    "seeds a string": lambda p: _edit(p, _set("spec", "seeds", "1")),
    "seeds booleans": lambda p: _edit(p, _set("spec", "seeds", [True])),
    "variants a list": lambda p: _edit(p, _set("spec", "variants", [])),
    "variant a number": lambda p: _edit(p, _set("spec", "variants", "full", 3)),
    "variant value a mapping": lambda p: _edit(p, _set("spec", "variants", "full", {"d_model": {"x": 1}})),
    "datasets a mapping": lambda p: _edit(p, _set("spec", "datasets", {})),
    "dataset preset": lambda p: _edit(p, lambda s: s["spec"]["datasets"][0].update(preset=7)),
    "dataset extra field": lambda p: _edit(p, lambda s: s["spec"]["datasets"][0].update(extra=1)),
    "synthetic sizes": lambda p: _edit(p, lambda s: s["spec"]["datasets"][0].update(synthetic=[1, 2])),
    "train a list": lambda p: _edit(p, _set("spec", "train", [])),
    "train key": lambda p: _edit(p, _set("spec", "train", "seed", 3)),
    "rates": lambda p: _edit(p, _set("spec", "rates", [2])),
    "spec extra field": lambda p: _edit(p, _set("spec", "extra", 1)),
    "invocations a mapping": lambda p: _edit(p, _set("invocations", {})),
    "invocation a number": lambda p: _edit(p, _set("invocations", 0, 3)),
    "invocation cells": lambda p: _edit(p, _set("invocations", 0, "cells", [])),
    "invocation wall": lambda p: _edit(p, _set("invocations", 0, "wall_seconds", "x")),
    "invocation parallel": lambda p: _edit(p, _set("invocations", 0, "parallel", "2")),
    "cell seconds": lambda p: _edit(p, lambda s: s["invocations"][0]["cells"][_cell(s)].update(seconds="1")),
    "cell status": lambda p: _edit(p, lambda s: s["invocations"][0]["cells"].update(x=3)),
    "symlink": lambda p: (shutil.move(p, p.parent / "elsewhere.json"), os.symlink(p.parent / "elsewhere.json", p)),
    "fifo": lambda p: (os.unlink(p), os.mkfifo(p)),
}


@pytest.mark.parametrize("damage", sorted(SWEEP_JSON_DAMAGE))
def test_a_damaged_sweep_json_is_one_line_for_report_and_continuing(sweep_copy, capsys, damage):
    path = sweep_copy / "sweep.json"
    SWEEP_JSON_DAMAGE[damage](path)
    code, _, err = run_cli(capsys, "sweep", "--report", sweep_copy)
    assert_clean_error(code, err, str(path))
    code, _, err = run_cli(capsys, "sweep", "--out", sweep_copy, "--device", "cpu")
    assert_clean_error(code, err, str(path))


@pytest.mark.parametrize("damage", ["not json", "a list", "no metrics", "other dataset", "other rates", "symlink"])
def test_a_damaged_results_json_leaves_its_cell_unfinished_with_a_note(sweep_copy, capsys, damage, tmp_path):
    results = next(sweep_copy.glob("cells/*/*/seed1")) / "results.json"
    good = json.loads(results.read_text())
    os.unlink(results)
    if damage == "not json":
        results.write_text("{")
    elif damage == "a list":
        results.write_text("[]")
    elif damage == "no metrics":
        results.write_text(json.dumps({**good, "inter": {**good["inter"], "average": {"mean": {}}}}))
    elif damage == "other dataset":
        results.write_text(json.dumps({**good, "dataset": "sims"}))
    elif damage == "other rates":  # a second seed whose entries differ from the first's
        results.write_text(json.dumps(good))
        state = json.loads((sweep_copy / "sweep.json").read_text())
        state["spec"]["seeds"] = [1, 2]
        (sweep_copy / "sweep.json").write_text(json.dumps(state))
        results = results.parent.parent / "seed2" / "results.json"
        shutil.copytree(results.parent.parent / "seed1", results.parent)
        good["intra"]["per_rate"] = good["intra"]["per_rate"][:1]
        results.write_text(json.dumps(good))
    else:
        (tmp_path / "elsewhere.json").write_text(json.dumps(good))
        os.symlink(tmp_path / "elsewhere.json", results)
    code, _, err = run_cli(capsys, "sweep", "--report", sweep_copy)
    assert code == 0 and "Traceback" not in err, err
    notes = [line for line in err.splitlines() if line.startswith("prlf-fast: note: ")]
    assert len(notes) == 1 and str(results) in notes[0], err
    summary = json.loads((sweep_copy / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if str(results.parent).endswith(c["dir"]))
    assert cell["finished"] is False and str(results) in cell["note"]
    assert str(results) in (sweep_copy / "report.md").read_text()


def _outputs(sweep):
    """(finished cells in summary.json, the report's cells line): the same set agrees."""
    summary = json.loads((sweep / "summary.json").read_text())
    line = next(x for x in (sweep / "report.md").read_text().splitlines() if x.startswith("- cells: "))
    return sum(c["finished"] for c in summary["cells"]), line.split(" of ")[0].removeprefix("- cells: ")


def test_the_outputs_are_one_commit_a_kill_leaves_the_old_set(sweep_copy, capsys, monkeypatch):
    from prlf_fast.report import sweep as report

    assert _outputs(sweep_copy) == (1, "1")
    os.unlink(next(sweep_copy.glob("cells/*/*/seed1")) / "report.md")  # the new set: 0 of 1

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_dataset_section", killed)
    code, _, err = run_cli(capsys, "sweep", "--report", sweep_copy)  # killed while writing the report
    assert code == 130
    assert _outputs(sweep_copy) == (1, "1")
    assert not (sweep_copy / ".staging").exists()


def test_a_kill_inside_the_commit_is_finished_by_the_next_report(sweep_copy, capsys, monkeypatch):
    from prlf_fast.io import atomic

    os.unlink(next(sweep_copy.glob("cells/*/*/seed1")) / "report.md")  # the new set: 0 of 1
    moved, real = [], atomic._replace

    def replace(src, dst):
        staging = str(sweep_copy / ".staging") + os.sep
        if src.startswith(staging) and not dst.startswith(staging):  # a move of the commit
            if moved:
                raise KeyboardInterrupt  # killed after its first file was moved
            moved.append(dst)
        real(src, dst)

    monkeypatch.setattr(atomic, "_replace", replace)
    code, _, _ = run_cli(capsys, "sweep", "--report", sweep_copy)
    assert code == 130 and (sweep_copy / ".commit.json").exists()
    monkeypatch.setattr(atomic, "_replace", real)
    code, _, err = run_cli(capsys, "sweep", "--report", sweep_copy)
    assert code == 0, err
    assert _outputs(sweep_copy) == (0, "0")


def test_report_takes_the_sweep_lock(sweep_copy, capsys):
    from prlf_fast.io.atomic import locked

    before = (sweep_copy / "report.md").read_bytes()
    with locked(str(sweep_copy / ".lock"), "held"):
        code, _, err = run_cli(capsys, "sweep", "--report", sweep_copy)
    assert_clean_error(code, err, "being written by another prlf-fast process")
    assert (sweep_copy / "report.md").read_bytes() == before


# -- the sweep YAML file ---------------------------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BAD_YAML = {
    "alias bomb": (BOMB, "anchors and aliases"),
    "anchor": ("seeds: &s [1]\n", "anchors and aliases"),
    "deep flow": ("seeds: " + "[" * 3000 + "]" * 3000 + "\n", "nested more than 32"),
    "deep block": ("".join("  " * i + f"k{i}:\n" for i in range(40)), "nested more than 32"),
    "too big": ("seeds: [1]\n" + "#" * (1 << 20) + "\n", "bytes, more than"),
    "not utf-8": (b"seeds: [1]\n# \xff\n", "not UTF-8"),
    "python tag": ("seeds: !!python/object/apply:os.system [echo]\n", "not valid YAML"),
    "two documents": ("seeds: [1]\n---\nseeds: [2]\n", "not valid YAML"),
    "seeds a string": ("seeds: one\n", "seeds"),
    "seeds a number": ("seeds: 3\n", "seeds"),
    "seeds floats": ("seeds: [1.5]\n", "seeds"),
    "seeds huge": (f"seeds: [{2 ** 70}]\n", "seeds"),
    "variants a list": ("variants: [full]\n", "variants"),
    "variant a list": ("variants: {full: [1]}\n", "variants.full"),
    "variant nested": ("variants: {full: {d_model: {x: 1}}}\n", "variants.full.d_model"),
    "variant name": ("variants: {1: {}}\n", "variant name 1"),
    "datasets a list": ("datasets: [mosi]\n", "datasets"),
    "dataset a string": ("datasets: {x: mosi}\n", "datasets.x"),
    "dataset preset": ("datasets: {x: {preset: 3}}\n", "datasets.x"),
    "dataset unknown preset": ("datasets: {x: {preset: imdb}}\n", "datasets.x.preset"),
    "dataset data": ("datasets: {x: {preset: mosi, data: 3}}\n", "datasets.x.data"),
    "dataset key": ("datasets: {x: {preset: mosi, path: a.pkl}}\n", "datasets.x"),
    "train a list": ("train: [1]\n", "train"),
    "train value": ("train: {epochs: {a: 1}}\n", "train.epochs"),
    "train date": ("train: {epochs: 2024-01-01}\n", "train.epochs"),
    "set a number": ("set: 3\n", "set"),
    "rates out of range": ("rates: [1.5]\n", "rates"),
    "rates a number": ("rates: 0.5\n", "rates"),
    "rates nan": ("rates: [.nan]\n", "rates"),
    "mask seeds": ("mask_seeds: [a]\n", "mask_seeds"),
    "reference": ("reference: [1]\n", "reference"),
    "synthetic sizes": ("synthetic: [1, 2]\n", "synthetic"),
    "synthetic string": ("synthetic: 'a,b,c'\n", "synthetic"),
    "not a mapping": ("- 1\n", "expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_a_bad_sweep_file_is_one_line_naming_file_and_key(tmp_path, capsys, case):
    text, fragment = BAD_YAML[case]
    path = tmp_path / "sweep.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "out", "--config", path, "--device", "cpu")
    assert_clean_error(code, err, str(path), fragment)
    assert not (tmp_path / "out").exists()


def _spec_or_clean_error(text: bytes, tmp: str):
    from prlf_fast.errors import PRLFError

    path = os.path.join(tmp, "fuzz.yaml")
    with open(path, "wb") as f:
        f.write(text)
    try:
        spec = SweepSpec.from_args(path)
    except PRLFError as exc:
        assert "\n" not in str(exc)
        return
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


ABLATION = open(os.path.join(os.path.dirname(__file__), os.pardir, "studies", "ablation.yaml"), "rb").read()


def _fuzz_settings():
    from hypothesis import HealthCheck, settings

    return settings(max_examples=int(os.environ.get("PRLF_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                    derandomize="PRLF_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _documents():
    """YAML-ish documents: the sweep file's keys (and others) with arbitrary nested values,
    dumped as YAML, or raw YAML-like text."""
    import yaml
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["full", "mosi", "preset", "data", "epochs", "d_model", "x", "synthetic"]) | st.text(max_size=4),
        c, max_size=4), max_leaves=12)
    keys = st.sampled_from(["seeds", "variants", "datasets", "train", "set", "rates", "mask_seeds", "reference",
                            "synthetic", "other"])
    dumped = st.dictionaries(keys, values, max_size=6).map(lambda d: yaml.safe_dump(d).encode())
    raw = st.text(alphabet="seds:[]{},-&*!|>'\"#\n 0123.xyzpr", max_size=200).map(str.encode)
    return dumped | raw


def _mutations():
    from hypothesis import strategies as st

    edit = st.tuples(st.integers(0, len(ABLATION)), st.sampled_from(["set", "insert", "delete"]),
                     st.binary(min_size=1, max_size=4))

    def apply(edits):
        data = bytearray(ABLATION)
        for pos, kind, chunk in edits:
            pos = min(pos, len(data))
            if kind == "set":
                data[pos:pos + len(chunk)] = chunk
            elif kind == "insert":
                data[pos:pos] = chunk
            else:
                del data[pos:pos + len(chunk)]
        return bytes(data)
    return st.lists(edit, min_size=1, max_size=6).map(apply)


def test_fuzzed_sweep_files_give_a_spec_or_one_line(tmp_path):
    from hypothesis import given

    @_fuzz_settings()
    @given(text=_documents() | _mutations())
    def check(text):
        _spec_or_clean_error(text, str(tmp_path))

    check()


def test_report_needs_no_submitit(sweep_copy):
    """``--report`` imports nothing of the launcher: it works where submitit is not installed."""
    os.unlink(sweep_copy / "report.md")
    code = ("import sys; sys.modules['submitit'] = None; from prlf_fast.cli import main; "
            f"sys.exit(main(['sweep', '--report', {str(sweep_copy)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (sweep_copy / "report.md").exists()


# -- signals ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_stops_the_sweep_the_cell_saves_and_a_rerun_completes(tmp_path, capsys):
    import signal
    import time

    sweep = tmp_path / "sweep"
    argv = ["sweep", "--out", str(sweep), *TINY, "--synthetic", "320,16,16", "--train", "epochs=10"]
    cell = sweep / "cells" / "mosi" / "full" / "seed1"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prlf_fast.cli", *argv], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:  # once the cell trains (its first epoch is recorded), SIGTERM to the controller alone
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if (cell / "metrics.jsonl").exists() and (cell / "metrics.jsonl").read_text().strip():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "prlf-fast: interrupted", err
    log = (cell / "train.log").read_text()
    assert "interrupted at step" in log and "saved last.safetensors" in log, log
    assert (cell / "last.safetensors").exists() and not launch.is_finished(str(cell))

    code, _, err = run_cli(capsys, *argv)  # the same command again completes the sweep
    assert code == 0, err
    assert launch.is_finished(str(cell)) and "resumed from last.safetensors" in (cell / "train.log").read_text()


# -- variants with training settings ---------------------------------------------------------
def test_variants_may_carry_training_settings(tmp_path, capsys):
    variants = ["--variant", "p01:modality_dropout=0.1",
                "--variant", "subset:modality_dropout=0.3,modality_dropout_scheme=subset,d_model=8"]
    spec = SweepSpec.from_args(seeds=[1], variants=variants[1::2], train=["modality_dropout=0.2", "epochs=1"])
    run = spec.run_spec(str(tmp_path), spec.datasets[0], "subset", 1)
    assert run.train["modality_dropout"] == 0.3 and run.train["modality_dropout_scheme"] == "subset"
    assert run.model == {"d_model": 8}  # the dropout settings are not model overrides
    argv = run.argv()
    assert argv[argv.index("--modality-dropout") + 1] == "0.3" and argv.count("--modality-dropout") == 1

    sweep = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, *TINY, "--parallel", "2", *variants)
    assert code == 0, err
    for variant, rate, scheme in (("p01", 0.1, None), ("subset", 0.3, "subset")):
        train = json.loads((sweep / "cells" / "mosi" / variant / "seed1" / "config.json").read_text())["train"]
        assert train["modality_dropout"] == rate
        assert scheme is None or train["modality_dropout_scheme"] == scheme
    assert "subset: modality_dropout=0.3, modality_dropout_scheme=subset, d_model=8" in (sweep / "report.md").read_text()
    # the variant's settings are part of its cells: changing them is refused
    code, _, err = run_cli(capsys, "sweep", "--out", sweep, *TINY, "--variant", "p01:modality_dropout=0.2")
    assert_clean_error(code, err, "variant p01")
    code, _, err = run_cli(capsys, "sweep", "--out", tmp_path / "bad", *TINY, "--variant", "x:modality_dropout_scheme=nope")
    assert_clean_error(code, err, "variant x")
