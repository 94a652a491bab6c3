"""Masked multi-head attention in Triton: online-softmax forward and a one-launch backward.

``masked_attention(q, k, v, key_valid)``: q (B, H, Lq, Dh), k and v (B, H, Lk, Dh), key_valid (B,
Lk) bool (or None: all keys valid, nothing read); softmax scale Dh^-1/2. A query row with no valid
key returns exactly 0 and passes no gradient. The forward also stores the per-row log-sum-exp (base
2, +inf for a row with no valid key) so the backward recomputes the probabilities without a second
softmax pass. Offsets of whole samples are 64-bit (B·L·d passes 2³¹ at MOSEI's pooling shapes
from B ≈ 33,600). The ops that launch these kernels, their checks and autograd are registered in
prlf_fast/ops/attention.py.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from prlf_fast.kernels.common import dot_precision, launch, load_tile, next_block, store_tile

LOG2E = 1.4426950408889634
BLOCK_M = 16
BLOCK_N = 64
MAX_GRID_X, MAX_GRID_Y = 2**31 - 1, 65535   # CUDA's limits on a grid's axes 0 and 1
SAMPLE_ELEMENTS = 2**31    # offsets within one sample are 32-bit
# Largest head dim the kernels are built for: compile_check at Dh 64 is clean in bf16 on sm_80 and
# sm_90; at Dh 128 the bf16 backward spills 160–196 B (fp32: 17–71 KB), at Dh 256 4–7 KB, and the
# fp32 forward needs 276 KiB of shared memory, more than a block gets.
MAX_HEAD_DIM = 64


def unsupported(batch: int, heads: int, queries: int, keys: int, head_dim: int) -> str | None:
    """Why the kernels cannot launch for q (B, H, Lq, Dh) and k, v (B, H, Lk, Dh), or None: the
    grids (``forward``: B·H × ⌈Lq/16⌉ programs; ``backward``: B·H × (⌈Lk/64⌉ + ⌈Lq/16⌉)) within
    CUDA's limits, and the offsets within one sample (row · row stride, at most L·H·Dh for the
    (B, H, L, Dh) and (B, L, H, Dh) layouts) within 32 bits."""
    if batch * heads > MAX_GRID_X:
        return f"B·H = {batch * heads} programs exceed the grid's axis-0 limit ({MAX_GRID_X})"
    blocks = triton.cdiv(keys, BLOCK_N) + triton.cdiv(queries, BLOCK_M)
    if blocks > MAX_GRID_Y:
        return (f"Lq = {queries} and Lk = {keys} need {blocks} programs per head in the backward, over the "
                f"grid's axis-1 limit ({MAX_GRID_Y})")
    if max(queries, keys) * heads * head_dim >= SAMPLE_ELEMENTS:
        return (f"one sample's L·H·Dh = {max(queries, keys)}·{heads}·{head_dim} reaches 2³¹ elements "
                "(offsets within a sample are 32-bit)")
    return None


def untuned(head_dim: int) -> str | None:
    """Why the kernels are slower than they should be at head dim ``head_dim`` (they run), or None."""
    if head_dim > MAX_HEAD_DIM:
        return f"head dim {head_dim} > {MAX_HEAD_DIM}, where the kernels' tiles spill registers"
    return None


@triton.jit
def _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK: tl.constexpr):
    """Which keys of the block count: in range and (with a mask) marked valid."""
    if HAS_MASK:
        return tl.load(VALID + b * sab + keys * san, mask=keys < Lk, other=0) != 0
    return keys < Lk


@triton.jit
def _fwd_kernel(Q, K, V, VALID, O, LSE,
                sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sab, san,
                H, Lq, Lk, Dh, scale2,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                HAS_MASK: tl.constexpr, PREC: tl.constexpr):
    pid_bh, pid_m = tl.program_id(0).to(tl.int64), tl.program_id(1)   # 64-bit sample offsets
    b, h = pid_bh // H, pid_bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    q = load_tile(Q + b * sqb + h * sqh, rows, Lq, sqm, cols, Dh, sqd)
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        keys = start_n + tl.arange(0, BLOCK_N)
        valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
        k = load_tile(K + b * skb + h * skh, keys, Lk, skn, cols, Dh, skd)
        v = load_tile(V + b * svb + h * svh, keys, Lk, svn, cols, Dh, svd)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale2
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    has_key = l_i > 0.0
    out = tl.where(has_key[:, None], acc / tl.where(has_key, l_i, 1.0)[:, None], 0.0)
    lse = tl.where(has_key, m_i + tl.log2(tl.where(has_key, l_i, 1.0)), float("inf"))
    store_tile(O + pid_bh * Lq * Dh, out, rows, Lq, Dh, cols, Dh)
    tl.store(LSE + pid_bh * Lq + rows, lse, mask=rows < Lq)


@triton.jit
def _probs(q, k, lse, valid, scale2, PREC: tl.constexpr):
    """Softmax probabilities of a (query block × key block) tile from the stored log-sum-exp."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale2
    return tl.where(valid[None, :], tl.exp2(s - lse[:, None]), 0.0)


@triton.jit
def _query_block(q_base, sqm, sqd, DO, O, LSE, o_base, row_base, rows, Lq, cols, Dh):
    """q, dO, the log-sum-exp and Δ = rowsum(dO ⊙ O) of a block of query rows."""
    q = load_tile(q_base, rows, Lq, sqm, cols, Dh, sqd)
    do = load_tile(DO + o_base, rows, Lq, Dh, cols, Dh, 1)
    o = load_tile(O + o_base, rows, Lq, Dh, cols, Dh, 1)
    lse = tl.load(LSE + row_base + rows, mask=rows < Lq, other=float("inf"))
    return q, do, lse, tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)


@triton.jit
def _bwd_kernel(Q, K, V, VALID, O, DO, LSE, DQ, DK, DV,
                sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sab, san,
                H, Lq, Lk, Dh, scale, scale2, n_key_blocks,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                HAS_MASK: tl.constexpr, PREC: tl.constexpr):
    """Programs [0, n_key_blocks) accumulate dK, dV of one key block over all queries; the
    others accumulate dQ of one query block over all keys. No atomics: deterministic."""
    pid_bh, pid = tl.program_id(0).to(tl.int64), tl.program_id(1)     # 64-bit sample offsets
    b, h = pid_bh // H, pid_bh % H
    cols = tl.arange(0, BLOCK_D)
    q_base, k_base, v_base = Q + b * sqb + h * sqh, K + b * skb + h * skh, V + b * svb + h * svh
    o_base, kv_base, row_base = pid_bh * Lq * Dh, pid_bh * Lk * Dh, pid_bh * Lq
    if pid < n_key_blocks:
        keys = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
        k = load_tile(k_base, keys, Lk, skn, cols, Dh, skd)
        v = load_tile(v_base, keys, Lk, svn, cols, Dh, svd)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        for start_m in range(0, Lq, BLOCK_M):
            rows = start_m + tl.arange(0, BLOCK_M)
            q, do, lse, delta = _query_block(q_base, sqm, sqd, DO, O, LSE, o_base, row_base, rows, Lq, cols, Dh)
            p = _probs(q, k, lse, valid, scale2, PREC)
            dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PREC)
        dk = dk * scale
        store_tile(DK + kv_base, dk, keys, Lk, Dh, cols, Dh)
        store_tile(DV + kv_base, dv, keys, Lk, Dh, cols, Dh)
    else:
        rows = (pid - n_key_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
        q, do, lse, delta = _query_block(q_base, sqm, sqd, DO, O, LSE, o_base, row_base, rows, Lq, cols, Dh)
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start_n in range(0, Lk, BLOCK_N):
            keys = start_n + tl.arange(0, BLOCK_N)
            valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
            k = load_tile(k_base, keys, Lk, skn, cols, Dh, skd)
            v = load_tile(v_base, keys, Lk, svn, cols, Dh, svd)
            p = _probs(q, k, lse, valid, scale2, PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        dq = dq * scale
        store_tile(DQ + o_base, dq, rows, Lq, Dh, cols, Dh)


def _strides(q, k, v, key_valid):
    return (*q.stride(), *k.stride(), *v.stride(), *((0, 0) if key_valid is None else key_valid.stride()))


def forward(q, k, v, key_valid):
    """Launch the forward on the tensors' device: (output (B, H, Lq, Dh) contiguous, base-2
    log-sum-exp (B, H, Lq) float32). The body of op ``prlf_fast_triton::masked_attention_fwd``
    (prlf_fast/ops/attention.py), which checks the inputs."""
    b, h, lq, dh = q.shape
    out = torch.empty((b, h, lq, dh), dtype=q.dtype, device=q.device)
    lse = torch.empty((b, h, lq), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse
    grid = (b * h, triton.cdiv(lq, BLOCK_M))  # B·H on axis 0: axis 1 is limited to 65535
    launch(_fwd_kernel, grid, q,
           q, k, v, q if key_valid is None else key_valid, out, lse, *_strides(q, k, v, key_valid),
           h, lq, k.shape[2], dh, LOG2E / math.sqrt(dh),
           BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=next_block(dh), HAS_MASK=key_valid is not None,
           PREC=dot_precision(q.dtype))
    return out, lse


def backward(grad_out, q, k, v, key_valid, out, lse):
    """Launch the backward: (dq, dk, dv), contiguous, in one launch. The body of op
    ``prlf_fast_triton::masked_attention_bwd``."""
    b, h, lq, dh = q.shape
    lk = k.shape[2]
    grad_out = grad_out.contiguous()
    empty = b * h * dh == 0 or lq == 0 or lk == 0   # nothing to launch: the gradients are 0
    alloc = torch.zeros if empty else torch.empty
    dq = alloc((b, h, lq, dh), dtype=q.dtype, device=q.device)
    dk = alloc((b, h, lk, dh), dtype=k.dtype, device=k.device)
    dv = alloc((b, h, lk, dh), dtype=v.dtype, device=v.device)
    if empty:
        return dq, dk, dv
    n_key_blocks = triton.cdiv(lk, BLOCK_N)
    grid = (b * h, n_key_blocks + triton.cdiv(lq, BLOCK_M))
    launch(_bwd_kernel, grid, q,
           q, k, v, q if key_valid is None else key_valid, out, grad_out, lse, dq, dk, dv,
           *_strides(q, k, v, key_valid),
           h, lq, lk, dh, 1.0 / math.sqrt(dh), LOG2E / math.sqrt(dh), n_key_blocks,
           BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=next_block(dh), HAS_MASK=key_valid is not None,
           PREC=dot_precision(q.dtype))
    return dq, dk, dv


def masked_attention(q, k, v, key_valid=None):
    """softmax(q kᵀ / √Dh over valid keys) v through the Triton kernels, differentiable (op
    ``prlf_fast_triton::masked_attention_fwd``); ``key_valid`` None = every key valid. Runs on
    CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``; ValueError on bad inputs."""
    return torch.ops.prlf_fast_triton.masked_attention_fwd(q, k, v, key_valid)[0]
