"""Reference query pooling of the encoders (docs/design.md §4.1): T learned queries, the same for
every sample, attend over a modality's L frames through the attention projections."""
from __future__ import annotations

from prlf_fast.reference.attention import masked_attention, multi_head_attention


def query_pooling(queries, x_kv, key_valid, weights, n_heads: int, attention=masked_attention):
    """queries (T, d), x_kv (B, L, d), key_valid (B, L) bool or None -> (B, T, d); ``weights`` and
    ``attention`` as for ``multi_head_attention``. A sample without a valid frame gets exactly 0."""
    return multi_head_attention(queries.expand(x_kv.shape[0], -1, -1), x_kv, key_valid, weights, n_heads, attention)
