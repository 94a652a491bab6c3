"""Adaptive Modality Reliability Estimator (docs/design.md §4.2)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from prlf_fast import ops, reference
from prlf_fast.config import MODALITIES
from prlf_fast.model.reliability import bias_fisher

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

    ``anchor`` (docs/design.md §4.6): "adaptive" (dominant = argmax s) or a modality name, which then
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


def reliability_scores(mode: str, alpha, beta, confidence, fisher, bias=None):
    """(B, M) scores of docs/design.md §4.6's ``reliability`` modes, before absent modalities are masked:
    "amre" α log c − β log(1 + F); "confidence" α log c; "fisher" −β log(1 + F); "uniform" 0.
    α, β: scalars or (M,) per modality; ``bias`` (M,) or None is added (not in "uniform").
    Parameters stay in the graph with a zero gradient where a mode drops them (DistributedDataParallel
    and the optimizers expect a gradient for every parameter)."""
    if mode == "amre":
        scores = alpha * confidence.log() - beta * torch.log1p(fisher)
    elif mode == "confidence":
        scores = alpha * confidence.log() - 0.0 * beta
    elif mode == "fisher":
        scores = 0.0 * alpha - beta * torch.log1p(fisher)
    elif mode == "uniform":
        return torch.zeros_like(confidence) + 0.0 * (alpha + beta) + (0.0 if bias is None else 0.0 * bias)
    else:
        raise ValueError(f"unknown reliability mode {mode!r}")
    return scores if bias is None else scores + bias


class AMRE(nn.Module):
    """Recognition heads of all modalities, stored stacked so one batched op scores them."""

    def __init__(self, cfg, n_modalities: int = 3):
        super().__init__()
        m, d, h, k = n_modalities, cfg.d_model, cfg.recog_hidden, cfg.n_classes
        self.tau, self.mode, self.anchor, self.fisher_params = cfg.tau, cfg.reliability, cfg.anchor, cfg.fisher_params
        bound1, bound2 = 1.0 / math.sqrt(d), 1.0 / math.sqrt(h)
        self.w1 = nn.Parameter(torch.empty(m, h, d).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.empty(m, h).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(m, k, h).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.empty(m, k).uniform_(-bound2, bound2))
        # α, β: shared scalars (docs/design.md §4.2), or per modality with a bias (reliability_params).
        shape = (m,) if cfg.reliability_params == "modality" else ()
        self.alpha_raw = nn.Parameter(torch.full(shape, _SOFTPLUS_INV_1))
        self.beta_raw = nn.Parameter(torch.full(shape, _SOFTPLUS_INV_1))
        self.bias = nn.Parameter(torch.zeros(m)) if cfg.reliability_params == "modality" else None

    @property
    def alpha(self):
        return nn.functional.softplus(self.alpha_raw)

    @property
    def beta(self):
        return nn.functional.softplus(self.beta_raw)

    def forward(self, z, present, backend: str = "reference", anchor: str | None = None,
                scores=None) -> Reliability:
        """z (B, M, d) pooled modality summaries, present (B, M) bool; ``anchor`` overrides the
        config's anchor rule (see ``reliability_weights_and_order``); ``scores`` (B, M), if given,
        replaces the computed scores in the weights and the order (absent modalities stay −inf):
        the reliability permutation test (``prlf_fast.eval.permutation``) feeds other samples'."""
        a, _, logits = reference.recognition_logits(z, self.w1, self.b1, self.w2, self.b2)
        with torch.no_grad():
            if self.fisher_params == "bias":   # torch ops on every backend (prlf_fast.model.reliability)
                confidence = torch.softmax(logits.detach(), dim=-1).amax(dim=-1)
                fisher = bias_fisher(a.detach(), logits.detach(), self.w2.detach())
            else:
                confidence, fisher = ops.fisher_reliability(z.detach(), self.w1.detach(), self.b1.detach(),
                                                            self.w2.detach(), self.b2.detach(), backend)
        if scores is None:
            scores = reliability_scores(self.mode, self.alpha, self.beta, confidence, fisher, self.bias)
        scores = scores.masked_fill(~present, float("-inf"))
        weights, order = reliability_weights_and_order(scores, self.tau, anchor or self.anchor)
        return Reliability(logits, confidence, fisher, scores, weights, order)
