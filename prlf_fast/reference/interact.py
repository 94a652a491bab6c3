"""Reference ProgInteract iteration (docs/design.md §4.3): S1 = S + g ⊙ Dropout(CrossAttn(LN_s(S),
LN_a(A))), S2 = S1 + Dropout(FFN(LN_f(S1))), in plain PyTorch functions."""
from __future__ import annotations

import torch.nn.functional as F

from prlf_fast.reference.attention import masked_attention, multi_head_attention


def interact_iteration(streams, anchor, gates, weights, n_heads: int, eps: float = 1e-5, dropout: float = 0.0,
                       training: bool = False, attention=masked_attention):
    """streams (B, 2, T, d), anchor (B, T, d), gates (B, 2) -> updated streams (B, 2, T, d).

    ``weights`` in the order of ``prlf_fast.ops.WEIGHT_NAMES`` (nn.Linear and nn.LayerNorm
    layouts); dropout with probability ``dropout`` on both branches when ``training``; the two
    streams' 2T query rows attend to the same T anchor keys in one ``attention`` call."""
    ln_s, ln_sb, ln_a, ln_ab, *projections = weights[:12]
    ln_f, ln_fb, w1, b1, w2, b2 = weights[12:]
    b, j, t, d = streams.shape
    q = F.layer_norm(streams, (d,), ln_s, ln_sb, eps).reshape(b, j * t, d)
    kv = F.layer_norm(anchor, (d,), ln_a, ln_ab, eps)
    attended = multi_head_attention(q, kv, None, projections, n_heads, attention).view(b, j, t, d)
    streams = streams + gates[:, :, None, None] * F.dropout(attended, dropout, training)
    ffn = F.linear(F.gelu(F.linear(F.layer_norm(streams, (d,), ln_f, ln_fb, eps), w1, b1)), w2, b2)
    return streams + F.dropout(ffn, dropout, training)
