"""``RunSpec``: a run described by plain values (the dataset, its data, the training settings and
model overrides given explicitly), turned into the run's config.json as ``prlf-fast train`` does;
and ``start``, which trains (or resumes) and evaluates it. The CLI and the sweep's cells both go
through them: nothing builds a parser or parses an argument list to start a run.

Imports no torch at module level (checking a sweep's settings stays cheap).
"""
from __future__ import annotations

import dataclasses
import json
import os

from prlf_fast.config import PRLFConfig, TrainConfig
from prlf_fast.errors import PRLFError

_NO_FLAGS = {"train_missing": "--no-train-missing", "amp": "--no-amp"}  # booleans that default on


def parse_value(text: str):
    """A ``KEY=VALUE`` value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pairs(items, what: str) -> dict:
    """``["k=v", ...]`` → ``{k: parsed v}``; a PRLFError names ``what`` and the bad item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PRLFError(f"{what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out


@dataclasses.dataclass
class RunSpec:
    """A new run. ``None`` fields take the defaults ``prlf-fast train`` documents.

    dataset: preset name (default ``mosi``). data: MMSA pickle or cache directory; None: the
    synthetic set, of ``synthetic`` = (train, valid, test) sizes (default: the embedded set's).
    train: TrainConfig settings over the preset's (``TRAIN_PRESETS``). model: PRLFConfig
    overrides. rates, mask_seeds: the robustness evaluation's (default 0.0 … 0.9; 0 1 2)."""

    dataset: str | None = None
    data: str | None = None
    synthetic: tuple | None = None
    train: dict = dataclasses.field(default_factory=dict)
    model: dict = dataclasses.field(default_factory=dict)
    rates: list | None = None
    mask_seeds: list | None = None

    def config(self) -> dict:
        """The run's config (config.json without provenance). Raises ValueError or PRLFError
        naming the first bad setting."""
        from prlf_fast.data.runs import SYNTHETIC_DEFAULT, data_spec
        from prlf_fast.eval.robustness import DEFAULT_SEEDS
        from prlf_fast.train.run import run_config

        dataset = self.dataset or "mosi"
        if self.data is not None and self.synthetic is not None:
            raise ValueError("--synthetic only applies without --data")
        sizes = None
        if self.synthetic is not None:
            n = list(self.synthetic)
            if len(n) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in n):
                shown = ",".join(map(str, n))
                raise ValueError(f"--synthetic {shown!r}: expected three positive sizes TRAIN,VALID,TEST")
            sizes = {**SYNTHETIC_DEFAULT, "n_train": n[0], "n_valid": n[1], "n_test": n[2]}
        model_cfg = PRLFConfig.preset(dataset, **self.model)
        train_cfg = TrainConfig.preset(dataset, synthetic=self.data is None, **self.train)
        return run_config(model_cfg, train_cfg, data_spec(self.data, sizes), self.rates,
                          self.mask_seeds or list(DEFAULT_SEEDS))

    def resumed(self, saved: dict) -> dict:
        """The saved config ``saved`` of the run being resumed, with this spec's evaluation
        rates and seeds if given; a setting given here that contradicts it is a PRLFError."""
        conflicts = [f"--{k.replace('_', '-')} {v!r} (run has {saved['train'].get(k)!r})"
                     for k, v in self.train.items() if saved["train"].get(k) != v]
        conflicts += [f"--set {k}={v!r} (run has {saved['model'].get(k)!r})"
                      for k, v in self.model.items() if saved["model"].get(k) != v]
        if self.dataset and self.dataset != saved["model"]["dataset"]:
            conflicts.append(f"--dataset {self.dataset} (run has {saved['model']['dataset']})")
        if self.data and os.path.abspath(self.data) != saved["data"]["path"]:
            conflicts.append(f"--data {self.data} (run has {saved['data']['path']})")
        if conflicts:
            raise PRLFError("--resume keeps the run's saved config; these options contradict it: "
                            + "; ".join(conflicts))
        if self.rates or self.mask_seeds:
            saved = {**saved, "eval": {"rates": self.rates or saved["eval"]["rates"],
                                       "seeds": self.mask_seeds or saved["eval"]["seeds"]}}
        return saved

    def argv(self) -> list:
        """The ``prlf-fast train`` options that describe this spec: what a run's provenance
        records as its command (never parsed back)."""
        argv = ["--dataset", self.dataset] if self.dataset else []
        if self.data is not None:
            argv += ["--data", self.data]
        if self.synthetic is not None:
            argv += ["--synthetic", ",".join(map(str, self.synthetic))]
        for key, value in self.train.items():
            if key in _NO_FLAGS:
                argv += [] if value else [_NO_FLAGS[key]]
            else:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        for key, value in self.model.items():
            plain = isinstance(value, str) and parse_value(value) == value  # reads back as itself
            argv += ["--set", f"{key}={value if plain else json.dumps(value)}"]
        if self.rates is not None:
            argv += ["--rates", *map(str, self.rates)]
        if self.mask_seeds is not None:
            argv += ["--seeds", *map(str, self.mask_seeds)]
        return argv


def start(spec: RunSpec, out: str, device: str = "auto", backend: str = "fast", resume: bool = False,
          evaluate: bool = True, tensorboard: bool = False) -> tuple[dict, dict]:
    """Train the run ``spec`` in the run directory ``out`` (or, with ``resume``, continue the
    one there from its last checkpoint, keeping its saved config), then run the robustness
    evaluation unless ``evaluate`` is False; return the run's config and the trainer's final state."""
    from prlf_fast.io.rundir import RunDir
    from prlf_fast.train import distributed
    from prlf_fast.train.run import train

    if tensorboard:
        from prlf_fast.report.tensorboard import check_available

        check_available()
    run_dir = RunDir(out)
    config = spec.resumed(run_dir.read_config()) if resume else spec.config()
    return config, train(run_dir, config, distributed.device_for(device), backend, resume,
                         evaluate=evaluate, tensorboard=tensorboard)
