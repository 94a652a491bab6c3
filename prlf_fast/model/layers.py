"""Building blocks shared by the encoders and ProgInteract."""
from __future__ import annotations

import math

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
        return self._zero_rows_without_keys(out, key_valid)

    def pool(self, queries, x_kv, key_valid=None, backend: str = "reference"):
        """Attention of batch-independent queries (T, d) over x_kv (B, L, d) -> (B, T, d).

        Equal to ``self(queries.expand(B, -1, -1), x_kv, key_valid)``. The "folded" implementation
        (backend "fast" where attention has no Triton kernel) never projects the L keys and values:
        per head h, q_h·(W_k,h x + b_k,h) = (W_k,hᵀ q_h)·x + const, and the constant cancels in the
        softmax; Σ_j p_j (W_v,h x_j + b_v,h) = W_v,h (Σ_j p_j x_j) + b_v,h. Attention then runs
        over x itself with H·T folded queries, about half the work of projecting keys and values.
        """
        if ops.implementation("query_pooling", backend, x_kv.device, x_kv.dtype) != "folded":
            return self(queries.expand(x_kv.shape[0], -1, -1), x_kv, key_valid, backend=backend)
        (b, _, d), t, h = x_kv.shape, queries.shape[0], self.n_heads
        q = self.q_proj(queries).view(t, h, d // h)
        folded = torch.einsum("thc,hcd->htd", q, self.k_proj.weight.view(h, d // h, d)).reshape(1, 1, h * t, d)
        ctx = ops.sdpa_masked_attention(folded.expand(b, -1, -1, -1), x_kv[:, None], x_kv[:, None], key_valid,
                                        scale=1.0 / math.sqrt(d // h))
        heads = torch.einsum("bhtd,hcd->bthc", ctx.view(b, h, t, d), self.v_proj.weight.view(h, d // h, d))
        # b_k cancels, so its exact gradient is 0; keep it in the graph so that it gets that 0
        # (DistributedDataParallel and the optimizers expect a gradient for every parameter).
        out = self.out_proj(heads.reshape(b, t, d) + self.v_proj.bias) + 0.0 * self.k_proj.bias.sum()
        return self._zero_rows_without_keys(out, key_valid)

    @staticmethod
    def _zero_rows_without_keys(out, key_valid):
        if key_valid is None:
            return out
        return out * key_valid.any(dim=-1)[:, None, None].to(out.dtype)


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
