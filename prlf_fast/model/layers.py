"""Building blocks shared by the encoders and ProgInteract."""
from __future__ import annotations

import torch
from torch import nn

from prlf_fast import ops


class MultiHeadAttention(nn.Module):
    """Multi-head attention with q/k/v/output projections and an optional per-key validity mask.

    A batch row whose keys are all invalid gets an output of exactly 0 (after the output
    projection too), never NaN.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x_q, x_kv, key_valid=None, backend: str = "reference"):
        q, k, v = self.split(self.q_proj(x_q)), self.split(self.k_proj(x_kv)), self.split(self.v_proj(x_kv))
        core = ops.masked_attention(q, k, v, key_valid, backend=backend)
        b, h, n, dh = core.shape
        out = self.out_proj(core.transpose(1, 2).reshape(b, n, h * dh))
        if key_valid is not None:
            out = out * key_valid.any(dim=-1)[:, None, None].to(out.dtype)
        return out


class FeedForward(nn.Module):
    """FFN(x) = Linear(GELU(Linear(x))) with the exact (erf) GELU."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer over the T pooled tokens."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h, backend: str = "reference"):
        x = self.norm_attn(h)
        h = h + self.drop(self.attn(x, x, backend=backend))
        return h + self.drop(self.ffn(self.norm_ffn(h)))
