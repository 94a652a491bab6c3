"""Reference masked multi-head attention (explicit matmul and softmax), and multi-head attention
with its projections around any masked attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def multi_head_attention(x_q, x_kv, key_valid, weights, n_heads: int, attention=masked_attention):
    """Multi-head attention with projections: x_q (B, Lq, d) attends over x_kv (B, Lk, d).

    ``weights`` = (W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o) in nn.Linear layout; ``attention`` the
    masked attention of the heads (default the reference above). A batch row whose keys are all
    invalid gets exactly 0, after the output projection too. Returns (B, Lq, d)."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights

    def split(x):
        b, n, d = x.shape
        return x.view(b, n, n_heads, d // n_heads).transpose(1, 2)

    q, k, v = split(F.linear(x_q, wq, bq)), split(F.linear(x_kv, wk, bk)), split(F.linear(x_kv, wv, bv))
    core = attention(q, k, v, key_valid)
    b, h, n, dh = core.shape
    out = F.linear(core.transpose(1, 2).reshape(b, n, h * dh), wo, bo)
    return zero_rows_without_keys(out, key_valid)


def zero_rows_without_keys(out, key_valid):
    """``out`` (B, L, d) with the batch rows that have no valid key set to 0."""
    if key_valid is None:
        return out
    return out * key_valid.any(dim=-1)[:, None, None].to(out.dtype)
