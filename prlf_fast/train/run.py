"""A whole run: data in, trained and selected model, robustness results, report. What the
``train`` and ``eval`` sub-commands call."""
from __future__ import annotations

import os
import sys
import time

import torch

import prlf_fast
from prlf_fast import malloc, provenance, threads
from prlf_fast.config import PRLFConfig, TrainConfig
from prlf_fast.data.missing import DEFAULT_RATES
from prlf_fast.data.runs import data_spec, load_splits
from prlf_fast.errors import PRLFError
from prlf_fast.eval.permutation import permutation_test
from prlf_fast.eval.robustness import robustness
from prlf_fast.io.atomic import Commit, read_jsonl, write_json
from prlf_fast.io.checkpoint import Checkpoint
from prlf_fast.io.rundir import BEST, METRICS, RESULTS, RunDir
from prlf_fast.model import PRLF
from prlf_fast.report.run import write_report
from prlf_fast.train import distributed
from prlf_fast.train.trainer import Trainer


def run_config(model_cfg: PRLFConfig, train_cfg: TrainConfig, spec: dict, rates, seeds) -> dict:
    train_cfg.check_metric(model_cfg.dataset)
    return {"prlf_fast": prlf_fast.__version__, "model": model_cfg.to_dict(),
            "train": train_cfg.__dict__.copy(), "data": spec,
            "eval": {"rates": list(rates) if rates is not None else list(DEFAULT_RATES),
                     "seeds": list(seeds)}}


def check_backend(backend: str, device) -> None:
    """Raise a PRLFError when ``backend`` cannot run every op on ``device`` (before any work)."""
    from prlf_fast.ops import OPS, implementation

    try:
        for op in OPS:
            implementation(op, backend, torch.device(device).type)
    except RuntimeError as exc:
        raise PRLFError(f"--backend {backend} on {device}: {exc}") from exc


def train(run: RunDir, config: dict, device, backend: str, resume: bool, evaluate: bool = True,
          tensorboard: bool = False) -> dict:
    """Train (or resume) the run described by ``config``, then evaluate it; return the state.
    ``tensorboard`` also writes the metrics.jsonl scalars as TensorBoard event files.

    The run directory is locked for the whole run; an interrupted commit in it is finished or
    discarded first (docs/training.md)."""
    started = time.time()
    device = torch.device(device)
    check_backend(backend, device)
    model_cfg = PRLFConfig.from_dict(config["model"])
    train_cfg = TrainConfig.from_dict(config["train"])
    ctx = distributed.setup(device)
    run.writer = ctx.is_main
    try:
        with run.session(resume):
            splits = load_splits(config["data"], model_cfg, device)
            ctx.barrier()
            trainer = Trainer(model_cfg, train_cfg, splits, run, device, backend, ctx)
            if not resume:  # after the model is built: a BERT folder that fails leaves nothing
                run.write_config({**config, "provenance": provenance.collect(device, started)})
            if resume:
                trainer.resume()
            if tensorboard and ctx.is_main:  # after resume: it rewrites the history resumed from
                from prlf_fast.report.tensorboard import TensorBoardLog

                trainer.listeners.append(TensorBoardLog(run.path, trainer.history))
            if not resume:
                n = {k: len(v) for k, v in splits.items()}
                run.log(f"training {model_cfg.dataset} on {config['data']['path'] or 'synthetic data'} "
                        f"(train/valid/test {n['train']}/{n['valid']}/{n['test']}) on {device} "
                        f"backend {backend}, {ctx.world_size} rank(s), {trainer.steps_per_epoch} steps/epoch")
            run.log(threads.summary())
            run.log(malloc.summary())
            try:
                state = trainer.fit()
            finally:
                for listener in trainer.listeners:
                    listener.close()
            ctx.barrier()
            if evaluate and ctx.is_main:  # the other ranks are done: no collective follows
                _evaluate(run, config, run, device, backend, splits=splits)
            return state
    finally:
        distributed.teardown(ctx)


def evaluate_run(run_dir: str, data_path: str | None = None, rates=None, seeds=None, device="cpu",
                 backend: str = "fast", batch_size: int | None = None, out: str | None = None,
                 force: bool = False, permutations: int = 0, permutation_seed: int = 0) -> dict:
    """Both robustness protocols on the test split with the run's selected checkpoint; writes
    results.json, report.md and the plots (as one unit) into ``out`` (default: the run
    directory), holding its lock. Another ``out`` that already holds results needs ``force``.
    ``permutations`` > 0 adds the reliability permutation test with that many permutations
    (``prlf_fast.eval.permutation``; results.json key ``permutation``)."""
    run = RunDir(run_dir)
    config = run.read_config()
    check_backend(backend, device)
    beside = out is not None and os.path.realpath(out) != os.path.realpath(run_dir)
    target = RunDir(out, echo=False) if beside else run
    with target.session(resume=None):
        if target is not run and os.path.exists(target.file(RESULTS)) and not force:
            raise PRLFError(f"{target.path} already holds evaluation results ({RESULTS}); "
                            "use --force to replace them or choose another --out")
        return _evaluate(run, config, target, device, backend, data_path, rates, seeds, batch_size,
                         permutations=permutations, permutation_seed=permutation_seed)


def _evaluate(run: RunDir, config: dict, out: RunDir, device, backend: str, data_path=None, rates=None,
              seeds=None, batch_size=None, splits: dict | None = None, permutations: int = 0,
              permutation_seed: int = 0) -> dict:
    """``evaluate_run`` for a caller that holds ``out``'s session."""
    start, started = time.perf_counter(), time.time()
    model_cfg = PRLFConfig.from_dict(config["model"])
    train_cfg = TrainConfig.from_dict(config["train"])
    ckpt = Checkpoint(run.file(BEST))
    ckpt.check_config(model_cfg)
    spec = data_spec(data_path) if data_path is not None else config["data"]
    if splits is None:
        splits = load_splits(spec, model_cfg, device, needed=("test",))
    model = PRLF(model_cfg, backend=backend).to(device)
    ckpt.restore_model(model)
    rates = config["eval"]["rates"] if rates is None else list(rates)
    seeds = config["eval"]["seeds"] if seeds is None else list(seeds)
    test = splits["test"]
    batch_size = batch_size or train_cfg.eval_batch_size
    results = robustness(model, test, model_cfg.dataset, rates, seeds, batch_size, device, train_cfg.amp)
    if permutations:
        permutation_start = time.perf_counter()
        results["permutation"] = permutation_test(model, test, model_cfg.dataset, rates, seeds, permutations,
                                                  permutation_seed, batch_size, device, train_cfg.amp)
        results["permutation"]["seconds"] = round(time.perf_counter() - permutation_start, 2)
    seconds = round(time.perf_counter() - start, 2)
    results = {"dataset": model_cfg.dataset, "split": "test", "n_samples": len(test), "data": spec,
               "checkpoint": {"file": BEST, **ckpt.trainer}, "backend": backend, "device": str(device),
               "eval_seconds": seconds, "provenance": provenance.collect(device, started), **results}
    select = ckpt.trainer.get("select", {})
    info = {"dataset": model_cfg.dataset, "data": spec["path"] or f"synthetic {spec['synthetic']}",
            "checkpoint": f"{BEST} (epoch {ckpt.trainer.get('epoch')}, validation {select.get('metric')} "
                          f"{select.get('score', float('nan')):.4f} at missing rate {select.get('rate')})",
            "test samples": len(test), "backend / device": f"{backend} / {device}",
            "evaluation time": f"{seconds:.1f} s", "provenance": provenance.line(results["provenance"])}
    with Commit(out.path) as commit:  # results, report and plots replace the old ones together
        write_json(commit.file(RESULTS), results)
        write_report(commit.staging, results, info, read_jsonl(run.file(METRICS)), train_cfg.select_metric)
    message = (f"evaluated {BEST} on {len(test)} test samples: intra average "
               f"{_headline(results['intra']['average']['mean'])}; inter average "
               f"{_headline(results['inter']['average']['mean'])}; wrote {RESULTS}, report.md, plots/")
    if out is run:
        run.log(message)
    else:  # an evaluation beside the run leaves the run's own log alone
        print(f"{message} into {out.path}", file=sys.stderr)
    return results


def _headline(m: dict) -> str:
    keys = [k for k in ("Has0_acc_2", "Mult_acc_2", "MAE", "Corr") if k in m]
    return ", ".join(f"{k} {m[k]:.4f}" for k in keys)
