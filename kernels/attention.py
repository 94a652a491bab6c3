"""Masked multi-head attention in Triton: online-softmax forward and a one-launch backward.

``masked_attention(q, k, v, key_valid)``: q (B, H, Lq, Dh), k and v (B, H, Lk, Dh), key_valid (B,
Lk) bool (or None: all keys valid, nothing read); softmax scale Dh^-1/2. A query row with no valid
key returns exactly 0 and passes no gradient. The forward also stores the per-row log-sum-exp (base
2, +inf for a row with no valid key) so the backward recomputes the probabilities without a second
softmax pass.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from prlf_fast import reference
from prlf_fast.kernels.common import dot_precision, next_block
from prlf_fast.ops.dispatch import triton_runs_on

LOG2E = 1.4426950408889634
BLOCK_M = 16
BLOCK_N = 64


@triton.jit
def _load_rows(ptr, stride_row, stride_col, rows, n_rows, cols, n_cols):
    """A (rows × cols) tile; out-of-range entries read 0."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride_row + cols[None, :] * stride_col, mask=mask, other=0.0)


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
    pid_bh, pid_m = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    q = _load_rows(Q + b * sqb + h * sqh, sqm, sqd, rows, Lq, cols, Dh)
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start_n in range(0, Lk, BLOCK_N):
        keys = start_n + tl.arange(0, BLOCK_N)
        valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
        k = _load_rows(K + b * skb + h * skh, skn, skd, keys, Lk, cols, Dh)
        v = _load_rows(V + b * svb + h * svh, svn, svd, keys, Lk, cols, Dh)
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
    o_ptrs = O + pid_bh * Lq * Dh + rows[:, None] * Dh + cols[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=(rows[:, None] < Lq) & (cols[None, :] < Dh))
    tl.store(LSE + pid_bh * Lq + rows, lse, mask=rows < Lq)


@triton.jit
def _probs(q, k, lse, valid, scale2, PREC: tl.constexpr):
    """Softmax probabilities of a (query block × key block) tile from the stored log-sum-exp."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale2
    return tl.where(valid[None, :], tl.exp2(s - lse[:, None]), 0.0)


@triton.jit
def _query_block(q_base, sqm, sqd, DO, O, LSE, o_base, row_base, rows, Lq, cols, Dh):
    """q, dO, the log-sum-exp and Δ = rowsum(dO ⊙ O) of a block of query rows."""
    q = _load_rows(q_base, sqm, sqd, rows, Lq, cols, Dh)
    do = _load_rows(DO + o_base, Dh, 1, rows, Lq, cols, Dh)
    o = _load_rows(O + o_base, Dh, 1, rows, Lq, cols, Dh)
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
    pid_bh, pid = tl.program_id(0), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    cols = tl.arange(0, BLOCK_D)
    q_base, k_base, v_base = Q + b * sqb + h * sqh, K + b * skb + h * skh, V + b * svb + h * svh
    o_base, kv_base, row_base = pid_bh * Lq * Dh, pid_bh * Lk * Dh, pid_bh * Lq
    if pid < n_key_blocks:
        keys = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
        k = _load_rows(k_base, skn, skd, keys, Lk, cols, Dh)
        v = _load_rows(v_base, svn, svd, keys, Lk, cols, Dh)
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
        kv_mask = (keys[:, None] < Lk) & (cols[None, :] < Dh)
        tl.store(DK + kv_base + keys[:, None] * Dh + cols[None, :], dk.to(DK.dtype.element_ty), mask=kv_mask)
        tl.store(DV + kv_base + keys[:, None] * Dh + cols[None, :], dv.to(DV.dtype.element_ty), mask=kv_mask)
    else:
        rows = (pid - n_key_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
        q, do, lse, delta = _query_block(q_base, sqm, sqd, DO, O, LSE, o_base, row_base, rows, Lq, cols, Dh)
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start_n in range(0, Lk, BLOCK_N):
            keys = start_n + tl.arange(0, BLOCK_N)
            valid = _key_valid(VALID, b, sab, san, keys, Lk, HAS_MASK)
            k = _load_rows(k_base, skn, skd, keys, Lk, cols, Dh)
            v = _load_rows(v_base, svn, svd, keys, Lk, cols, Dh)
            p = _probs(q, k, lse, valid, scale2, PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        dq = dq * scale
        tl.store(DQ + o_base + rows[:, None] * Dh + cols[None, :], dq.to(DQ.dtype.element_ty),
                 mask=(rows[:, None] < Lq) & (cols[None, :] < Dh))


def _strides(q, k, v, key_valid):
    return (*q.stride(), *k.stride(), *v.stride(), *((0, 0) if key_valid is None else key_valid.stride()))


@triton_op("prlf_fast_triton::masked_attention_fwd", mutates_args=())
def masked_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         key_valid: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (B, H, Lq, Dh) contiguous, base-2 log-sum-exp (B, H, Lq) float32); no mask = all valid."""
    b, h, lq, dh = q.shape
    out = torch.empty((b, h, lq, dh), dtype=q.dtype, device=q.device)
    lse = torch.empty((b, h, lq), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse
    grid = (b * h, triton.cdiv(lq, BLOCK_M))  # B·H on axis 0: axis 1 is limited to 65535
    wrap_triton(_fwd_kernel)[grid](
        q, k, v, q if key_valid is None else key_valid, out, lse, *_strides(q, k, v, key_valid),
        h, lq, k.shape[2], dh, LOG2E / math.sqrt(dh),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=next_block(dh), HAS_MASK=key_valid is not None,
        PREC=dot_precision(q.dtype))
    return out, lse


@triton_op("prlf_fast_triton::masked_attention_bwd", mutates_args=())
def masked_attention_bwd(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         key_valid: Optional[torch.Tensor], out: torch.Tensor,
                         lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), contiguous, in one launch."""
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
    wrap_triton(_bwd_kernel)[grid](
        q, k, v, q if key_valid is None else key_valid, out, grad_out, lse, dq, dk, dv,
        *_strides(q, k, v, key_valid),
        h, lq, lk, dh, 1.0 / math.sqrt(dh), LOG2E / math.sqrt(dh), n_key_blocks,
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_D=next_block(dh), HAS_MASK=key_valid is not None,
        PREC=dot_precision(q.dtype))
    return dq, dk, dv


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


def _check(q, k, v, key_valid):
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4 or q.shape[:2] != k.shape[:2] \
            or q.shape[3] != k.shape[3]:
        raise ValueError(f"masked_attention: expected q (B, H, Lq, Dh) and k, v (B, H, Lk, Dh); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if key_valid is not None and (key_valid.dtype != torch.bool
                                  or tuple(key_valid.shape) != (k.shape[0], k.shape[2])):
        raise ValueError(f"masked_attention: key_valid must be bool (B, Lk) = {(k.shape[0], k.shape[2])}; "
                         f"got {key_valid.dtype} {tuple(key_valid.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"masked_attention: q, k, v must share one of float32/float16/bfloat16; "
                         f"got {q.dtype}, {k.dtype}, {v.dtype}")


def masked_attention(q, k, v, key_valid=None):
    """softmax(q kᵀ / √Dh over valid keys) v; differentiable; ``key_valid`` None = every key valid.
    Runs the reference where Triton cannot run."""
    _check(q, k, v, key_valid)
    if not triton_runs_on(q.device.type):
        return reference.masked_attention(q, k, v, key_valid)
    return masked_attention_fwd(q, k, v, key_valid)[0]
