"""The training loop: AdamW with linear warm-up and cosine decay, gradient clipping, bf16 autocast
on CUDA, the intra-modality training protocol (docs/design.md §3) with optional modality dropout,
selection on the validation split at one missing rate, optional early stopping, checkpoints
for ``--resume`` (at every epoch end, and at the current step when interrupted)."""
from __future__ import annotations

import math
import os
import signal
import threading
import time

import torch
from tqdm import tqdm

from prlf_fast.batch import Batch
from prlf_fast.config import TrainConfig
from prlf_fast.data import missing
from prlf_fast.errors import PRLFError
from prlf_fast.eval.robustness import autocast, intra
from prlf_fast.io import state
from prlf_fast.io.atomic import Commit, read_jsonl, write_jsonl
from prlf_fast.io.checkpoint import Checkpoint, save_checkpoint
from prlf_fast.io.rundir import BEST, LAST, METRICS
from prlf_fast.model import PRLF
from prlf_fast.profiling import nvtx_range
from prlf_fast.train import distributed
from prlf_fast.train.optim import build_optimizer


class Trainer:
    """Trains one run in ``run`` (a RunDir) on ``splits`` (train/valid Split objects)."""

    def __init__(self, model_cfg, train_cfg: TrainConfig, splits: dict, run, device, backend="fast",
                 ctx: distributed.Context = distributed.Context()):
        self.cfg, self.tc, self.run, self.ctx = model_cfg, train_cfg, run, ctx
        self.device = torch.device(device)
        train_cfg.check_metric(model_cfg.dataset)
        self.train_split, self.valid_split = splits["train"], splits["valid"]
        # A checkpoint to resume from is checked against the config before the model exists.
        self.last = Checkpoint(run.file(LAST)) if os.path.lexists(run.file(LAST)) else None
        if self.last is not None:
            self.last.check_config(model_cfg)
        torch.manual_seed(train_cfg.seed)
        self.model = PRLF(model_cfg, backend=backend).to(self.device)
        text = self.model.encoders["text"]
        for split in (self.train_split, self.valid_split):
            if hasattr(text, "check_ids") and split.text_ids is not None:
                text.check_ids(split.text_ids)
        self.net = distributed.wrap(self.model, ctx, self.device)
        n, b = len(self.train_split), train_cfg.batch_size
        # A last global batch smaller than the number of ranks would leave a rank without data.
        self.steps_per_epoch = n // b + (1 if n % b >= ctx.world_size else 0)
        if self.steps_per_epoch == 0:
            raise PRLFError(f"the training split has {n} samples: fewer than the {ctx.world_size} ranks")
        self.optimizer, self.scheduler = build_optimizer(self.model, train_cfg, self.steps_per_epoch * train_cfg.epochs)
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": None,
                      "stale": 0, "stopped_early": False}
        self.mask_state = None  # generator state to resume a half-done epoch from
        self.history: list = []
        self.listeners: list = []  # called with each epoch's metrics record once it is written
        self._stop = threading.Event()
        self._warned_nan = False

    # -- checkpoints -------------------------------------------------------------------------
    def _rng(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def save(self, path: str, mask_generator=None) -> None:
        """Write the resumable checkpoint (model, optimizer, scheduler, RNG, position) to ``path``."""
        rng = self._rng()
        if mask_generator is not None:
            rng["mask"] = mask_generator.get_state()
        save_checkpoint(path, self.model, self.cfg, self.optimizer, self.scheduler,
                        trainer=self.state, rng=rng)

    def resume(self) -> None:
        """Restore model, optimizer, scheduler, RNG and position from the run's last checkpoint
        (a run stopped before its first checkpoint starts again from the beginning)."""
        ckpt = self.last
        if ckpt is None:
            self.run.log(f"--resume: no {LAST} yet; starting from the beginning")
            return
        where = f"checkpoint {ckpt.path}"
        state.check_position(ckpt.trainer, self.tc.epochs, self.steps_per_epoch, f"{where}: trainer")
        rng = ckpt.part("rng")
        if "torch" not in rng:
            raise PRLFError(f"{where}: rng/torch is missing (cannot resume from it)")
        live = {"torch": torch.get_rng_state(),
                "mask": missing.epoch_generator(self.tc.seed, 0, self.device).get_state()}
        if self.device.type == "cuda":
            live["cuda"] = torch.cuda.get_rng_state(self.device)
        state.check_rng(rng, live, where)
        ckpt.restore_model(self.model)
        ckpt.restore_optimizer(self.optimizer)
        ckpt.restore_scheduler(self.scheduler)
        self.state.update(ckpt.trainer)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.mask_state = rng.get("mask") if self.state["batch"] else None
        # Records written after the checkpoint are redone (identically) by the resumed run.
        records = read_jsonl(self.run.file(METRICS))
        if not all(isinstance(h, dict) and state.check_int(h.get("step")) for h in records):
            raise PRLFError(f"{self.run.file(METRICS)}: every record must be an object with an integer 'step'")
        self.history = [h for h in records if h["step"] <= self.state["step"]]
        self.run.log(f"resumed from {LAST}: epoch {self.state['epoch']}, batch {self.state['batch']}, "
                     f"step {self.state['step']}")

    # -- the loop ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current step, saving a checkpoint to resume from (SIGINT/SIGTERM)."""
        self._stop.set()

    def _handle_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}

        def handler(signum, frame):
            self.request_stop()
            signal.signal(signum, previous[signum])  # a second signal acts immediately

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _step(self, batch: Batch, global_size: int) -> dict:
        with autocast(self.device, self.tc.amp):
            out = self.net(batch)
        losses = self.model.loss(out, batch)
        loss = losses["total"]
        if self.ctx.distributed:
            # DDP averages gradients over ranks; weigh each shard so that equals the global mean.
            loss = loss * (self.ctx.world_size * batch.size / global_size)
        self.optimizer.zero_grad(set_to_none=True)
        with nvtx_range("backward"):
            loss.backward()
        with nvtx_range("optimizer"):
            if self.tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
        return {k: v.detach() for k, v in losses.items()}

    def _epoch_batches(self, epoch: int):
        """Yield (batch number, global batch, its size) for ``epoch`` from the saved position on."""
        g = torch.Generator().manual_seed(self.tc.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.train_split), generator=g)
        b = self.tc.batch_size
        for i in range(self.state["batch"], self.steps_per_epoch):
            idx = perm[i * b:(i + 1) * b]
            with nvtx_range("data"):
                batch = self.train_split.batch(idx)
            yield i, batch, len(idx)

    def _corrupt(self, batch: Batch, generator) -> Batch:
        with nvtx_range("data"):
            if self.tc.train_missing:
                # The batch is a fresh gather from Split.batch, so corrupting it in place is safe.
                batch = missing.train_corrupt(batch, generator, inplace=True)
            if self.tc.modality_dropout > 0:
                drop = missing.modality_subsets if self.tc.modality_dropout_scheme == "subset" \
                    else missing.modality_dropout
                batch = drop(batch, self.tc.modality_dropout, generator)
        return batch

    def validate(self) -> dict:
        rec = intra(self.model, self.valid_split, self.cfg.dataset, [self.tc.select_rate],
                    [self.tc.select_seed], self.tc.eval_batch_size, self.device, self.tc.amp)
        return rec[0]["metrics"]

    def fit(self) -> dict:
        """Train to the configured number of epochs (or early stop); return the trainer state."""
        previous = self._handle_signals()
        try:
            while self.state["epoch"] < self.tc.epochs and not self.state["stopped_early"]:
                self._train_epoch()
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
        return self.state

    def _train_epoch(self) -> None:
        epoch, tc = self.state["epoch"], self.tc
        self.model.train()
        generator = missing.epoch_generator(tc.seed, epoch, self.device)
        if self.mask_state is not None:
            generator.set_state(self.mask_state)
            self.mask_state = None
        # Loss sums of a half-done epoch come back from the checkpoint, so its record is whole.
        partial = self.state.pop("partial", None) or {"sums": None, "count": 0}
        sums = None if partial["sums"] is None else {k: torch.tensor(v, device=self.device)
                                                     for k, v in partial["sums"].items()}
        count, start = partial["count"], time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch, initial=self.state["batch"], desc=f"epoch {epoch + 1}/{tc.epochs}",
                   disable=not self.ctx.is_main or None, leave=False, dynamic_ncols=True)
        for i, batch, size in self._epoch_batches(epoch):
            batch = self._corrupt(batch, generator)
            if self.ctx.distributed:
                batch = batch.rows(self.ctx.shard(torch.arange(size, device=batch.text.device)))
            losses = self._step(batch, size)
            sums = losses if sums is None else {k: sums[k] + losses[k] for k in sums}
            count += 1
            self.state["batch"], self.state["step"] = i + 1, self.state["step"] + 1
            bar.update(1)
            if i % 10 == 9:
                bar.set_postfix(loss=f"{float(sums['total']) / count:.4f}")
            if self.ctx.any(self._stop.is_set(), self.device):
                bar.close()
                self.state["partial"] = {"sums": {k: float(v) for k, v in sums.items()}, "count": count}
                if self.ctx.is_main:
                    self.save(self.run.file(LAST), generator)
                self.run.log(f"interrupted at step {self.state['step']} (epoch {epoch + 1}, batch {i + 1}); "
                             f"saved {LAST}; continue with --resume")
                raise KeyboardInterrupt
        bar.close()
        train = {k: float(self.ctx.mean(v)) / max(count, 1) for k, v in (sums or {}).items()}
        valid = self.validate()
        score = valid[tc.select_metric]
        if math.isnan(score) and not self._warned_nan:
            self._warned_nan = True
            self.run.log(f"warning: validation {tc.select_metric} is NaN at epoch {epoch + 1} (undefined "
                         "on these predictions, e.g. Corr of a constant prediction); a NaN score never "
                         "counts as an improvement, and any number improves on it")
        improved = tc.better(score, self.state["best_score"])
        self.state.update(epoch=epoch + 1, batch=0)
        if improved:
            self.state.update(best_score=score, best_epoch=epoch + 1, stale=0)
        else:
            self.state["stale"] += 1
        if tc.patience and self.state["stale"] >= tc.patience:
            self.state["stopped_early"] = True
        record = {"epoch": epoch + 1, "step": self.state["step"], "lr": self.scheduler.get_last_lr()[0],
                  "seconds": round(time.perf_counter() - start, 3), "train": train, "valid": valid,
                  "select": {"metric": tc.select_metric, "rate": tc.select_rate, "score": score,
                             "best": improved}}
        self.history.append(record)
        if self.ctx.is_main:
            # The epoch's files become visible together (a kill leaves the previous epoch's).
            with Commit(self.run.path) as commit:
                if improved:
                    save_checkpoint(commit.file(BEST), self.model, self.cfg,
                                    trainer={"epoch": epoch + 1, "step": self.state["step"],
                                             "select": record["select"]})
                write_jsonl(commit.file(METRICS), self.history)
                self.save(commit.file(LAST))
            for listener in self.listeners:
                listener(record)
        self.run.log(f"epoch {epoch + 1}/{tc.epochs} step {self.state['step']}  loss {train.get('total', 0):.4f} "
                     f"(task {train.get('task', 0):.4f})  valid@{tc.select_rate} {tc.select_metric} {score:.4f}"
                     + ("  *best*" if improved else "") + f"  [{record['seconds']:.1f}s]")
        if self.state["stopped_early"]:
            self.run.log(f"early stop: no better validation {tc.select_metric} for {tc.patience} epochs")
