"""AdamW with linear warm-up and cosine decay; weight decay on weight matrices only."""
from __future__ import annotations

import math

import torch


class WarmupCosine:
    """LR factor: linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


SCORE_PARAMETERS = ("amre.alpha_raw", "amre.beta_raw", "amre.bias")


def param_groups(model, weight_decay: float, lr: float | None = None) -> list:
    """Weight decay on matrices only (not on biases, norms, positions, queries or α/β). With the
    model config's ``score_lr_scale`` ≠ 1 (and ``lr`` given), AMRE's score parameters (α, β and the
    per-modality bias) form a third group: learning rate lr × score_lr_scale, no weight decay."""
    scale = getattr(getattr(model, "config", None), "score_lr_scale", 1.0) if lr is not None else 1.0
    decay, no_decay, score = [], [], []
    for name, p in model.named_parameters():
        skip = p.dim() < 2 or name.endswith((".pos", ".queries")) or "norm" in name
        (score if scale != 1.0 and name in SCORE_PARAMETERS else no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return groups + ([{"params": score, "weight_decay": 0.0, "lr": lr * scale}] if score else [])


def build_optimizer(model, train_cfg, total_steps: int):
    """(AdamW, LambdaLR) for ``total_steps`` optimizer steps; AdamW's fused kernel where torch has
    one (CPU and CUDA), one launch for all parameters instead of a loop over them."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay, train_cfg.lr), lr=train_cfg.lr,
                                  fused=fused)
    warmup = round(train_cfg.warmup * total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total_steps))
