"""Triton kernels of prlf_fast (installed as ``prlf_fast.kernels``): device code and the host
functions that launch it; see docs/kernels.md. The ops that call those launchers (checks, fake
impls, autograd, selection) are registered in ``prlf_fast/ops/`` and imported with ``prlf_fast``;
``prlf_fast.ops.interact_iteration`` and ``interact_stack`` are the fused iteration's entry points."""
from prlf_fast.kernels.attention import masked_attention

__all__ = ["masked_attention"]
