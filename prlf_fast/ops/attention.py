"""Masked multi-head attention, dispatched per backend and device."""
from __future__ import annotations

import torch.nn.functional as F

from prlf_fast import reference
from prlf_fast.ops.dispatch import implementation


def sdpa_masked_attention(q, k, v, key_valid=None, scale=None):
    """PyTorch SDPA with a boolean key mask; rows with no valid key return exactly 0.

    ``scale`` multiplies the scores (default 1/√Dh, as everywhere else)."""
    if key_valid is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    any_valid = key_valid.any(dim=-1)
    # An all-False row would give NaN: let it attend everywhere, then zero it.
    mask = (key_valid | ~any_valid[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out * any_valid[:, None, None, None].to(out.dtype)


def masked_attention(q, k, v, key_valid=None, backend: str = "fast"):
    impl = implementation("masked_attention", backend, q.device.type)
    if impl == "reference":
        return reference.masked_attention(q, k, v, key_valid)
    if impl == "sdpa":
        return sdpa_masked_attention(q, k, v, key_valid)
    from prlf_fast import kernels

    return kernels.masked_attention(q, k, v, key_valid)
