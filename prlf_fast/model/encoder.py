"""Per-modality encoder (docs/design.md §4.1): projection, learned positions, masked query pooling,
pre-LN layers over the pooled tokens, final LayerNorm."""
from __future__ import annotations

import torch
from torch import nn

from prlf_fast.model.layers import EncoderLayer, MultiHeadAttention


class ModalityEncoder(nn.Module):
    def __init__(self, name: str, in_dim: int, max_len: int, cfg):
        super().__init__()
        d = cfg.d_model
        self.name, self.max_len = name, max_len
        self.in_proj = nn.Linear(in_dim, d)
        self.pos = nn.Parameter(torch.randn(max_len, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(cfg.n_tokens, d) * 0.02)
        self.norm_q = nn.LayerNorm(d)
        self.norm_x = nn.LayerNorm(d)
        self.pool = MultiHeadAttention(d, cfg.n_heads)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.n_heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.n_encoder_layers)
        )
        self.norm_out = nn.LayerNorm(d)

    def embed(self, x, valid):
        """Input projection plus learned positions: (B, L, d_m) -> (B, L, d)."""
        if x.shape[1] > self.max_len:
            raise ValueError(f"{self.name} input has {x.shape[1]} positions; this model allows at "
                             f"most {self.max_len} ({self.name}_len of the config)")
        return self.in_proj(x) + self.pos[: x.shape[1]]

    def forward(self, x, valid, backend: str = "reference"):
        """x (B, L, d_m), valid (B, L) bool -> H (B, T, d)."""
        e = self.embed(x, valid)
        pooled = self.pool.pool(self.norm_q(self.queries), self.norm_x(e), valid, backend=backend)
        return self.tokens(self.queries + self.drop(pooled), backend)

    def tokens(self, h, backend: str = "reference"):
        """The layers over the pooled tokens and the final LayerNorm: (B, T, d) -> H (B, T, d)."""
        for layer in self.layers:
            h = layer(h, backend=backend)
        return self.norm_out(h)

    def absent(self, batch_size: int, backend: str = "reference"):
        """H (B, T, d) of samples with no valid position, without their inputs: the pooling adds
        exactly 0 to the queries (docs/design.md §4.1), so H depends on the parameters only. In eval mode
        equal, bit for bit, to ``forward`` on inputs of ``batch_size`` samples that are all absent."""
        return self.tokens(self.queries.expand(batch_size, -1, -1).contiguous(), backend)
