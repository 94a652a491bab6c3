"""One fused ProgInteract iteration (DESIGN §4.3) in Triton, forward and backward.

Per sample, with S the two streams (2T rows) and A the anchor (T rows):
    S1 = S + g ⊙ (CrossAttn(LN_s(S), LN_a(A)) Wo + bo)
    S2 = S1 + FFN(LN_f(S1))
The forward is ONE launch: each program takes a block of whole samples and runs every LayerNorm,
the q/k/v projections, all heads' attention, the output projection, the gate and residual and the
FFN in registers (the anchor keys of a block are shared by its samples' query rows through a
block-diagonal mask); for inference the same kernel runs all N iterations in one launch
(``interact_stack``), the streams staying in registers. The backward is one launch that recomputes
the forward for its block and writes the activation gradients (streams, anchor, gates), per-program
partial sums for every vector parameter (biases, LayerNorm affines) and the inputs/output-gradients
of each projection; the weight gradients are then five cuBLAS GEMMs (dW = dYᵀ X over the whole
batch) and the vector gradients one reduction. No atomics: the result is deterministic. Dropout
(training mode) uses keep masks drawn with torch's generator before the launch and read by both
kernels.

Precision: statistics, softmax, GELU and residuals in float32; projection operands in the
projection weights' dtype (float32 products exactly, without TF32). Activations (streams,
anchor, gates) may be in a wider dtype than the projections, as under autocast.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from prlf_fast.kernels.common import dot_precision, next_block

# The fused weights, in this order (nn.Linear layout: weight (out, in)).
WEIGHT_NAMES = ("ln_stream.weight", "ln_stream.bias", "ln_anchor.weight", "ln_anchor.bias",
                "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
                "out.weight", "out.bias", "ln_ffn.weight", "ln_ffn.bias",
                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
PROJECTION_INDICES = (4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17)   # the nn.Linear weights and biases
ROWS_PER_PROGRAM = 16    # stream rows per program: whole samples, so 16 // (2T) samples (≥ 1)
FFN_CHUNK = 32           # FFN hidden units per inner step
NUM_WARPS = 8            # at d = 128, 4 warps spill heavily and 16 cap registers at 128 (see compile_check)


@triton.jit
def _tile(ptr, rows, n_rows, stride_r, cols, n_cols, stride_c):
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride_r + cols[None, :] * stride_c, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _store_tile(ptr, x, rows, n_rows, stride_r, cols, n_cols):
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * stride_r + cols[None, :], x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _vec(ptr, idx, n):
    return tl.load(ptr + idx, mask=idx < n, other=0.0).to(tl.float32)


@triton.jit
def _dot(a, b, DT: tl.constexpr, PREC: tl.constexpr):
    return tl.dot(a.to(DT), b.to(DT), input_precision=PREC)


@triton.jit
def _normalize(x, cols, D, eps):
    """(x̂, rstd) of row-wise LayerNorm over the first D columns."""
    mean = tl.sum(x, axis=1) / D
    xc = tl.where(cols[None, :] < D, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / D + eps)
    return xc * rstd[:, None], rstd


@triton.jit
def _layernorm(x, w, b, cols, D, eps):
    """Row-wise LayerNorm over the first D columns."""
    xhat, rstd = _normalize(x, cols, D, eps)
    return xhat * w[None, :] + b[None, :]


@triton.jit
def _layernorm_bwd(dy, xhat, rstd, w, D):
    dxhat = dy * w[None, :]
    mean_d = tl.sum(dxhat, axis=1) / D
    mean_dx = tl.sum(dxhat * xhat, axis=1) / D
    return rstd[:, None] * (dxhat - mean_d[:, None] - xhat * mean_dx[:, None])


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _gelu_grad(x):
    return 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * tl.exp(-0.5 * x * x)


@triton.jit
def _dropout(x, KEEP, keep_scale, rows, n_rows, cols, D, DROPOUT: tl.constexpr):
    """x ⊙ keep / (1 − p) with the block's (rows × D) keep mask (uint8), or x without dropout."""
    if DROPOUT:
        x = x * _tile(KEEP, rows, n_rows, D, cols, D, 1) * keep_scale
    return x


@triton.jit
def _head_weight_t(W, h, Dh, D, hd, cols):
    """W[h·Dh:(h+1)·Dh, :]ᵀ as a (D × Dh) tile."""
    return _tile(W + h * Dh * D, cols, D, 1, hd, Dh, D)


@triton.jit
def _attend_head(xs, xa, wq_t, bq, wk_t, bk, wv_t, bv, same, scale, DT: tl.constexpr, PREC: tl.constexpr):
    """One head: (q, k, v, probabilities, output) for the block's stream rows and anchor keys."""
    q = _dot(xs, wq_t, DT, PREC) + bq[None, :]
    k = _dot(xa, wk_t, DT, PREC) + bk[None, :]
    v = _dot(xa, wv_t, DT, PREC) + bv[None, :]
    s = tl.where(same, _dot(q, tl.trans(k), DT, PREC) * scale, float("-inf"))
    m = tl.max(s, axis=1)
    p = tl.exp(s - tl.where(m == float("-inf"), 0.0, m)[:, None])
    denom = tl.sum(p, axis=1)
    p = p / tl.where(denom == 0.0, 1.0, denom)[:, None]
    return q, k, v, p, _dot(p, v, DT, PREC)


@triton.jit
def _load_block(S, A, G, s0, n_rows, n_keys, T, D, BR: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr):
    """The block's stream rows, anchor rows and per-row gate, in float32."""
    rows, keys, cols = tl.arange(0, BR), tl.arange(0, BT), tl.arange(0, BD)
    s = _tile(S + s0 * 2 * T * D, rows, n_rows, D, cols, D, 1)
    a = _tile(A + s0 * T * D, keys, n_keys, D, cols, D, 1)
    g = tl.load(G + s0 * 2 + rows // T, mask=rows < n_rows, other=0.0).to(tl.float32)
    return s, a, g


@triton.jit
def _attention_half(s, a, g, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO, C, KEEP_ATTN,
                    n_rows, n_keys, T, D, H, Dh, eps, scale, keep_scale,
                    BR: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, BDH: tl.constexpr,
                    STORE_C: tl.constexpr, DROPOUT: tl.constexpr, PREC: tl.constexpr):
    """LN of streams and anchor, all heads of the cross-attention, output projection, dropout,
    gate and residual for one block (``C`` and ``KEEP_ATTN`` point at the block's first row).
    Returns (LN(S), LN(A), the block-diagonal key mask, the attention branch after dropout and
    before the gate, S1)."""
    DT = WQ.dtype.element_ty
    rows, keys = tl.arange(0, BR), tl.arange(0, BT)
    cols, hd = tl.arange(0, BD), tl.arange(0, BDH)
    xs = _layernorm(s, _vec(LNSW, cols, D), _vec(LNSB, cols, D), cols, D, eps)
    xa = _layernorm(a, _vec(LNAW, cols, D), _vec(LNAB, cols, D), cols, D, eps)
    same = ((rows // (2 * T))[:, None] == (keys // T)[None, :]) \
        & (rows[:, None] < n_rows) & (keys[None, :] < n_keys)
    o = tl.zeros([BR, BD], tl.float32)
    for h in range(H):
        _, _, _, _, ch = _attend_head(
            xs, xa, _head_weight_t(WQ, h, Dh, D, hd, cols), _vec(BQ + h * Dh, hd, Dh),
            _head_weight_t(WK, h, Dh, D, hd, cols), _vec(BK + h * Dh, hd, Dh),
            _head_weight_t(WV, h, Dh, D, hd, cols), _vec(BV + h * Dh, hd, Dh), same, scale, DT, PREC)
        if STORE_C:
            _store_tile(C + h * Dh, ch, rows, n_rows, D, hd, Dh)
        o += _dot(ch, _tile(WO + h * Dh, hd, Dh, 1, cols, D, D), DT, PREC)
    o = _dropout(o + _vec(BO, cols, D)[None, :], KEEP_ATTN, keep_scale, rows, n_rows, cols, D, DROPOUT)
    s1 = s + g[:, None] * o
    return xs, xa, same, o, s1


@triton.jit
def _ffn_hidden(xf, W1, B1, W2, f0, F, D, cols, fc, DT: tl.constexpr, PREC: tl.constexpr):
    """Pre-GELU FFN hidden units f0..f0+BF and the two weight tiles they use."""
    w1_t = _tile(W1 + f0 * D, cols, D, 1, fc, F - f0, D)      # (D × BF) = W1[f0:f0+BF]ᵀ
    w2_t = _tile(W2 + f0, fc, F - f0, 1, cols, D, F)          # (BF × D) = W2[:, f0:f0+BF]ᵀ
    a1 = _dot(xf, w1_t, DT, PREC) + _vec(B1 + f0, fc, F - f0)[None, :]
    return a1, w1_t, w2_t


@triton.jit
def _iteration_fwd_kernel(S, A, G, OUT, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO,
                          LNFW, LNFB, W1, B1, W2, B2, KEEP_ATTN, KEEP_FFN,
                          B, T, D, H, Dh, F, eps, scale, keep_scale,
                          N_LAYERS: tl.constexpr, SB: tl.constexpr, BR: tl.constexpr, BT: tl.constexpr,
                          BD: tl.constexpr, BDH: tl.constexpr, BF: tl.constexpr, DROPOUT: tl.constexpr,
                          PREC: tl.constexpr):
    """N_LAYERS iterations (unrolled) with per-iteration weights stacked along a leading axis (1 in
    training); the block's streams stay in registers from the first iteration to the last."""
    DT = WQ.dtype.element_ty
    s0 = tl.program_id(0) * SB
    n_samples = tl.minimum(SB, B - s0)
    n_rows, n_keys = n_samples * 2 * T, n_samples * T
    rows, cols, fc = tl.arange(0, BR), tl.arange(0, BD), tl.arange(0, BF)
    s, a, g = _load_block(S, A, G, s0, n_rows, n_keys, T, D, BR, BT, BD)
    for i in tl.static_range(N_LAYERS):
        vec, mat, ffn = i * D, i * D * D, i * F * D
        keep = i * B * 2 * T * D + s0 * 2 * T * D
        _, _, _, _, s1 = _attention_half(
            s, a, g, LNSW + vec, LNSB + vec, LNAW + vec, LNAB + vec, WQ + mat, BQ + vec, WK + mat, BK + vec,
            WV + mat, BV + vec, WO + mat, BO + vec, OUT, KEEP_ATTN + keep,
            n_rows, n_keys, T, D, H, Dh, eps, scale, keep_scale, BR, BT, BD, BDH, False, DROPOUT, PREC)
        xf = _layernorm(s1, _vec(LNFW + vec, cols, D), _vec(LNFB + vec, cols, D), cols, D, eps)
        y = tl.zeros([BR, BD], tl.float32)
        for f0 in range(0, F, BF):
            a1, w1_t, w2_t = _ffn_hidden(xf, W1 + ffn, B1 + i * F, W2 + ffn, f0, F, D, cols, fc, DT, PREC)
            y += _dot(_gelu(a1), w2_t, DT, PREC)
        y = _dropout(y + _vec(B2 + vec, cols, D)[None, :], KEEP_FFN + keep, keep_scale, rows, n_rows, cols, D,
                     DROPOUT)
        s = s1 + y
    _store_tile(OUT + s0 * 2 * T * D, s, rows, n_rows, D, cols, D)


@triton.jit
def _iteration_bwd_kernel(S, A, G, DS2, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO,
                          LNFW, LNFB, W1, B1, W2, B2, KEEP_ATTN, KEEP_FFN,
                          DS, DA, DG, PART, XS, XA, C, XF, HH, DA1, DO, DQ, DKV, DY,
                          B, T, D, H, Dh, F, eps, scale, keep_scale,
                          SB: tl.constexpr, BR: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                          BDH: tl.constexpr, BF: tl.constexpr, BG: tl.constexpr, DROPOUT: tl.constexpr,
                          PREC: tl.constexpr):
    DT = WQ.dtype.element_ty
    pid = tl.program_id(0)
    s0 = pid * SB
    n_samples = tl.minimum(SB, B - s0)
    n_rows, n_keys = n_samples * 2 * T, n_samples * T
    rows, keys = tl.arange(0, BR), tl.arange(0, BT)
    cols, hd, fc = tl.arange(0, BD), tl.arange(0, BDH), tl.arange(0, BF)
    row0, key0 = s0 * 2 * T, s0 * T
    part = PART + pid * (11 * D + F)
    # Forward recomputation, storing the inputs of every projection.
    s, a, g = _load_block(S, A, G, s0, n_rows, n_keys, T, D, BR, BT, BD)
    xs, xa, same, o, s1 = _attention_half(
        s, a, g, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO, C + row0 * D, KEEP_ATTN + row0 * D,
        n_rows, n_keys, T, D, H, Dh, eps, scale, keep_scale, BR, BT, BD, BDH, True, DROPOUT, PREC)
    _store_tile(XS + row0 * D, xs, rows, n_rows, D, cols, D)
    _store_tile(XA + key0 * D, xa, keys, n_keys, D, cols, D)
    lnfw = _vec(LNFW, cols, D)
    xhat_f, rstd_f = _normalize(s1, cols, D, eps)
    xf = xhat_f * lnfw[None, :] + _vec(LNFB, cols, D)[None, :]
    _store_tile(XF + row0 * D, xf, rows, n_rows, D, cols, D)
    # FFN backward.
    ds2 = _tile(DS2 + row0 * D, rows, n_rows, D, cols, D, 1)
    dy = _dropout(ds2, KEEP_FFN + row0 * D, keep_scale, rows, n_rows, cols, D, DROPOUT)
    if DROPOUT:
        _store_tile(DY + row0 * D, dy, rows, n_rows, D, cols, D)
    dxf = tl.zeros([BR, BD], tl.float32)
    for f0 in range(0, F, BF):
        a1, w1_t, w2_t = _ffn_hidden(xf, W1, B1, W2, f0, F, D, cols, fc, DT, PREC)
        _store_tile(HH + row0 * F + f0, _gelu(a1), rows, n_rows, F, fc, F - f0)
        da1 = _dot(dy, tl.trans(w2_t), DT, PREC) * _gelu_grad(a1)
        _store_tile(DA1 + row0 * F + f0, da1, rows, n_rows, F, fc, F - f0)
        tl.store(part + 11 * D + f0 + fc, tl.sum(da1, axis=0), mask=fc < F - f0)
        dxf += _dot(da1, tl.trans(w1_t), DT, PREC)
    tl.store(part + 4 * D + cols, tl.sum(dy, axis=0), mask=cols < D)
    tl.store(part + 9 * D + cols, tl.sum(dxf * xhat_f, axis=0), mask=cols < D)
    tl.store(part + 10 * D + cols, tl.sum(dxf, axis=0), mask=cols < D)
    ds1 = ds2 + _layernorm_bwd(dxf, xhat_f, rstd_f, lnfw, D)
    # Gate and residual.
    groups = tl.arange(0, BG)
    row_dot = tl.sum(ds1 * o, axis=1)
    dg = tl.sum(tl.where((rows // T)[:, None] == groups[None, :], row_dot[:, None], 0.0), axis=0)
    tl.store(DG + s0 * 2 + groups, dg, mask=groups < 2 * n_samples)
    do = _dropout(g[:, None] * ds1, KEEP_ATTN + row0 * D, keep_scale, rows, n_rows, cols, D, DROPOUT)
    _store_tile(DO + row0 * D, do, rows, n_rows, D, cols, D)
    tl.store(part + 3 * D + cols, tl.sum(do, axis=0), mask=cols < D)
    # Parked in global memory (this program's rows only) to shorten register lifetimes: the
    # residual part of d streams, and the LayerNorm outputs, reloaded after a block barrier.
    _store_tile(DS + row0 * D, ds1, rows, n_rows, D, cols, D)
    tl.debug_barrier()
    # Attention backward, head by head.
    dxs = tl.zeros([BR, BD], tl.float32)
    dxa = tl.zeros([BT, BD], tl.float32)
    for h in range(H):
        wq_t = _head_weight_t(WQ, h, Dh, D, hd, cols)
        wk_t = _head_weight_t(WK, h, Dh, D, hd, cols)
        wv_t = _head_weight_t(WV, h, Dh, D, hd, cols)
        q, k, v, p, ch = _attend_head(xs, xa, wq_t, _vec(BQ + h * Dh, hd, Dh), wk_t, _vec(BK + h * Dh, hd, Dh),
                                      wv_t, _vec(BV + h * Dh, hd, Dh), same, scale, DT, PREC)
        dc = _dot(do, tl.trans(_tile(WO + h * Dh, hd, Dh, 1, cols, D, D)), DT, PREC)
        dv = _dot(tl.trans(p), dc, DT, PREC)
        dp = _dot(dc, tl.trans(v), DT, PREC)
        dz = p * (dp - tl.sum(dp * p, axis=1)[:, None])
        dq = _dot(dz, k, DT, PREC) * scale
        dk = _dot(tl.trans(dz), q, DT, PREC) * scale
        _store_tile(DQ + row0 * D + h * Dh, dq, rows, n_rows, D, hd, Dh)
        _store_tile(DKV + key0 * 2 * D + h * Dh, dk, keys, n_keys, 2 * D, hd, Dh)
        _store_tile(DKV + key0 * 2 * D + D + h * Dh, dv, keys, n_keys, 2 * D, hd, Dh)
        tl.store(part + h * Dh + hd, tl.sum(dq, axis=0), mask=hd < Dh)
        tl.store(part + D + h * Dh + hd, tl.sum(dk, axis=0), mask=hd < Dh)
        tl.store(part + 2 * D + h * Dh + hd, tl.sum(dv, axis=0), mask=hd < Dh)
        dxs += _dot(dq, tl.trans(wq_t), DT, PREC)
        dxa += _dot(dk, tl.trans(wk_t), DT, PREC) + _dot(dv, tl.trans(wv_t), DT, PREC)
    # LayerNorms of streams and anchor (statistics recomputed from the inputs).
    lnsw, lnaw = _vec(LNSW, cols, D), _vec(LNAW, cols, D)
    s, a, _ = _load_block(S, A, G, s0, n_rows, n_keys, T, D, BR, BT, BD)
    xhat_s, rstd_s = _normalize(s, cols, D, eps)
    xhat_a, rstd_a = _normalize(a, cols, D, eps)
    ds1 = _tile(DS + row0 * D, rows, n_rows, D, cols, D, 1)
    _store_tile(DS + row0 * D, ds1 + _layernorm_bwd(dxs, xhat_s, rstd_s, lnsw, D), rows, n_rows, D, cols, D)
    _store_tile(DA + key0 * D, _layernorm_bwd(dxa, xhat_a, rstd_a, lnaw, D), keys, n_keys, D, cols, D)
    tl.store(part + 5 * D + cols, tl.sum(dxs * xhat_s, axis=0), mask=cols < D)
    tl.store(part + 6 * D + cols, tl.sum(dxs, axis=0), mask=cols < D)
    tl.store(part + 7 * D + cols, tl.sum(dxa * xhat_a, axis=0), mask=cols < D)
    tl.store(part + 8 * D + cols, tl.sum(dxa, axis=0), mask=cols < D)


def _launch_config(streams, weights, n_heads):
    """Tile sizes: whole samples per program, every extent padded to a power of two ≥ 16."""
    _, _, t, d = streams.shape
    samples = max(1, ROWS_PER_PROGRAM // (2 * t))
    return dict(SB=samples, BR=next_block(samples * 2 * t), BT=next_block(samples * t), BD=next_block(d),
                BDH=next_block(d // n_heads), PREC=dot_precision(weights[4].dtype), num_warps=NUM_WARPS)


def _sizes(streams, weights, n_heads):
    """B, T, D, H, Dh, F of the launch (weights may carry a leading iteration axis)."""
    b, _, t, d = streams.shape
    return (b, t, d, n_heads, d // n_heads, weights[14].shape[-2])


def _keep_pointers(streams, keep_attn, keep_ffn):
    """The two keep masks, or placeholders that the kernels never read when there is no dropout."""
    return (streams, streams) if keep_attn is None else (keep_attn, keep_ffn)


def _forward(streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps, n_layers):
    out = torch.empty_like(streams)
    cfg = _launch_config(streams, weights, n_heads)
    grid = (triton.cdiv(streams.shape[0], cfg["SB"]),)
    if grid[0] == 0:
        return out
    sizes = _sizes(streams, weights, n_heads)
    wrap_triton(_iteration_fwd_kernel)[grid](
        streams, anchor, gates, out, *weights, *_keep_pointers(streams, keep_attn, keep_ffn),
        *sizes, eps, 1.0 / math.sqrt(sizes[4]), keep_scale,
        N_LAYERS=n_layers, BF=min(FFN_CHUNK, next_block(sizes[5])), DROPOUT=keep_attn is not None, **cfg)
    return out


@triton_op("prlf_fast_triton::interact_iteration_fwd", mutates_args=())
def interact_iteration_fwd(streams: torch.Tensor, anchor: torch.Tensor, gates: torch.Tensor,
                           weights: list[torch.Tensor], keep_attn: Optional[torch.Tensor],
                           keep_ffn: Optional[torch.Tensor], keep_scale: float, n_heads: int,
                           eps: float) -> torch.Tensor:
    """Updated streams (B, 2, T, d) after one iteration."""
    return _forward(streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps, 1)


@triton_op("prlf_fast_triton::interact_stack_fwd", mutates_args=())
def interact_stack_fwd(streams: torch.Tensor, anchor: torch.Tensor, gates: torch.Tensor,
                       stacked_weights: list[torch.Tensor], n_heads: int, eps: float) -> torch.Tensor:
    """Streams after all N iterations in one launch (inference: no dropout, no autograd)."""
    return _forward(streams, anchor, gates, stacked_weights, None, None, 1.0, n_heads, eps,
                    stacked_weights[0].shape[0])


@triton_op("prlf_fast_triton::interact_iteration_bwd", mutates_args=())
def interact_iteration_bwd(grad_out: torch.Tensor, streams: torch.Tensor, anchor: torch.Tensor,
                           gates: torch.Tensor, weights: list[torch.Tensor], keep_attn: Optional[torch.Tensor],
                           keep_ffn: Optional[torch.Tensor], keep_scale: float, n_heads: int,
                           eps: float) -> list[torch.Tensor]:
    """[d streams, d anchor, d gates, d of all vector parameters (bq, bk, bv, bo, b2, then the
    LayerNorm weight/bias of streams, anchor and FFN, then b1), d Wq, d [Wk; Wv], d Wo, d W1, d W2]."""
    b, _, t, d = streams.shape
    f = weights[14].shape[0]
    cfg = _launch_config(streams, weights, n_heads)
    n_prog = triton.cdiv(b, cfg["SB"])
    grad_out = grad_out.contiguous()
    dtype, dev = weights[4].dtype, streams.device
    rows, keys = b * 2 * t, b * t
    ds, da = torch.empty_like(streams), torch.empty_like(anchor)
    dg = torch.empty((b, 2), dtype=torch.float32, device=dev)
    part = torch.empty((n_prog, 11 * d + f), dtype=torch.float32, device=dev)
    xs, c, xf, do, dq = (torch.empty((rows, d), dtype=dtype, device=dev) for _ in range(5))
    xa = torch.empty((keys, d), dtype=dtype, device=dev)
    hh, da1 = (torch.empty((rows, f), dtype=dtype, device=dev) for _ in range(2))
    dkv = torch.empty((keys, 2 * d), dtype=dtype, device=dev)
    dropout = keep_attn is not None
    # The FFN branch's output gradient: grad_out itself, or (with dropout) written by the kernel.
    dy = torch.empty((rows, d), dtype=dtype, device=dev) if dropout else grad_out.view(rows, d).to(dtype)
    if n_prog:   # (an empty batch launches nothing: every sum and product below is over nothing, so 0)
        wrap_triton(_iteration_bwd_kernel)[(n_prog,)](
            streams, anchor, gates, grad_out, *weights, *_keep_pointers(streams, keep_attn, keep_ffn),
            ds, da, dg, part, xs, xa, c, xf, hh, da1, do, dq, dkv, dy,
            *_sizes(streams, weights, n_heads), eps, 1.0 / math.sqrt(d // n_heads), keep_scale,
            BF=min(FFN_CHUNK, next_block(f)), BG=triton.next_power_of_2(2 * cfg["SB"]), DROPOUT=dropout, **cfg)
    return [ds, da, dg.to(gates.dtype), part.sum(dim=0),
            dq.t() @ xs, dkv.t() @ xa, do.t() @ c, da1.t() @ xf, dy.t() @ hh]


def _setup_context(ctx, inputs, output):
    streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps = inputs
    ctx.save_for_backward(streams, anchor, gates, keep_attn, keep_ffn, *weights)
    ctx.keep_scale, ctx.n_heads, ctx.eps = keep_scale, n_heads, eps


def _backward(ctx, grad_out):
    streams, anchor, gates, keep_attn, keep_ffn, *weights = ctx.saved_tensors
    d = streams.shape[-1]
    ds, da, dg, d_vec, d_wq, d_wkv, d_wo, d_w1, d_w2 = interact_iteration_bwd(
        grad_out, streams, anchor, gates, weights, keep_attn, keep_ffn, ctx.keep_scale, ctx.n_heads, ctx.eps)
    d_bq, d_bk, d_bv, d_bo, d_b2, d_lsw, d_lsb, d_law, d_lab, d_lfw, d_lfb = d_vec[: 11 * d].split(d)
    d_wk, d_wv = d_wkv.split(d)
    d_weights = [d_lsw, d_lsb, d_law, d_lab, d_wq, d_bq, d_wk, d_bk, d_wv, d_bv, d_wo, d_bo,
                 d_lfw, d_lfb, d_w1, d_vec[11 * d:], d_w2, d_b2]
    d_weights = [g.to(w.dtype) for g, w in zip(d_weights, weights)]
    return ds, da, dg, d_weights, None, None, None, None, None


interact_iteration_fwd.register_autograd(_backward, setup_context=_setup_context)


def draw_keep_masks(streams, p: float):
    """Dropout keep masks (uint8, 1 = keep with probability 1 − p) for the attention branch and the
    FFN branch, drawn from torch's generator for ``streams``' device."""
    return tuple(torch.empty(streams.shape, dtype=torch.uint8, device=streams.device).bernoulli_(1.0 - p)
                 for _ in range(2))


def _check_inputs(name, streams, anchor, gates, weights, n_heads):
    b, j, t, d = streams.shape
    if j != 2 or tuple(anchor.shape) != (b, t, d) or tuple(gates.shape) != (b, 2):
        raise ValueError(f"{name}: expected streams (B, 2, T, d), anchor (B, T, d), gates (B, 2); "
                         f"got {tuple(streams.shape)}, {tuple(anchor.shape)}, {tuple(gates.shape)}")
    if len(weights) != len(WEIGHT_NAMES):
        raise ValueError(f"{name}: expected {len(WEIGHT_NAMES)} weights ({', '.join(WEIGHT_NAMES)}); "
                         f"got {len(weights)}")
    if d % n_heads:
        raise ValueError(f"{name}: d={d} is not divisible by n_heads={n_heads}")
    for group, tensors in (("streams, anchor and gates", (streams, anchor, gates)),
                           ("the projection weights and biases", [weights[i] for i in PROJECTION_INDICES])):
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) != 1:
            raise ValueError(f"{name}: {group} must share one dtype; got {sorted(map(str, dtypes))}")


def interact_iteration(streams, anchor, gates, weights: Sequence[torch.Tensor], n_heads: int, eps: float = 1e-5,
                       dropout: float = 0.0):
    """One ProgInteract iteration, differentiable: streams (B, 2, T, d), anchor (B, T, d),
    gates (B, 2), ``weights`` in the order of ``WEIGHT_NAMES``, all on one device. Streams,
    anchor and gates share one dtype; the projection weights and biases share one dtype (the
    same, or a narrower one as under autocast); the LayerNorm affines may be any float dtype.
    ``dropout``: probability of nn.Dropout on each residual branch's output (the attention
    branch before the gate, the FFN branch); pass 0 in eval mode."""
    _check_inputs("interact_iteration", streams, anchor, gates, weights, n_heads)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"interact_iteration: dropout={dropout} must be in [0, 1]")
    keep_attn, keep_ffn = draw_keep_masks(streams, dropout) if dropout > 0 else (None, None)
    keep_scale = 1.0 / (1.0 - dropout) if dropout < 1 else 0.0
    return interact_iteration_fwd(streams.contiguous(), anchor.contiguous(), gates.contiguous(),
                                  [w.contiguous() for w in weights], keep_attn, keep_ffn, keep_scale, n_heads, eps)


def interact_stack(streams, anchor, gates, stacked_weights: Sequence[torch.Tensor], n_heads: int,
                   eps: float = 1e-5):
    """All N ProgInteract iterations in one persistent launch, for inference (no dropout, not
    differentiable): ``stacked_weights[i]`` stacks ``WEIGHT_NAMES[i]`` of the N iterations along a
    new leading axis. Same inputs and dtype rules as ``interact_iteration`` otherwise."""
    _check_inputs("interact_stack", streams, anchor, gates, stacked_weights, n_heads)
    if len({w.shape[0] for w in stacked_weights}) != 1:
        raise ValueError(f"interact_stack: the stacked weights disagree on the number of iterations: "
                         f"{[tuple(w.shape) for w in stacked_weights]}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (streams, anchor, gates, *stacked_weights)):
        raise ValueError("interact_stack is not differentiable: call it under torch.no_grad() or "
                         "torch.inference_mode(), or use interact_iteration per iteration")
    return interact_stack_fwd(streams.contiguous(), anchor.contiguous(), gates.contiguous(),
                              [w.contiguous() for w in stacked_weights], n_heads, eps)
