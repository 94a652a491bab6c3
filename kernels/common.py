"""Small host-side helpers shared by the Triton kernels."""
from __future__ import annotations

import torch
import triton


def next_block(n: int) -> int:
    """Tile extent for a dimension of size ``n``: a power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(n))


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: exact fp32 products for float32 tensors (no TF32), so the
    kernels meet the same error bound as the float32 reference; native for 16-bit types."""
    return "ieee" if dtype == torch.float32 else "tf32"
