"""Checkpoints from someone else: a flipped bit in the metadata is refused (the digest covers it),
hostile resume state (negative positions, wrong types, extra keys, a scheduler dict that would
set attributes) is one PRLFError naming the field, never a traceback or a silent resume, and a
config claiming a huge model is refused before the model is built. Fails on the code before
io.state."""
import json
import os

import pytest
import torch
from helpers import EVAL, RUN, assert_clean_error, copy_run, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from prlf_fast import PRLFConfig
from prlf_fast.cli import main
from prlf_fast.config import TrainConfig
from prlf_fast.data.runs import data_spec, load_splits
from prlf_fast.errors import PRLFError
from prlf_fast.io.checkpoint import Checkpoint, tensor_digest
from prlf_fast.io.rundir import RunDir
from prlf_fast.train.trainer import Trainer

NAMES = ("config.json", "best.safetensors", "last.safetensors", "metrics.jsonl", "train.log")
RESUME = ["train", "--resume", "--no-eval", "--device", "cpu", "--out"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["train", *RUN, "--out", str(out), "--rates", "0.0", "--seeds", "0"]) == 0
    return out


def read(path):
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def rewrite(path, meta, tensors, digest=True):
    """Save ``meta``/``tensors`` to ``path``; ``digest``: as a forger would, with a fresh SHA-256."""
    if digest:
        meta = {**meta, "sha256": tensor_digest(tensors, meta)}
    save_file(tensors, str(path), metadata=meta)


def test_a_changed_trainer_entry_is_refused_as_damaged(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path / "run", NAMES)
    meta, tensors = read(run / "last.safetensors")
    trainer = json.loads(meta["trainer"])
    meta["trainer"] = json.dumps({**trainer, "epoch": trainer["epoch"] - 1})  # one bit: "1" -> "0"
    rewrite(run / "last.safetensors", meta, tensors, digest=False)
    code, _, err = run_cli(capsys, *RESUME, run)
    assert_clean_error(code, err, "last.safetensors", "damaged")
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]


def edit_json(meta, key, fn):
    value = json.loads(meta[key])
    fn(value)
    meta[key] = json.dumps(value)


HOSTILE = {
    "negative batch": ("trainer", lambda t: t.update(batch=-3), "trainer.batch"),
    "epoch beyond the run": ("trainer", lambda t: t.update(epoch=99), "trainer.epoch"),
    "string step": ("trainer", lambda t: t.update(step="7"), "trainer.step"),
    "unknown trainer key": ("trainer", lambda t: t.update(shell="rm"), "trainer.shell"),
    "missing position": ("trainer", lambda t: t.pop("stale"), "stale"),
    "partial sums of strings": ("trainer", lambda t: t.update(partial={"sums": {"total": "x"}, "count": 1}),
                                "trainer.partial"),
    "scheduler lambda state": ("scheduler", lambda s: s.update(
        {next(k for k in s if k.endswith("lr_lambdas")): [{"warmup": -1}]}), "lr_lambdas"),
    "scheduler extra attribute": ("scheduler", lambda s: s.update(optimizer=None), "scheduler"),
    "scheduler negative epoch": ("scheduler", lambda s: s.update(last_epoch=-5), "last_epoch"),
    "scheduler lr as text": ("scheduler", lambda s: s.update(base_lrs=["0.1"]), "base_lrs"),
    "optimizer lr nan": ("optimizer", lambda o: o["param_groups"][0].update(lr=float("nan")), "lr"),
    "optimizer extra group": ("optimizer", lambda o: o["param_groups"].append(o["param_groups"][0]),
                              "param_groups"),
    "optimizer foreign params": ("optimizer", lambda o: o["param_groups"][0].update(params=[999]), "params"),
    "optimizer state of no param": ("optimizer", lambda o: o["state"].update({"999": {"step": 1}}), "state.999"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_resume_state_is_one_line_naming_the_field(trained, tmp_path, capsys, case):
    key, fn, fragment = HOSTILE[case]
    run = copy_run(trained, tmp_path / "run", NAMES)
    meta, tensors = read(run / "last.safetensors")
    edit_json(meta, key, fn)
    rewrite(run / "last.safetensors", meta, tensors)
    code, _, err = run_cli(capsys, *RESUME, run)
    assert_clean_error(code, err, "last.safetensors", fragment)


@pytest.mark.parametrize("case", ["rng shape", "rng dtype", "stray tensor", "moment shape"])
def test_hostile_resume_tensors_are_one_line(trained, tmp_path, capsys, case):
    run = copy_run(trained, tmp_path / "run", NAMES)
    meta, tensors = read(run / "last.safetensors")
    if case == "rng shape":
        tensors["rng/torch"] = tensors["rng/torch"][:10].clone()
    elif case == "rng dtype":
        tensors["rng/torch"] = tensors["rng/torch"].float()
    elif case == "stray tensor":
        tensors["extra/x"] = torch.zeros(2)
    else:
        name = next(k for k in tensors if k.startswith("optim/") and k.endswith("exp_avg"))
        tensors[name] = torch.zeros(3)
    rewrite(run / "last.safetensors", meta, tensors)
    code, _, err = run_cli(capsys, *RESUME, run)
    assert_clean_error(code, err, "last.safetensors")


def test_a_config_claiming_a_huge_model_is_refused_before_allocation(trained, tmp_path, capsys, monkeypatch):
    run = copy_run(trained, tmp_path / "run", NAMES)
    config = json.loads((run / "config.json").read_text())
    config["model"].update(d_model=1 << 16, ffn_dim=1 << 17, n_heads=2)  # ~100 GB of parameters
    (run / "config.json").write_text(json.dumps(config))
    meta, tensors = read(run / "best.safetensors")
    meta["config"] = json.dumps(config["model"])
    rewrite(run / "best.safetensors", meta, tensors)
    code, _, err = run_cli(capsys, "eval", "--run", run, *EVAL)
    assert_clean_error(code, err, "best.safetensors", "another shape")


# -- fuzz: mutated metadata loads or fails with a PRLFError, never another exception --------------

@pytest.fixture(scope="module")
def resumer(trained, tmp_path_factory):
    config = json.loads((trained / "config.json").read_text())
    cfg = PRLFConfig.from_dict(config["model"])
    splits = load_splits(data_spec(None, config["data"]["synthetic"]), cfg, "cpu")
    run = RunDir(str(tmp_path_factory.mktemp("fuzz")), echo=False)
    trainer = Trainer(cfg, TrainConfig.from_dict(config["train"]), splits, run, "cpu")
    return trainer, read(trained / "last.safetensors")


def paths(value, prefix=()):
    """Every (path, value) inside a JSON value, the value itself first."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from paths(v, (*prefix, k))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(["trainer", "optimizer", "scheduler", "config"]), pick=st.integers(0, 10**6),
       new=JSON_VALUES, drop=st.booleans())
def test_fuzzed_checkpoint_metadata_loads_or_is_a_prlf_error(resumer, tmp_path_factory, key, pick, new, drop):
    trainer, (meta, tensors) = resumer
    value = json.loads(meta[key])
    spots = list(paths(value))
    where, _ = spots[pick % len(spots)]
    if not where:
        value = new
    else:
        parent = value
        for k in where[:-1]:
            parent = parent[k]
        if drop and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = new
    path = os.path.join(trainer.run.path, "last.safetensors")
    rewrite(path, {**meta, key: json.dumps(value)}, tensors)
    try:
        trainer.last = Checkpoint(path)
        trainer.last.check_config(trainer.cfg)
        trainer.resume()
    except PRLFError:
        pass
