"""Triton kernels of prlf_fast (installed as ``prlf_fast.kernels``); see docs/kernels.md."""
from prlf_fast.kernels.masked_attention import masked_attention

__all__ = ["masked_attention"]
