"""Reference masked multi-head attention: explicit matmul and softmax."""
from __future__ import annotations

import math

import torch


def masked_attention(q, k, v, key_valid=None):
    """softmax(q kᵀ / √Dh, keys restricted to ``key_valid``) v.

    q: (B, H, Lq, Dh); k, v: (B, H, Lk, Dh); key_valid: (B, Lk) bool or None (all valid).
    A query row with no valid key returns exactly 0 (and passes no gradient), never NaN.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if key_valid is None:
        return torch.matmul(torch.softmax(scores, dim=-1), v)
    valid = key_valid[:, None, None, :]
    scores = scores.masked_fill(~valid, float("-inf"))
    any_valid = key_valid.any(dim=-1)[:, None, None, None]
    # Rows without a valid key: softmax over zeros, then zeroed, so no NaN reaches any gradient.
    scores = torch.where(any_valid, scores, torch.zeros_like(scores))
    probs = torch.softmax(scores, dim=-1) * any_valid
    return torch.matmul(probs, v)
