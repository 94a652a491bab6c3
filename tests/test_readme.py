"""README's Python snippet runs as written, on a small synthetic file at the path it names."""
import os
import re

import numpy as np
import torch

from prlf_fast.data import synthesize
from prlf_fast.data.synthetic import write_pickle

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_readme_python_snippet_runs(tmp_path, monkeypatch):
    text = open(README, encoding="utf-8").read()
    section = text.split("## Using it from Python", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = re.search(r'load_mmsa\("([^"]+)"', snippet).group(1)
    data = synthesize("mosei", 8, 4, 40, seed=0)
    for split in data.values():  # finite: the snippet is not about the non-finite warning
        split["audio"][~np.isfinite(split["audio"])] = 0.0
    os.makedirs(tmp_path / os.path.dirname(path))
    write_pickle(data, tmp_path / path)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    out, losses = scope["out"], scope["losses"]
    assert out.prediction.shape == (32,) and out.weights.shape == (32, 3) and out.dominant.shape == (32,)
    assert set(losses) >= {"total", "task", "rec", "align"} and torch.isfinite(losses["total"])


def test_readme_run_snippet_trains_and_evaluates(tmp_path, monkeypatch):
    text = open(README, encoding="utf-8").read()
    section = text.split("## Using it from Python", 1)[1]
    snippet = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    config, state = scope["config"], scope["state"]
    assert config["train"]["epochs"] == 1 and config["model"]["d_model"] == 32 and state["best_epoch"] is not None
    run = tmp_path / "runs" / "py-demo"
    assert {"config.json", "results.json", "report.md", "best.safetensors"} <= set(os.listdir(run))
