"""Adaptive Modality Reliability Estimator (DESIGN §4.2)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from prlf_fast import ops, reference
from prlf_fast.config import MODALITIES

_SOFTPLUS_INV_1 = math.log(math.e - 1.0)  # softplus(x) = 1


@dataclass
class Reliability:
    logits: torch.Tensor      # (B, M, K) recognition logits (differentiable)
    confidence: torch.Tensor  # (B, M) max_k p_k (constant)
    fisher: torch.Tensor      # (B, M) Fisher-information trace (constant)
    scores: torch.Tensor      # (B, M) α log c − β log(1 + F); −inf when absent
    weights: torch.Tensor     # (B, M) softmax(s / τ); 1/M each when all absent
    order: torch.Tensor       # (B, M) int64: dominant, r1, r2


def reliability_weights_and_order(scores, tau: float, anchor: str = "adaptive"):
    """Weights softmax(s/τ) (1/M each when every score is −inf) and the order (dominant, r1, r2):
    scores descending, ties to the lowest index (a stable sort).

    ``anchor`` (DESIGN §4.6): "adaptive" (dominant = argmax s) or a modality name, which then
    comes first wherever its score is finite (the modality is present); where it is absent the
    adaptive rule applies. The other two stay ordered by s. The weights do not depend on it."""
    any_present = torch.isfinite(scores).any(dim=-1, keepdim=True)
    weights = torch.softmax(torch.where(any_present, scores, torch.zeros_like(scores)) / tau, dim=-1)
    key = scores.detach()
    if anchor != "adaptive":
        fixed = torch.zeros_like(key, dtype=torch.bool)
        fixed[..., MODALITIES.index(anchor)] = True
        key = key.masked_fill(fixed & torch.isfinite(key), float("inf"))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    return weights, order


def reliability_scores(mode: str, alpha, beta, confidence, fisher):
    """(B, M) scores of DESIGN §4.6's ``reliability`` modes, before absent modalities are masked:
    "amre" α log c − β log(1 + F); "confidence" α log c; "fisher" −β log(1 + F); "uniform" 0.
    α and β stay in the graph with a zero gradient where a mode drops them (DistributedDataParallel
    and the optimizers expect a gradient for every parameter)."""
    if mode == "amre":
        return alpha * confidence.log() - beta * torch.log1p(fisher)
    if mode == "confidence":
        return alpha * confidence.log() - 0.0 * beta
    if mode == "fisher":
        return 0.0 * alpha - beta * torch.log1p(fisher)
    if mode == "uniform":
        return torch.zeros_like(confidence) + 0.0 * (alpha + beta)
    raise ValueError(f"unknown reliability mode {mode!r}")


class AMRE(nn.Module):
    """Recognition heads of all modalities, stored stacked so one batched op scores them."""

    def __init__(self, cfg, n_modalities: int = 3):
        super().__init__()
        m, d, h, k = n_modalities, cfg.d_model, cfg.recog_hidden, cfg.n_classes
        self.tau, self.mode, self.anchor = cfg.tau, cfg.reliability, cfg.anchor
        bound1, bound2 = 1.0 / math.sqrt(d), 1.0 / math.sqrt(h)
        self.w1 = nn.Parameter(torch.empty(m, h, d).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.empty(m, h).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(m, k, h).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.empty(m, k).uniform_(-bound2, bound2))
        self.alpha_raw = nn.Parameter(torch.tensor(_SOFTPLUS_INV_1))
        self.beta_raw = nn.Parameter(torch.tensor(_SOFTPLUS_INV_1))

    @property
    def alpha(self):
        return nn.functional.softplus(self.alpha_raw)

    @property
    def beta(self):
        return nn.functional.softplus(self.beta_raw)

    def forward(self, z, present, backend: str = "reference", anchor: str | None = None) -> Reliability:
        """z (B, M, d) pooled modality summaries, present (B, M) bool; ``anchor`` overrides the
        config's anchor rule (see ``reliability_weights_and_order``)."""
        _, _, logits = reference.recognition_logits(z, self.w1, self.b1, self.w2, self.b2)
        score_fn = reference.fisher_reliability if backend == "reference" else ops.fisher_reliability
        with torch.no_grad():
            confidence, fisher = score_fn(z.detach(), self.w1.detach(), self.b1.detach(),
                                          self.w2.detach(), self.b2.detach())
        scores = reliability_scores(self.mode, self.alpha, self.beta, confidence, fisher)
        scores = scores.masked_fill(~present, float("-inf"))
        weights, order = reliability_weights_and_order(scores, self.tau, anchor or self.anchor)
        return Reliability(logits, confidence, fisher, scores, weights, order)
