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


def param_groups(model, weight_decay: float) -> list:
    """Weight decay on matrices only (not on biases, norms, positions, queries or α/β)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.dim() < 2 or name.endswith((".pos", ".queries")) or "norm" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, train_cfg, total_steps: int):
    """(AdamW, LambdaLR) for ``total_steps`` optimizer steps; AdamW's fused kernel where torch has
    one (CPU and CUDA), one launch for all parameters instead of a loop over them."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, fused=fused)
    warmup = round(train_cfg.warmup * total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total_steps))
