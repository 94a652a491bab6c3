"""Settings, paths, streams, signals and output cells as a careless user or a stranger's files
meet them: out-of-range ``--set`` values and unencodable paths are one line before anything is
written, every message prints in any locale, SIGTERM stops a run as Ctrl-C does, sample ids cannot
become spreadsheet formulas, and a foreign BERT folder fails in one line leaving nothing.
Fails on the code before these checks."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import RUN, assert_clean_error, run_cli

from prlf_fast.config import PRLFConfig, TrainConfig
from prlf_fast.errors import PRLFError
from prlf_fast.train.predict import write_predictions


@pytest.mark.parametrize("setting, field", [
    ("d_model=-8", "d_model"), ("d_model=0", "d_model"), ("n_classes=1", "n_classes"),
    ("dropout=1.5", "dropout"), ("tau=NaN", "tau"), ("lambda_rec=-1", "lambda_rec"),
    ("lambda_align=Infinity", "lambda_align"), ("text_dim=0", "text_dim"), ("label_range=0", "label_range"),
])
def test_out_of_range_model_settings_are_one_line_and_write_nothing(tmp_path, capsys, setting, field):
    out = tmp_path / "D"
    code, _, err = run_cli(capsys, "train", *RUN, "--set", setting, "--out", out)
    assert_clean_error(code, err, field)
    assert not out.exists()


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--weight-decay", "inf"], ["--grad-clip=-inf"]])
def test_non_finite_training_settings_are_one_line(tmp_path, capsys, option):
    out = tmp_path / "D"
    code, _, err = run_cli(capsys, "train", *RUN, *option, "--out", out)
    assert_clean_error(code, err, option[0][2:].split("=")[0].replace("-", "_"), "finite")
    assert not out.exists()


def test_every_float_field_refuses_nan():
    for cls in (PRLFConfig, TrainConfig):
        for name, value in cls().__dict__.items():
            if isinstance(value, float):
                with pytest.raises(ValueError, match=name):
                    cls(**{name: float("nan")})


# -- paths and streams ------------------------------------------------------------------------------

def latin1(tmp_path, name):
    return os.fsdecode(os.fsencode(str(tmp_path)) + b"/" + name.encode() + b"\xe9")


def test_an_out_path_that_is_not_utf8_is_refused_before_training(tmp_path, capsys):
    if sys.getfilesystemencoding() != "utf-8":
        pytest.skip("needs a UTF-8 file system encoding")
    out = latin1(tmp_path, "run")
    code, _, err = run_cli(capsys, "train", *RUN, "--out", out)
    assert_clean_error(code, err, "not valid UTF-8", "\\xe9")
    assert not os.path.lexists(out)


@pytest.mark.filterwarnings("ignore::prlf_fast.data.mmsa.NonFiniteWarning")
def test_a_data_path_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path, capsys):
    if sys.getfilesystemencoding() != "utf-8":
        pytest.skip("needs a UTF-8 file system encoding")
    data = latin1(tmp_path, "d") + ".pkl"
    assert run_cli(capsys, "data", "synth", "--preset", "mosi", "--out", data, "--n-train", 8,
                   "--n-valid", 4, "--n-test", 4)[0] == 0
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", data, *RUN[2:], "--out", out)
    assert_clean_error(code, err, "data.path", "not valid UTF-8")
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_help_prints_under_any_stdout_encoding(argv, encoding):
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    proc = subprocess.run([sys.executable, "-m", "prlf_fast.cli", *argv], capture_output=True, env=env)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")


# -- SIGTERM ------------------------------------------------------------------------------------------

def test_sigterm_during_training_saves_a_checkpoint_and_exits_with_one_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prlf_fast.cli", "train", "--synthetic", "400,8,8", "--epochs", "200",
           "--batch-size", "8", "--device", "cpu", "--no-eval", *RUN[8:], "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "prlf-fast: interrupted" and "Traceback" not in err
    assert "saved last.safetensors" in (out / "train.log").read_text()


EVAL_KILLED = """
import os, signal, sys
from prlf_fast.eval import robustness
from prlf_fast.train import run
def killed(*a, **k):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the evaluation")
run.robustness = killed
from prlf_fast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_eval_is_a_stop_with_one_line_and_no_partial_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *RUN, "--no-eval", "--out", out)[0] == 0
    proc = subprocess.run([sys.executable, "-c", EVAL_KILLED, "eval", "--run", str(out), "--device", "cpu",
                           "--rates", "0.0", "--seeds", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "prlf-fast: interrupted"
    assert not (out / "results.json").exists() and not (out / ".staging").exists()


# -- CSV cells ---------------------------------------------------------------------------------------

def test_predict_csv_neutralises_formula_ids_and_keeps_numbers(tmp_path):
    ids = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "plain", "a=b"]
    n = len(ids)
    outputs = {"prediction": torch.linspace(-2, 2, n), "dominant": torch.zeros(n, dtype=torch.long),
               "present": torch.ones(n, 3), "confidence": torch.ones(n, 3), "fisher": torch.ones(n, 3),
               "weights": torch.ones(n, 3) / 3}
    path = tmp_path / "p.csv"
    write_predictions(str(path), ids, torch.full((n,), -1.5), outputs)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["'" + i for i in ids[:6]] + ids[6:]
    assert all(r["label"] == "-1.5" for r in rows) and rows[0]["prediction"] == "-2.0"


# -- foreign BERT folders ------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


def bert_folder(path, vocab=120):
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=64)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return path


class Payload:
    def __reduce__(self):
        return (print, ("ran code from the pickle",))


@pytest.mark.parametrize("damage", ["pickled", "truncated", "bad config", "small vocabulary"])
def test_a_foreign_bert_folder_is_one_line_and_leaves_nothing(tmp_path, capsys, damage):
    bert = bert_folder(tmp_path / "bert")
    if damage == "pickled":
        (bert / "model.safetensors").unlink()
        torch.save({"x": Payload()}, bert / "pytorch_model.bin")
    elif damage == "truncated":
        data = (bert / "model.safetensors").read_bytes()
        (bert / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif damage == "bad config":
        (bert / "config.json").write_text("{not json")
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "train", *RUN, "--text-encoder", "bert", "--bert-path", bert,
                                "--no-eval", "--out", out)
    lines = [line for line in err.strip().splitlines() if line.strip() and "it/s]" not in line]  # transformers' progress bars
    assert code == 2 and len(lines) == 1 and lines[0].startswith("prlf-fast: error: "), err
    assert "Traceback" not in err
    assert str(bert) in lines[0] and "ran code" not in stdout
    assert not out.exists()
