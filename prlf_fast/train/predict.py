"""Per-sample predictions of a trained run: ``load_run`` (the selected model) and ``predict_run``
(what ``prlf-fast predict`` calls): one CSV row per sample with the prediction, the dominant
modality and, per modality, presence, confidence, Fisher information and reliability weight."""
from __future__ import annotations

import csv
import os

from prlf_fast.config import MODALITIES, PRLFConfig, TrainConfig
from prlf_fast.data import Split, missing
from prlf_fast.data.runs import data_spec, prediction_data
from prlf_fast.eval import robustness as evaluate
from prlf_fast.io.atomic import atomic_path
from prlf_fast.io.checkpoint import Checkpoint
from prlf_fast.io.rundir import BEST, RunDir
from prlf_fast.metrics import mmsa_metrics
from prlf_fast.model import PRLF
from prlf_fast.train import distributed
from prlf_fast.train.run import check_backend


def load_run(run_dir, device="auto", backend: str = "fast") -> PRLF:
    """The trained ``PRLF`` of a run directory: its selected checkpoint (best.safetensors) in eval
    mode on ``device`` ("auto": CUDA when available, else CPU) with ``backend``; ``model.config``
    is the run's ``PRLFConfig``. Raises ``PRLFError`` for a directory that holds no finished run."""
    run = RunDir(os.fspath(run_dir), echo=False)
    cfg = PRLFConfig.from_dict(run.read_config()["model"])
    ckpt = Checkpoint(run.file(BEST))
    ckpt.check_config(cfg)
    device = distributed.device_for(device) if isinstance(device, str) else device
    check_backend(backend, device)
    model = PRLF(cfg, backend=backend).to(device)
    ckpt.restore_model(model)
    return model.eval()


def corruption(split: Split, intra_rate: float | None = None, mask_seed: int = 0, drop=()):
    """fn(batch, idx) -> batch: the intra protocol at ``intra_rate`` with ``mask_seed`` (the masks
    of ``prlf-fast eval`` at that rate and seed), whole modalities ``drop``ped, or unchanged."""
    if intra_rate is not None and drop:
        raise ValueError("choose one protocol: an intra-modality rate or modalities to drop, not both")
    if intra_rate is not None:
        return evaluate.at_rate(missing.eval_uniforms(split, mask_seed), intra_rate)
    drop = tuple(drop)
    return lambda batch, idx: missing.inter_drop(batch, drop) if drop else batch


# Spreadsheets run a cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading formula character gets a ``'``."""
    return "'" + value if value.startswith(FORMULA_START) else value


def write_predictions(path: str, ids: list, label, outputs: dict) -> None:
    """The CSV of ``prlf-fast predict``; ``label`` (N,) or None, ``outputs`` from ``evaluate.collect``.
    Sample ids are text cells (``text_cell``); numbers stay numbers (a negative label is ``-1.5``)."""
    columns = ["id", *(["label"] if label is not None else []), "prediction", "dominant"]
    per_modality = {"present": outputs["present"].long(), "confidence": outputs["confidence"].double(),
                    "fisher": outputs["fisher"].double(), "weight": outputs["weights"].double()}
    columns += [f"{q}_{m}" for m in MODALITIES for q in per_modality]
    pred = outputs["prediction"].tolist()
    dominant = outputs["dominant"].tolist()
    values = {q: v.tolist() for q, v in per_modality.items()}
    labels = label.tolist() if label is not None else None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, sample in enumerate(ids):
            row = [text_cell(str(sample)), *([repr(labels[i])] if labels is not None else []), repr(pred[i]),
                   MODALITIES[dominant[i]]]
            for j in range(len(MODALITIES)):
                row += [values[q][i][j] if q == "present" else repr(values[q][i][j]) for q in per_modality]
            w.writerow(row)


def predict_run(run_dir, out: str, data_path: str | None = None, split: str = "test",
                intra_rate: float | None = None, mask_seed: int = 0, drop=(), device="auto",
                backend: str = "fast", batch_size: int | None = None) -> dict | None:
    """Write ``out`` (CSV, one row per sample of ``split``) for the run in ``run_dir`` under one
    missing-modality condition; return the metrics when the data has labels, else None."""
    model = load_run(run_dir, device, backend)
    device = next(model.parameters()).device
    config = RunDir(os.fspath(run_dir), echo=False).read_config()
    train_cfg = TrainConfig.from_dict(config["train"])
    spec = data_spec(data_path) if data_path is not None else config["data"]
    data, ids, has_labels = prediction_data(spec, split, model.config, device)
    fn = corruption(data, intra_rate, mask_seed, drop)
    outputs = evaluate.collect(model, data, evaluate.corrupted(model, {"": fn}),
                               batch_size or train_cfg.eval_batch_size, device, train_cfg.amp,
                               evaluate.OUTPUT_FIELDS)[""]
    label = data.label.float().cpu() if has_labels else None
    write_predictions(out, ids, label, outputs)
    return mmsa_metrics(outputs["prediction"], label, model.config.dataset) if has_labels else None
