"""Triton kernels of prlf_fast (installed as ``prlf_fast.kernels``); see docs/kernels.md."""
from prlf_fast.kernels.interact import interact_iteration
from prlf_fast.kernels.attention import masked_attention

__all__ = ["interact_iteration", "masked_attention"]
