"""Helpers shared by the Triton kernels: tile loads and stores (device side), tile sizes, the
``tl.dot`` precision and the launch guard (host side)."""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch._subclasses.fake_tensor import is_fake
from torch.library import wrap_triton


@triton.jit
def load_tile(ptr, rows, n_rows, stride_r, cols, n_cols, stride_c):
    """The (rows × cols) tile at ``ptr + rows·stride_r + cols·stride_c`` in the pointer's dtype;
    out-of-range entries read 0. Callers pass 64-bit ``ptr`` offsets for whole samples; ``rows``
    and ``cols`` index within one sample."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0)


@triton.jit
def store_tile(ptr, x, rows, n_rows, stride_r, cols, n_cols):
    """Store ``x`` (rows × cols, unit column stride) in the pointer's dtype; in range only."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * stride_r + cols[None, :], x.to(ptr.dtype.element_ty), mask=mask)


def next_block(n: int) -> int:
    """Tile extent for a dimension of size ``n``: a power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, triton.next_power_of_2(n))


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision`` for operands of ``dtype``: "ieee" (exact fp32 products, no
    TF32) for float32, so the kernels meet the float32 reference's error bound; for 16-bit
    operands the option has no effect (it governs fp32 operands only), and Triton's default
    "tf32" is passed."""
    return "ieee" if dtype == torch.float32 else "tf32"


def on_device(t: torch.Tensor):
    """Context in which a launch on ``t`` runs on ``t``'s GPU and its current stream, whatever
    device is current (as mamba's kernels do): ``torch.cuda.device(t.device)``; nothing on CPU
    (the interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def launch(kernel, grid, t: torch.Tensor, *args, **meta) -> None:
    """``wrap_triton(kernel)[grid](*args, **meta)`` on ``t``'s device (``on_device``). Compiled
    kernels are traced by ``wrap_triton`` under torch.compile. The interpreter's kernels cannot be
    (their ops stay opaque in graphs, ``ops.registry.opaque_when_interpreted``), so they are
    launched directly (torch < 2.13's ``wrap_triton`` refuses them), and on fake tensors (an op's
    fake impl, where only the outputs' shapes count) not at all."""
    if not isinstance(kernel, triton.runtime.JITFunction):
        if not is_fake(t):
            kernel[grid](*args, **meta)
        return
    with on_device(t):
        wrap_triton(kernel)[grid](*args, **meta)

