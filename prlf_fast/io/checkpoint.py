"""Safetensors checkpoints holding the model, the optimizer and scheduler state and the trainer's
position, written atomically.

Layout: tensors ``model/<name>``, ``optim/<param index>/<key>`` and ``rng/<name>``; the safetensors
metadata holds JSON strings ``config`` (the model config), ``optimizer`` (param groups and
non-tensor state), ``scheduler`` and ``trainer``, and ``sha256``: the digest of every tensor's
name, dtype, shape and bytes and of every other metadata entry, checked on load: a checkpoint of
another format or without its digest is refused.

A checkpoint may come from someone else: before anything of it is used, the file must be a
regular file (``io.files``), every metadata entry passes its schema (``io.state``: only known
keys, types, ranges, sizes) and the tensor shapes in its header are compared with those of the
model its config describes, built on the ``meta`` device (no memory), so a config claiming a
huge model is refused before any allocation.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from prlf_fast.config import PRLFConfig
from prlf_fast.errors import PRLFError
from prlf_fast.io import state
from prlf_fast.io.atomic import WriteError, atomic_path
from prlf_fast.io.files import regular_path

FORMAT = "prlf_fast-checkpoint-2"
SIZE_LIMIT = 1 << 40
# Fields that may differ between the run that wrote a checkpoint and the one that reads it.
_LOCATION_FIELDS = ("bert_path",)


def tensor_digest(tensors: dict, meta: dict | None = None) -> str:
    """SHA-256 over the tensors in name order (name, dtype, shape, then the raw bytes), then over
    the metadata entries of ``meta`` in key order except ``sha256`` itself."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    for key in sorted(meta or {}):
        if key != "sha256":
            h.update(f"{key}\0{meta[key]}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def save_checkpoint(path: str, model, config: PRLFConfig, optimizer=None, scheduler=None,
                    trainer: dict | None = None, rng: dict | None = None) -> None:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(config.to_dict())}
    if optimizer is not None:
        opt = optimizer.state_dict()
        plain = {}
        for pid, state in opt["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optim/{pid}/{key}"] = value
                else:
                    plain.setdefault(str(pid), {})[key] = value
        meta["optimizer"] = json.dumps({"param_groups": opt["param_groups"], "state": plain})
    if scheduler is not None:
        meta["scheduler"] = json.dumps(scheduler.state_dict())
    if trainer is not None:
        meta["trainer"] = json.dumps(trainer)
    tensors.update({f"rng/{k}": v for k, v in (rng or {}).items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta["sha256"] = tensor_digest(tensors, meta)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, tmp, metadata=meta)
        except SafetensorError as exc:  # e.g. a full disk, reported by the Rust writer
            raise WriteError(path, str(exc)) from exc


class Checkpoint:
    """A loaded checkpoint: ``config``, ``trainer`` (dict) and the parts to restore."""

    def __init__(self, path: str):
        try:
            regular_path(path, SIZE_LIMIT)
        except (FileNotFoundError, NotADirectoryError):
            raise PRLFError(f"checkpoint {path} does not exist") from None
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                self.tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise PRLFError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise PRLFError(f"checkpoint {path} is not a prlf_fast checkpoint of this version "
                            f"(format {meta.get('format')!r}, expected {FORMAT!r})")
        if "sha256" not in meta:
            raise PRLFError(f"checkpoint {path} is damaged: its SHA-256 entry is missing")
        if tensor_digest(self.tensors, meta) != meta["sha256"]:
            raise PRLFError(f"checkpoint {path} is damaged: its data does not match the SHA-256 "
                            "stored when it was written")
        self.path = path
        try:
            self.config = PRLFConfig.from_dict(json.loads(meta["config"]))
            self.trainer = json.loads(meta.get("trainer", "{}"))
            self._optimizer = json.loads(meta["optimizer"]) if "optimizer" in meta else None
            self._scheduler = json.loads(meta["scheduler"]) if "scheduler" in meta else None
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise PRLFError(f"checkpoint {path} has unreadable metadata: {exc}") from exc
        state.check_trainer(self.trainer, f"checkpoint {path}: trainer")
        state.check_tensor_names(self.tensors, f"checkpoint {path}")

    def part(self, prefix: str) -> dict:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + "/")}

    def check_config(self, expected: PRLFConfig) -> None:
        """Raise a PRLFError naming every field where this checkpoint's config differs, or every
        model tensor whose shape the config implies differs from the checkpoint's (checked on
        the ``meta`` device: call it before building the model)."""
        mine, theirs = self.config.to_dict(), expected.to_dict()
        diff = [f"{k}={mine[k]!r} (checkpoint) vs {theirs[k]!r}" for k in mine
                if k not in _LOCATION_FIELDS and mine[k] != theirs.get(k)]
        if diff:
            raise PRLFError(f"checkpoint {self.path} belongs to another model config: " + ", ".join(diff))
        if expected.text_encoder == "features":  # a BERT's sizes come from its own folder
            from prlf_fast.model import PRLF

            with torch.device("meta"):
                shapes = {k: v.shape for k, v in PRLF(expected, backend="reference").state_dict().items()}
            saved = self.part("model")
            self._check_shapes(saved, shapes, "model tensors")
            if set(saved) != set(shapes):
                raise PRLFError(f"checkpoint {self.path} does not match the model: missing "
                                f"{sorted(set(shapes) - set(saved))[:5]}, unexpected "
                                f"{sorted(set(saved) - set(shapes))[:5]}")

    def _check_shapes(self, saved: dict, expected: dict, what: str) -> None:
        """Raise a PRLFError listing the tensors whose saved shape differs from ``expected``."""
        bad = [f"{k} {tuple(saved[k].shape)} (checkpoint) vs {tuple(v)}" for k, v in expected.items()
               if k in saved and tuple(saved[k].shape) != tuple(v)]
        if bad:
            raise PRLFError(f"checkpoint {self.path} holds {what} of another shape: "
                            + ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))

    def restore_model(self, model) -> None:
        saved = self.part("model")
        self._check_shapes(saved, {k: v.shape for k, v in model.state_dict().items()}, "model tensors")
        missing, unexpected = model.load_state_dict(saved, strict=False)
        if missing or unexpected:
            raise PRLFError(f"checkpoint {self.path} does not match the model: missing "
                            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")

    def restore_optimizer(self, optimizer) -> None:
        if self._optimizer is None:
            raise PRLFError(f"checkpoint {self.path} holds no optimizer state (cannot resume from it)")
        state.check_optimizer(self._optimizer, self.part("optim"), optimizer, f"checkpoint {self.path}: optimizer")
        saved = {int(pid): dict(values) for pid, values in self._optimizer["state"].items()}
        for key, value in self.part("optim").items():
            pid, name = key.split("/", 1)
            saved.setdefault(int(pid), {})[name] = value
        optimizer.load_state_dict({"state": saved, "param_groups": self._optimizer["param_groups"]})

    def restore_scheduler(self, scheduler) -> None:
        if self._scheduler is None:
            raise PRLFError(f"checkpoint {self.path} holds no scheduler state (cannot resume from it)")
        state.check_like(self._scheduler, scheduler.state_dict(), f"checkpoint {self.path}: scheduler")
        scheduler.load_state_dict(self._scheduler)
