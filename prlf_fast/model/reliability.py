"""AMRE's variants (docs/model.md "AMRE variants"), each an ablation
switch of ``PRLFConfig`` whose default keeps the formulation of docs/design.md §4.2 bit for bit:

- ``fisher_params="bias"``: the Fisher-information trace over the head's biases θ = (b1, b2)
  only, F_b = (1 − ‖p‖²) + Σ_k p_k ‖G_k‖² − ‖G p‖²: the two terms of docs/design.md §4.2's F without
  their factors (‖u‖² + 1) and (‖z‖² + 1), so it does not grow with the norms of the head's
  input and hidden layer, which differ between modalities (``bias_fisher``).
- ``reliability_params="modality"``: α_m, β_m and a bias b_m per modality,
  s_m = α_m log c_m − β_m log(1 + F_m) + b_m (``AMRE`` holds them).
- ``lambda_anchor > 0``: a training loss that rewards choosing well (``anchor_loss``). In each
  training step ProgInteract and the head also run with each modality as the anchor, on the same
  encodings and without gradient (``anchor_predictions``); the target distribution over the
  sample's present modalities is softmax(−|ŷ_m − y| / T), T = ``anchor_temperature``, and the
  loss is its cross-entropy with the reliability weights softmax(s / τ). As in QMF (Zhang et al.,
  ICML 2023) a modality whose prediction has the higher loss must get the lower weight, and the
  score is trained to rank modalities as their losses do; as in PDF (Cao et al., ICML 2024) the
  modalities' scores are calibrated relative to one another, on the sample at hand.
"""
from __future__ import annotations

import torch

from prlf_fast.config import MODALITIES
from prlf_fast.reference.fisher import fisher_spread


def bias_fisher(a, logits, w2):
    """F_b (B, M): the trace of the Fisher information of the biases (b1, b2) of each head under
    its own predictive distribution. a (B, M, h) pre-activations, logits (B, M, K), w2 (M, K, h)."""
    p = torch.softmax(logits, dim=-1)
    return (1.0 - p.square().sum(dim=-1)) + fisher_spread(a, p, w2)


@torch.no_grad()
def anchor_predictions(model, hidden, present):
    """(B, 3): the prediction with each modality forced as the anchor (``PRLF.fuse``; an absent
    one falls back to the adaptive rule), on ``PRLF.encode``'s outputs, without gradient and in
    eval mode: the targets must rank the anchors, not each call's own dropout masks."""
    was_training = model.training
    model.eval()
    try:
        return torch.stack([model.fuse(hidden, present, anchor=m).prediction for m in MODALITIES], dim=-1)
    finally:
        model.train(was_training)


def anchor_loss(scores, predictions, label, tau: float, temperature: float):
    """Mean over samples with at least two present modalities of the cross-entropy between
    softmax(−|predictions − y| / T) and softmax(scores / τ), both over the present modalities;
    0 (with a gradient path) when there is none. scores (B, M) with −inf where absent,
    predictions (B, M), label (B,)."""
    present = torch.isfinite(scores)
    rows = present.sum(dim=-1) >= 2
    keep = present & rows[:, None]        # rows with fewer than two present modalities drop out
    err = (predictions.detach().float() - label.float()[:, None]).abs()

    def masked(x):   # −inf where not kept; rows without two present modalities all 0 (no NaN)
        return torch.where(rows[:, None], x.masked_fill(~keep, float("-inf")), 0.0)

    target = torch.softmax(masked(-err / temperature), dim=-1)
    log_w = torch.log_softmax(masked(scores.float()) / tau, dim=-1)
    ce = -(target * log_w.masked_fill(~keep, 0.0)).sum(dim=-1) * rows
    return ce.sum() / rows.sum().clamp_min(1)
