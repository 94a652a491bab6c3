"""``prlf-fast predict`` and ``prlf_fast.load_run`` on a tiny run trained on a synthetic pickle
with sample ids: the CSV's metrics equal results.json's for the same protocol, ids survive the
cache, a pickle without labels predicts without metrics, bad options end in one clear line."""
import csv
import json
import pickle

import numpy as np
import pytest
import torch
from helpers import TINY_OPTS, assert_clean_error, run_cli

import prlf_fast
from prlf_fast.cli import main
from prlf_fast.config import MODALITIES
from prlf_fast.data import synthesize
from prlf_fast.data.cache import read_texts
from prlf_fast.data.synthetic import write_pickle
from prlf_fast.metrics import mmsa_metrics

pytestmark = pytest.mark.filterwarnings("ignore::prlf_fast.data.NonFiniteWarning")


def with_ids(data):
    for split, part in data.items():
        n = len(part["regression_labels"])
        part["id"] = np.array([f"{split}_video{i}$_${i % 3}" for i in range(n)], dtype=object)
        part["raw_text"] = np.array([f"sample {i} of {split}, ünïcode" for i in range(n)], dtype=object)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = with_ids(synthesize("mosi", 48, 16, 24, seed=0))
    write_pickle(data, root / "data.pkl")
    assert main(["train", "--data", str(root / "data.pkl"), *TINY_OPTS, "--out", str(root / "run"),
                 "--rates", "0.0", "0.5", "--seeds", "0", "1"]) == 0
    return root


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def csv_metrics(rows):
    pred = torch.tensor([float(r["prediction"]) for r in rows], dtype=torch.float32)
    label = torch.tensor([float(r["label"]) for r in rows], dtype=torch.float32)
    return mmsa_metrics(pred, label, "mosi")


def test_metrics_from_the_csv_equal_results_json(trained, capsys):
    results = json.loads((trained / "run" / "results.json").read_text())
    intra = {(r["rate"], r["seed"]): r["metrics"] for r in results["intra"]["records"]}
    inter = {r["config"]: r["metrics"] for r in results["inter"]["records"]}
    cases = [(["--intra", "0.5", "--mask-seed", "1"], intra[(0.5, 1)]),
             (["--intra", "0.5"], intra[(0.5, 0)]),
             (["--drop", "text,audio"], inter["text-audio"]),
             (["--drop", "vision"], inter["vision"]),
             ([], inter["complete"])]
    for options, expected in cases:
        out = trained / "p.csv"
        code, stdout, err = run_cli(capsys, "predict", "--run", trained / "run", "--out", out, "--device", "cpu",
                                    *options)
        assert code == 0, err
        assert f"MAE {expected['MAE']:.4f}" in stdout
        assert csv_metrics(read_csv(out)) == expected, options


def test_mean_residual_equals_the_csv(trained, capsys):
    """results.json's residual of each inter configuration is mean(ŷ − y) of predict's CSV."""
    results = json.loads((trained / "run" / "results.json").read_text())
    for r in results["inter"]["records"]:
        out = trained / "residual.csv"
        drop = ["--drop", ",".join(r["dropped"])] if r["dropped"] else []
        code, _, err = run_cli(capsys, "predict", "--run", trained / "run", "--out", out, "--device", "cpu", *drop)
        assert code == 0, err
        rows = read_csv(out)
        residual = np.mean([float(row["prediction"]) - float(row["label"]) for row in rows])
        assert r["mean_residual"] == pytest.approx(residual, abs=1e-6), r["config"]
    six = [r["mean_residual"] for r in results["inter"]["records"] if r["dropped"]]
    assert results["inter"]["average"]["mean_residual"] == pytest.approx(np.mean(six), abs=1e-12)
    report = (trained / "run" / "report.md").read_text()
    assert f"{results['inter']['average']['mean_residual']:+.4f}" in report


def test_csv_columns_ids_and_values(trained, capsys):
    out = trained / "drop.csv"
    code, _, err = run_cli(capsys, "predict", "--run", trained / "run", "--out", out, "--device", "cpu",
                           "--drop", "text")
    assert code == 0, err
    rows = read_csv(out)
    assert list(rows[0]) == ["id", "label", "prediction", "dominant"] + [
        f"{q}_{m}" for m in MODALITIES for q in ("present", "confidence", "fisher", "weight")]
    with open(trained / "data.pkl", "rb") as f:
        assert [r["id"] for r in rows] == list(pickle.load(f)["test"]["id"])
    for r in rows:
        assert r["present_text"] == "0" and float(r["weight_text"]) == 0.0 and r["dominant"] != "text"
        assert sum(float(r[f"weight_{m}"]) for m in MODALITIES) == pytest.approx(1.0, abs=1e-6)
        assert 0 < float(r["confidence_audio"]) <= 1 and float(r["fisher_vision"]) > 0


def test_cache_keeps_ids_and_predicts_the_same(trained, capsys):
    cache = trained / "cache"
    assert main(["data", "convert", str(trained / "data.pkl"), str(cache)]) == 0
    texts = read_texts(cache)
    assert texts["valid"]["raw_text"][3] == "sample 3 of valid, ünïcode"
    outs = {}
    for name, data in (("pickle", trained / "data.pkl"), ("cache", cache)):
        outs[name] = trained / f"{name}.csv"
        code, _, err = run_cli(capsys, "predict", "--run", trained / "run", "--data", data, "--out", outs[name],
                               "--device", "cpu", "--split", "valid", "--intra", "0.3")
        assert code == 0, err
    assert read_csv(outs["cache"]) == read_csv(outs["pickle"])
    assert read_csv(outs["cache"])[5]["id"] == "valid_video5$_$2"


def test_pickle_without_labels_predicts_without_metrics(trained, capsys):
    data = with_ids(synthesize("mosi", 2, 2, 10, seed=3))
    test = {k: v for k, v in data["test"].items() if k != "regression_labels"}
    with open(trained / "unlabeled.pkl", "wb") as f:
        pickle.dump({"test": test}, f)
    out = trained / "unlabeled.csv"
    code, stdout, err = run_cli(capsys, "predict", "--run", trained / "run", "--data", trained / "unlabeled.pkl",
                                "--out", out, "--device", "cpu")
    assert code == 0, err
    assert "no labels" in stdout
    rows = read_csv(out)
    assert len(rows) == 10 and "label" not in rows[0] and rows[0]["id"] == "test_video0$_$0"


def test_load_run_returns_the_selected_model(trained, capsys):
    model = prlf_fast.load_run(trained / "run", device="cpu")
    assert isinstance(model, prlf_fast.PRLF) and not model.training and model.backend == "fast"
    config = json.loads((trained / "run" / "config.json").read_text())
    assert model.config == prlf_fast.PRLFConfig.from_dict(config["model"])
    from safetensors.torch import load_file

    best = load_file(str(trained / "run" / "best.safetensors"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[f"model/{name}"]), name


@pytest.mark.parametrize("options, fragments", [
    (["--mask-seed", "1"], ["--mask-seed applies only with --intra"]),
    (["--drop", "text,speech"], ["--drop 'text,speech'", "text, audio, vision"]),
    (["--drop", "text,text"], ["--drop 'text,text'"]),
    (["--split", "valid", "--data", "{root}/only_test.pkl"], ["no split 'valid'"]),
    (["--data", "{root}/only_test.pkl"], ["split 'test' has no key 'audio'"]),
])
def test_bad_options_fail_with_one_line(trained, capsys, options, fragments):
    test = synthesize("mosi", 2, 2, 3, seed=3)["test"]
    with open(trained / "only_test.pkl", "wb") as f:
        pickle.dump({"test": {k: v for k, v in test.items() if k != "audio"}}, f)
    options = [o.format(root=trained) for o in options]
    code, _, err = run_cli(capsys, "predict", "--run", trained / "run", "--out", trained / "x.csv",
                           "--device", "cpu", *options)
    assert_clean_error(code, err, *fragments)
