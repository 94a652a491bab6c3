"""Building blocks shared by the encoders and ProgInteract."""
from __future__ import annotations

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

    def weights(self) -> tuple:
        """(W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o): what the attention ops take."""
        return (self.q_proj.weight, self.q_proj.bias, self.k_proj.weight, self.k_proj.bias,
                self.v_proj.weight, self.v_proj.bias, self.out_proj.weight, self.out_proj.bias)

    def forward(self, x_q, x_kv, key_valid=None, backend: str = "reference"):
        """x_q (B, Lq, d) attends over x_kv (B, Lk, d) -> (B, Lq, d) (``ops.multi_head_attention``)."""
        return ops.multi_head_attention(x_q, x_kv, key_valid, self.weights(), self.n_heads, backend)

    def pool(self, queries, x_kv, key_valid=None, backend: str = "reference"):
        """Attention of batch-independent queries (T, d) over x_kv (B, L, d) -> (B, T, d), equal to
        ``self(queries.expand(B, -1, -1), x_kv, key_valid)`` (``ops.query_pooling``)."""
        return ops.query_pooling(queries, x_kv, key_valid, self.weights(), self.n_heads, backend)


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
