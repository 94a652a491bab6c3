"""Progressive Interaction (DESIGN §4.3): the two weaker streams attend to the dominant anchor."""
from __future__ import annotations

import torch
from torch import nn

from prlf_fast.model.layers import FeedForward, MultiHeadAttention


class InteractLayer(nn.Module):
    """One iteration: S_j += g_j · CrossAttn(LN(S_j), LN(A)); S_j += FFN(LN(S_j)).

    Both streams share the weights and the anchor, so their 2T query rows attend to the same
    T anchor keys in one attention call.
    """

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm_stream = nn.LayerNorm(d_model)
        self.norm_anchor = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, streams, anchor, gates, backend: str = "reference"):
        """streams (B, 2, T, d), anchor (B, T, d), gates (B, 2) -> updated streams."""
        b, j, t, d = streams.shape
        q = self.norm_stream(streams).reshape(b, j * t, d)
        attended = self.attn(q, self.norm_anchor(anchor), backend=backend).view(b, j, t, d)
        streams = streams + gates[:, :, None, None] * self.drop(attended)
        return streams + self.drop(self.ffn(self.norm_ffn(streams)))


class ProgInteract(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList(
            InteractLayer(cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.n_interact)
        )

    def forward(self, hidden, weights, order, backend: str = "reference"):
        """hidden (B, M, T, d), weights (B, M), order (B, M) -> anchor (B, T, d), streams (B, 2, T, d)."""
        b, _, t, d = hidden.shape
        idx = order[:, :, None, None].expand(-1, -1, t, d)
        ordered = torch.gather(hidden, 1, idx)
        anchor, streams = ordered[:, 0], ordered[:, 1:]
        gates = torch.gather(weights, 1, order[:, 1:])
        for layer in self.layers:
            streams = layer(streams, anchor, gates, backend=backend)
        return anchor, streams
