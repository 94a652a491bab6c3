"""Masked multi-head attention: softmax(q kᵀ / √Dh over valid keys) v.

Schema   q (B, H, Lq, Dh), k and v (B, H, Lk, Dh), key_valid (B, Lk) bool or None (all valid); a
         query row with no valid key returns exactly 0. float32, float16, bfloat16.
Implementations
  reference  prlf_fast.reference.masked_attention (explicit matmul and softmax)
  sdpa       ``sdpa_masked_attention`` below (PyTorch SDPA with a boolean mask)
  triton     kernels/attention.py, registered here as ``prlf_fast_triton::masked_attention_fwd``
             and ``_bwd`` (``triton_op``: the body is also the fake impl, so its checks are the
             op's only input checks) with ``register_autograd``
Selection  ``select`` below, from the inputs' device, dtype and ``kernel_limits`` (the kernels'
           launch limits and head-dim range: ``kernels.attention.unsupported``, ``untuned``);
           ``python -m prlf_fast.info`` prints it with the reasons.
Tests      tests/test_triton_attention.py, tests/test_op_contracts.py
Benchmark  bench/test_bench_attention.py
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch.library import triton_op

from prlf_fast import reference
from prlf_fast.ops import registry
from prlf_fast.ops.registry import Choice

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def kernel_limits(q, k) -> tuple:
    """``(cannot, slow)`` of the Triton kernels for q (B, H, Lq, Dh) and k (B, H, Lk, Dh)
    (``kernels.attention.unsupported``, ``untuned``); no reasons where Triton is not installed or
    the inputs are not 4-d (the op's checks say why)."""
    if q.dim() != 4 or k.dim() != 4 or not registry.triton_importable():
        return registry.NO_LIMITS
    return head_limits(q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3])


def head_limits(batch, heads, queries, keys, head_dim) -> tuple:
    """``kernel_limits`` from the sizes (where triton is importable)."""
    from prlf_fast.kernels import attention as kernel

    return kernel.unsupported(batch, heads, queries, keys, head_dim), kernel.untuned(head_dim)


def select(backend: str, device: torch.device, dtype: torch.dtype, limits: tuple) -> Choice:
    if backend == "reference":
        return Choice("masked_attention", "reference", {"triton": "backend 'reference'", "sdpa": "backend 'reference'"})
    no_triton = registry.triton_unavailable(device)
    cannot, slow = limits
    if backend == "triton":
        if no_triton or cannot:
            raise registry.refuse("masked_attention", device, no_triton or cannot)
        return Choice("masked_attention", "triton", {"sdpa": "backend 'triton'", "reference": "backend 'triton'"})
    if no_triton is None and dtype not in TRITON_DTYPES:
        no_triton = f"the kernel takes float32, float16 or bfloat16, not {dtype}"
    no_triton = no_triton or cannot or slow
    if no_triton is None and device.type == "cuda":
        return Choice("masked_attention", "triton", {"sdpa": "slower than the Triton kernel on CUDA",
                                                     "reference": "slower than the Triton kernel"})
    return Choice("masked_attention", "sdpa", {
        "triton": no_triton or "the interpreter is for tests: SDPA is faster on the CPU",
        "reference": "slower than SDPA"})


registry.register("masked_attention", select)


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
    """The op under ``backend`` (module docstring); differentiable."""
    impl = registry.implementation("masked_attention", backend, q.device, q.dtype, kernel_limits(q, k))
    if impl == "reference":
        return reference.masked_attention(q, k, v, key_valid)
    if impl == "sdpa":
        return sdpa_masked_attention(q, k, v, key_valid)
    return masked_attention_fwd(q, k, v, key_valid)[0]


def multi_head_attention(x_q, x_kv, key_valid, weights, n_heads: int, backend: str = "fast"):
    """``reference.multi_head_attention`` (the projections) around this op under ``backend``."""
    return reference.multi_head_attention(x_q, x_kv, key_valid, weights, n_heads,
                                          functools.partial(masked_attention, backend=backend))


def _check(q, k, v, key_valid):
    """The op's input checks (run eagerly and on fake tensors); ValueError."""
    torch._check_value(q.dim() == 4 and k.dim() == 4 and v.dim() == 4 and k.shape == v.shape
                       and q.shape[:2] == k.shape[:2] and q.shape[3] == k.shape[3],
                       lambda: f"masked_attention: expected q (B, H, Lq, Dh) and k, v (B, H, Lk, Dh); "
                               f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if key_valid is not None:
        torch._check_value(key_valid.dtype == torch.bool and key_valid.dim() == 2
                           and key_valid.shape == (k.shape[0], k.shape[2]),
                           lambda: f"masked_attention: key_valid must be bool (B, Lk) = "
                                   f"{(k.shape[0], k.shape[2])}; got {key_valid.dtype} {tuple(key_valid.shape)}")
    torch._check_value(q.dtype == k.dtype == v.dtype and q.dtype in TRITON_DTYPES,
                       lambda: f"masked_attention: q, k, v must share one of float32/float16/bfloat16; "
                               f"got {q.dtype}, {k.dtype}, {v.dtype}")


@triton_op("prlf_fast_triton::masked_attention_fwd", mutates_args=())
def masked_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         key_valid: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (B, H, Lq, Dh) contiguous, base-2 log-sum-exp (B, H, Lq) float32)."""
    _check(q, k, v, key_valid)
    from prlf_fast.kernels import attention

    return attention.forward(q, k, v, key_valid)


@triton_op("prlf_fast_triton::masked_attention_bwd", mutates_args=())
def masked_attention_bwd(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         key_valid: Optional[torch.Tensor], out: torch.Tensor,
                         lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), contiguous; the inputs are the forward's (checked there)."""
    from prlf_fast.kernels import attention

    return attention.backward(grad_out, q, k, v, key_valid, out, lse)


def _setup_context(ctx, inputs, output):
    q, k, v, key_valid = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, key_valid, out, lse)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, key_valid, out, lse = ctx.saved_tensors
    dq, dk, dv = masked_attention_bwd(grad_out, q, k, v, key_valid, out, lse)
    return dq, dk, dv, None


masked_attention_fwd.register_autograd(_backward, setup_context=_setup_context)
registry.opaque_when_interpreted(masked_attention_fwd, masked_attention_bwd)
