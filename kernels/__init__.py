"""Triton kernels of prlf_fast (installed as ``prlf_fast.kernels``); see docs/kernels.md."""
from prlf_fast.kernels.attention import masked_attention
from prlf_fast.kernels.interact import interact_iteration, interact_stack

__all__ = ["interact_iteration", "interact_stack", "masked_attention"]
