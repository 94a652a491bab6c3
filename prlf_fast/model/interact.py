"""Progressive Interaction (docs/design.md §4.3): the two weaker streams attend to the dominant anchor."""
from __future__ import annotations

import torch
from torch import nn

from prlf_fast.model.layers import FeedForward, MultiHeadAttention
from prlf_fast import ops


class InteractLayer(nn.Module):
    """One iteration: S_j += g_j · CrossAttn(LN(S_j), LN(A)); S_j += FFN(LN(S_j)).

    Both streams share the weights and the anchor, so their 2T query rows attend to the same
    T anchor keys in one attention call. The modules hold the parameters; ``ops.interact_iteration``
    runs them (the reference functions, or the fused Triton iteration with the same dropout
    semantics: in training mode, a keep mask per branch).
    """

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm_stream = nn.LayerNorm(d_model)
        self.norm_anchor = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim)
        self.drop = nn.Dropout(dropout)

    def fused_weights(self) -> list:
        """The parameters in the order of ``prlf_fast.ops.WEIGHT_NAMES``."""
        attn, ffn = self.attn, self.ffn
        return [self.norm_stream.weight, self.norm_stream.bias, self.norm_anchor.weight, self.norm_anchor.bias,
                attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias,
                attn.v_proj.weight, attn.v_proj.bias, attn.out_proj.weight, attn.out_proj.bias,
                self.norm_ffn.weight, self.norm_ffn.bias, ffn.fc1.weight, ffn.fc1.bias, ffn.fc2.weight, ffn.fc2.bias]

    def forward(self, streams, anchor, gates, backend: str = "reference"):
        """streams (B, 2, T, d), anchor (B, T, d), gates (B, 2) -> updated streams."""
        return ops.interact_iteration(streams, anchor, gates, self.fused_weights(), self.attn.n_heads,
                                      self.norm_stream.eps, self.drop.p, self.training, backend)


class ProgInteract(nn.Module):
    """N = ``cfg.n_interact`` iterations (0: the streams pass through unchanged); gates are the
    streams' reliability weights, or 1 with ``cfg.gate_streams`` false (docs/design.md §4.6)."""

    def __init__(self, cfg):
        super().__init__()
        self.gate_streams = cfg.gate_streams
        self.layers = nn.ModuleList(
            InteractLayer(cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.dropout) for _ in range(cfg.n_interact)
        )
        self._stack_cache = None   # (key, stacked weights) for the persistent inference launch

    def forward(self, hidden, weights, order, backend: str = "reference"):
        """hidden (B, M, T, d), weights (B, M), order (B, M) -> anchor (B, T, d), streams (B, 2, T, d)."""
        b, _, t, d = hidden.shape
        idx = order[:, :, None, None].expand(-1, -1, t, d)
        ordered = torch.gather(hidden, 1, idx)
        anchor, streams = ordered[:, 0], ordered[:, 1:]
        gates = torch.gather(weights, 1, order[:, 1:])
        if not self.gate_streams:
            gates = torch.ones_like(gates)
        if not self.layers:
            return anchor, streams
        first = self.layers[0]
        return anchor, ops.interact_stack(streams, anchor, gates, [layer.fused_weights() for layer in self.layers],
                                          first.attn.n_heads, first.norm_stream.eps, first.drop.p, self.training,
                                          backend, stacked=lambda: self.stacked_weights(streams.device.type))

    def stacked_weights(self, device_type: str) -> list:
        """Each fused weight stacked over the iterations (projections in the autocast dtype under
        autocast). Cached until a parameter changes: the key holds each parameter's address and
        version counter, and the cache keeps the source tensors alive so an address is not reused."""
        low = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        per_layer = [layer.fused_weights() for layer in self.layers]
        sources = [w.detach() for ws in per_layer for w in ws]
        key = (low, tuple((w.data_ptr(), w._version) for w in sources))
        if self._stack_cache is None or self._stack_cache[0] != key:
            self._stack_cache = (key, ops.stack_weights(per_layer, device_type), sources)
        return self._stack_cache[1]
