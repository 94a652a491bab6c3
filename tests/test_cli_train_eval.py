"""``prlf-fast train`` and ``eval`` end to end on a tiny synthetic set: every output exists and
parses; every bad input ends with one clear line and exit code 2."""
import json
import os
import pickle

import matplotlib.image
import numpy as np
import pytest
from helpers import TINY_OPTS, TINY_RUN, assert_clean_error, run_cli
from safetensors.torch import load_file

from prlf_fast.cli import main
from prlf_fast.data import synthesize

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY_RUN, "--out", str(out), "--rates", "0.0", "0.5", "--seeds", "0", "1"]) == 0
    return out


def test_train_writes_every_output(trained):
    files = sorted(os.listdir(trained))
    assert files == sorted(["best.safetensors", "config.json", "last.safetensors", "metrics.jsonl",
                            "plots", "report.md", "results.json", "train.log"])
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["d_model"] == 16 and config["train"]["epochs"] == 2
    assert config["data"] == {"path": None, "synthetic": {"n_train": 48, "n_valid": 16, "n_test": 24, "seed": 0}}
    history = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and [h["step"] for h in history] == [3, 6]
    assert all(np.isfinite(h["train"]["total"]) and "MAE" in h["valid"] for h in history)
    last = load_file(str(trained / "last.safetensors"))
    assert any(k.startswith("optim/") for k in last) and "rng/torch" in last
    assert all(k.startswith("model/") for k in load_file(str(trained / "best.safetensors")))
    assert "epoch 2/2" in (trained / "train.log").read_text()


def test_results_hold_every_rate_seed_and_configuration(trained):
    results = json.loads((trained / "results.json").read_text())
    intra, inter = results["intra"], results["inter"]
    assert sorted((r["rate"], r["seed"]) for r in intra["records"]) == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert [r["rate"] for r in intra["per_rate"]] == [0.0, 0.5]
    for r in intra["per_rate"]:
        assert set(r["mean"]) == set(r["std"]) >= {"Has0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE", "Corr"}
        assert sum(r["dominant_share"].values()) == pytest.approx(1.0)
    mae = [r["metrics"]["MAE"] for r in intra["records"]]
    assert intra["average"]["mean"]["MAE"] == pytest.approx(np.mean(mae))
    assert [r["config"] for r in inter["records"]] == [
        "text", "audio", "vision", "text-audio", "text-vision", "audio-vision", "complete"]
    six = [r["metrics"]["MAE"] for r in inter["records"][:6]]
    assert inter["average"]["mean"]["MAE"] == pytest.approx(np.mean(six))
    # With text dropped, AMRE never picks text as the dominant modality.
    assert inter["records"][0]["dominant_share"]["text"] == 0.0
    # At rate 0 the intra protocol is the complete case.
    complete = inter["records"][6]["metrics"]
    assert intra["records"][0]["metrics"]["MAE"] == pytest.approx(complete["MAE"], rel=1e-5)


def test_results_and_report_hold_the_anchor_diagnostics(trained):
    """Issue #15: every evaluation reports the run's anchor rule against each fixed anchor and the
    per-sample best (the values are checked in tests/test_anchors.py), in one report table."""
    results = json.loads((trained / "results.json").read_text())
    columns = {"amre", "text", "audio", "vision", "best"}
    for proto in ("intra", "inter"):
        assert set(results[proto]["anchors"]["average"]) == {"metrics", "headroom", "rule_best_share"}
        assert all(set(r["anchors"]["metrics"]) == columns for r in results[proto]["records"])
    assert [r["rate"] for r in results["intra"]["anchors"]["per_rate"]] == [0.0, 0.5]
    report = (trained / "report.md").read_text()
    assert report.count("## Anchor choice") == 1
    table = [line for line in report.split("## Anchor choice")[1].split("## Plots")[0].splitlines()
             if line.startswith("| ")]
    assert len(table) == 1 + 2 + 1 + 7 + 1   # header, rates, their average, configurations, their average
    assert table[0] == "| Case | AMRE | text | audio | vision | best | captured | AMRE best |"
    assert any(line.startswith("| inter −{audio, vision} |") and "| — |" in line for line in table)


def test_report_tables_and_plots(trained):
    report = (trained / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert any(r.startswith("| 0.5 |") for r in rows) and any(r.startswith("| **Average** |") for r in rows)
    assert any(r.startswith("| {text, audio} | {vision} |") for r in rows)
    assert any(r.startswith("| **Average (6)** |") for r in rows)
    assert "| Missing rate | Acc-7 | Acc-5 | Acc-2 | F1 | MAE | Corr |" in report
    for png in ("intra_missing_rate", "inter_modality", "dominant_modality", "training"):
        image = matplotlib.image.imread(trained / "plots" / f"{png}.png")
        assert image.ndim == 3 and image.shape[0] > 100
        assert f"plots/{png}.png" in report


def test_eval_reruns_with_other_rates_and_seeds(trained, capsys):
    code, out, err = run_cli(capsys, "eval", "--run", trained, "--rates", "0.2", "0.9", "--seeds", "5",
                             "--device", "cpu", "--batch-size", "7")
    assert code == 0, err
    results = json.loads((trained / "results.json").read_text())
    assert [(r["rate"], r["seed"]) for r in results["intra"]["records"]] == [(0.2, 5), (0.9, 5)]
    assert "| 0.9 |" in (trained / "report.md").read_text()
    assert "evaluated best.safetensors" in (trained / "train.log").read_text().splitlines()[-1]


def test_existing_run_needs_resume(trained, capsys):
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--out", trained)
    assert_clean_error(code, err, "already holds a run", "--resume")


# -- bad input -----------------------------------------------------------------------------------

def write_pickle(path, data):
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


@pytest.fixture
def small_mmsa():
    """Finite features (no −inf in audio): these tests are about errors, not the non-finite warning."""
    data = synthesize("mosi", 8, 4, 4, seed=3)
    for split in data.values():
        split["audio"][~np.isfinite(split["audio"])] = 0.0
    return data


def test_missing_data_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--data", tmp_path / "nope.pkl", "--out", tmp_path / "r")
    assert_clean_error(code, err, "nope.pkl")


def test_junk_data_file(tmp_path, capsys):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all")
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--data", junk, "--out", tmp_path / "r")
    assert_clean_error(code, err, "junk.pkl")


def test_shapes_contradicting_the_preset(tmp_path, capsys, small_mmsa):
    path = write_pickle(tmp_path / "mosi.pkl", small_mmsa)
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--dataset", "sims", "--data", path,
                           "--out", tmp_path / "r")
    assert_clean_error(code, err, "mosi.pkl", "sims")


def test_nan_labels(tmp_path, capsys, small_mmsa):
    small_mmsa["valid"]["regression_labels"][1] = np.nan
    path = write_pickle(tmp_path / "nan.pkl", small_mmsa)
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--data", path, "--out", tmp_path / "r")
    assert_clean_error(code, err, "nan.pkl", "valid", "regression_labels")


def test_empty_split(tmp_path, capsys, small_mmsa):
    small_mmsa["test"] = {k: v[:0] for k, v in small_mmsa["test"].items()}
    path = write_pickle(tmp_path / "empty.pkl", small_mmsa)
    code, _, err = run_cli(capsys, "train", *TINY_OPTS, "--data", path, "--out", tmp_path / "r")
    assert_clean_error(code, err, "empty.pkl", "test", "empty")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--out", blocker / "run")
    assert_clean_error(code, err, "cannot write to the output directory", "a_file")


def test_checkpoint_of_another_config(trained, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "best.safetensors"):
        (other / name).write_bytes((trained / name).read_bytes())
    config = json.loads((other / "config.json").read_text())
    config["model"]["d_model"] = 32
    (other / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "eval", "--run", other, "--device", "cpu")
    assert_clean_error(code, err, "another model config", "d_model=16 (checkpoint) vs 32")


def test_eval_of_a_directory_without_a_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", "--run", tmp_path)
    assert_clean_error(code, err, "config.json is missing")


def test_bad_option_value(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *TINY_RUN, "--lr", "-1", "--out", tmp_path / "r")
    assert_clean_error(code, err, "lr=-1.0")


@pytest.mark.parametrize("options, fragments", [
    (["--set", "foo=1"], ["unknown model setting(s) foo", "d_model"]),
    (["--set", "d_model=abc"], ["d_model='abc'", "expected int"]),
    (["--set", "d_model"], ["--set 'd_model'", "KEY=VALUE"]),
    (["--select-metric", "Mult_acc_3"], ["'Mult_acc_3' is not a mosi metric", "Has0_acc_2"]),
], ids=["unknown-field", "wrong-type", "no-value", "metric-of-another-dataset"])
def test_bad_settings_fail_before_anything_is_written(tmp_path, capsys, options, fragments):
    code, _, err = run_cli(capsys, "train", *TINY_RUN, *options, "--out", tmp_path / "r")
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    argv = ["train", "--data", str(tmp_path / "nope.pkl"), "--out", str(tmp_path / "r")]
    with pytest.raises(Exception, match="nope.pkl"):
        main(["--debug", *argv] if where == "before" else [*argv, "--debug"])


@pytest.mark.parametrize("scheme", ["independent", "subset"])
def test_early_stopping_with_modality_dropout(tmp_path, capsys, scheme):
    # A vanishing learning rate leaves the validation accuracy unchanged, so patience 1 stops
    # after epoch 2 of 4; modality dropout runs on top of the training protocol.
    out = tmp_path / "early"
    code, _, err = run_cli(capsys, "train", "--synthetic", "32,12,12", *TINY_OPTS, "--epochs", "4",
                           "--lr", "1e-12", "--patience", "1", "--select-metric", "Has0_acc_2",
                           "--modality-dropout", "0.3", "--modality-dropout-scheme", scheme, "--no-eval",
                           "--out", out)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["modality_dropout_scheme"] == scheme
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["select"]["best"] for h in history] == [True, False]
    assert "early stop" in (out / "train.log").read_text()
