"""One fused ProgInteract iteration (docs/design.md §4.3) in Triton, forward and backward.

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
anchor, gates) may be in a wider dtype than the projections, as under autocast. Offsets of whole
samples are 64-bit where a buffer reaches 2³¹ elements (``WIDE``). The ops that launch these
kernels (``forward``, ``backward``), their checks, autograd and the differentiable entry points are
in prlf_fast/ops/interact.py.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from prlf_fast.kernels.common import dot_precision, launch, load_tile, next_block, store_tile

ROWS_PER_PROGRAM = 16    # stream rows per program: whole samples, so 16 // (2T) samples (≥ 1)
FFN_CHUNK = 16           # FFN hidden units per inner step (32 spilled in the bf16 backward on sm_80)
WIDE_ELEMENTS = 2**31    # buffers this large get 64-bit offsets
NUM_WARPS = 8            # at d = 128, 4 warps spill heavily and 16 cap registers at 128 (see compile_check)
# The sizes this tiling is built for (compile_check, docs/kernels.md): d_model 256 spills 0.45–1.6 KB
# in bf16; over ROWS_PER_PROGRAM // 2 tokens a sample's 2T stream rows outgrow a program's block
# (T = 16: the bf16 backward spills 256–784 B on sm_80 and sm_90).
MAX_D_MODEL = 128
MAX_TOKENS = ROWS_PER_PROGRAM // 2


def untuned(tokens: int, d_model: int) -> str | None:
    """Why the kernels would run slowly (spilling registers) for T ``tokens`` and ``d_model``, or
    None: both within the sizes this launch configuration is built for."""
    if d_model > MAX_D_MODEL:
        return f"d_model {d_model} > {MAX_D_MODEL}, where the fused iteration spills registers"
    if tokens > MAX_TOKENS:
        return f"T = {tokens} tokens > {MAX_TOKENS}: a sample's 2T stream rows outgrow a program's {ROWS_PER_PROGRAM}"
    return None


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
        x = x * load_tile(KEEP, rows, n_rows, D, cols, D, 1).to(tl.float32) * keep_scale
    return x


@triton.jit
def _head_weight_t(W, h, Dh, D, hd, cols):
    """W[h·Dh:(h+1)·Dh, :]ᵀ as a (D × Dh) tile."""
    return load_tile(W + h * Dh * D, cols, D, 1, hd, Dh, D)


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
    s = load_tile(S + s0 * 2 * T * D, rows, n_rows, D, cols, D, 1).to(tl.float32)
    a = load_tile(A + s0 * T * D, keys, n_keys, D, cols, D, 1).to(tl.float32)
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
    # Only projections read LN(S) and LN(A): keep them in the projections' dtype (fewer registers).
    xs = _layernorm(s, _vec(LNSW, cols, D), _vec(LNSB, cols, D), cols, D, eps).to(DT)
    xa = _layernorm(a, _vec(LNAW, cols, D), _vec(LNAB, cols, D), cols, D, eps).to(DT)
    same = ((rows // (2 * T))[:, None] == (keys // T)[None, :]) \
        & (rows[:, None] < n_rows) & (keys[None, :] < n_keys)
    o = tl.zeros([BR, BD], tl.float32)
    for h in range(H):
        _, _, _, _, ch = _attend_head(
            xs, xa, _head_weight_t(WQ, h, Dh, D, hd, cols), _vec(BQ + h * Dh, hd, Dh),
            _head_weight_t(WK, h, Dh, D, hd, cols), _vec(BK + h * Dh, hd, Dh),
            _head_weight_t(WV, h, Dh, D, hd, cols), _vec(BV + h * Dh, hd, Dh), same, scale, DT, PREC)
        if STORE_C:
            store_tile(C + h * Dh, ch, rows, n_rows, D, hd, Dh)
        o += _dot(ch, load_tile(WO + h * Dh, hd, Dh, 1, cols, D, D), DT, PREC)
    o = _dropout(o + _vec(BO, cols, D)[None, :], KEEP_ATTN, keep_scale, rows, n_rows, cols, D, DROPOUT)
    s1 = s + g[:, None] * o
    return xs, xa, same, o, s1


@triton.jit
def _ffn_hidden(xf, W1, B1, W2, f0, F, D, cols, fc, DT: tl.constexpr, PREC: tl.constexpr):
    """Pre-GELU FFN hidden units f0..f0+BF and the two weight tiles they use."""
    w1_t = load_tile(W1 + f0 * D, cols, D, 1, fc, F - f0, D)      # (D × BF) = W1[f0:f0+BF]ᵀ
    w2_t = load_tile(W2 + f0, fc, F - f0, 1, cols, D, F)          # (BF × D) = W2[:, f0:f0+BF]ᵀ
    a1 = _dot(xf, w1_t, DT, PREC) + _vec(B1 + f0, fc, F - f0)[None, :]
    return a1, w1_t, w2_t


@triton.jit
def _iteration_fwd_kernel(S, A, G, OUT, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO,
                          LNFW, LNFB, W1, B1, W2, B2, KEEP_ATTN, KEEP_FFN,
                          B, T, D, H, Dh, F, eps, scale, keep_scale,
                          N_LAYERS: tl.constexpr, SB: tl.constexpr, BR: tl.constexpr, BT: tl.constexpr,
                          BD: tl.constexpr, BDH: tl.constexpr, BF: tl.constexpr, DROPOUT: tl.constexpr,
                          PREC: tl.constexpr, WIDE: tl.constexpr):
    """N_LAYERS iterations (unrolled) with per-iteration weights stacked along a leading axis (1 in
    training); the block's streams stay in registers from the first iteration to the last."""
    DT = WQ.dtype.element_ty
    pid = tl.program_id(0)
    if WIDE:   # 64-bit offsets: some buffer has 2³¹ elements or more
        pid = pid.to(tl.int64)
    s0 = pid * SB
    n_samples = tl.minimum(SB, B - s0)
    n_rows, n_keys = n_samples * 2 * T, n_samples * T
    rows, cols, fc = tl.arange(0, BR), tl.arange(0, BD), tl.arange(0, BF)
    s, a, g = _load_block(S, A, G, s0, n_rows, n_keys, T, D, BR, BT, BD)
    for i in tl.static_range(N_LAYERS):
        vec, mat, ffn = i * D, i * D * D, i * F * D
        keep = (i * B + s0) * 2 * T * D
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
    store_tile(OUT + s0 * 2 * T * D, s, rows, n_rows, D, cols, D)


@triton.jit
def _iteration_bwd_kernel(S, A, G, DS2, LNSW, LNSB, LNAW, LNAB, WQ, BQ, WK, BK, WV, BV, WO, BO,
                          LNFW, LNFB, W1, B1, W2, B2, KEEP_ATTN, KEEP_FFN,
                          DS, DA, DG, PART, XS, XA, C, XF, HH, DA1, DO, DQ, DKV, DY,
                          B, T, D, H, Dh, F, eps, scale, keep_scale,
                          SB: tl.constexpr, BR: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                          BDH: tl.constexpr, BF: tl.constexpr, BG: tl.constexpr, DROPOUT: tl.constexpr,
                          PREC: tl.constexpr, WIDE: tl.constexpr):
    DT = WQ.dtype.element_ty
    pid = tl.program_id(0)
    if WIDE:   # 64-bit offsets: some buffer has 2³¹ elements or more
        pid = pid.to(tl.int64)
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
    store_tile(XS + row0 * D, xs, rows, n_rows, D, cols, D)
    store_tile(XA + key0 * D, xa, keys, n_keys, D, cols, D)
    lnfw = _vec(LNFW, cols, D)
    xhat_f, rstd_f = _normalize(s1, cols, D, eps)
    xf = xhat_f * lnfw[None, :] + _vec(LNFB, cols, D)[None, :]
    store_tile(XF + row0 * D, xf, rows, n_rows, D, cols, D)
    # FFN backward.
    ds2 = load_tile(DS2 + row0 * D, rows, n_rows, D, cols, D, 1).to(tl.float32)
    dy = _dropout(ds2, KEEP_FFN + row0 * D, keep_scale, rows, n_rows, cols, D, DROPOUT)
    if DROPOUT:
        store_tile(DY + row0 * D, dy, rows, n_rows, D, cols, D)
    dxf = tl.zeros([BR, BD], tl.float32)
    for f0 in range(0, F, BF):
        a1, w1_t, w2_t = _ffn_hidden(xf, W1, B1, W2, f0, F, D, cols, fc, DT, PREC)
        store_tile(HH + row0 * F + f0, _gelu(a1), rows, n_rows, F, fc, F - f0)
        da1 = _dot(dy, tl.trans(w2_t), DT, PREC) * _gelu_grad(a1)
        store_tile(DA1 + row0 * F + f0, da1, rows, n_rows, F, fc, F - f0)
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
    store_tile(DO + row0 * D, do, rows, n_rows, D, cols, D)
    tl.store(part + 3 * D + cols, tl.sum(do, axis=0), mask=cols < D)
    # Parked in global memory (this program's rows only) to shorten register lifetimes: the
    # residual part of d streams, and the LayerNorm outputs, reloaded after a block barrier.
    store_tile(DS + row0 * D, ds1, rows, n_rows, D, cols, D)
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
        dc = _dot(do, tl.trans(load_tile(WO + h * Dh, hd, Dh, 1, cols, D, D)), DT, PREC)
        dv = _dot(tl.trans(p), dc, DT, PREC)
        dp = _dot(dc, tl.trans(v), DT, PREC)
        dz = p * (dp - tl.sum(dp * p, axis=1)[:, None])
        dq = _dot(dz, k, DT, PREC) * scale
        dk = _dot(tl.trans(dz), q, DT, PREC) * scale
        store_tile(DQ + row0 * D + h * Dh, dq, rows, n_rows, D, hd, Dh)
        store_tile(DKV + key0 * 2 * D + h * Dh, dk, keys, n_keys, 2 * D, hd, Dh)
        store_tile(DKV + key0 * 2 * D + D + h * Dh, dv, keys, n_keys, 2 * D, hd, Dh)
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
    ds1 = load_tile(DS + row0 * D, rows, n_rows, D, cols, D, 1).to(tl.float32)
    store_tile(DS + row0 * D, ds1 + _layernorm_bwd(dxs, xhat_s, rstd_s, lnsw, D), rows, n_rows, D, cols, D)
    store_tile(DA + key0 * D, _layernorm_bwd(dxa, xhat_a, rstd_a, lnaw, D), keys, n_keys, D, cols, D)
    tl.store(part + 5 * D + cols, tl.sum(dxs * xhat_s, axis=0), mask=cols < D)
    tl.store(part + 6 * D + cols, tl.sum(dxs, axis=0), mask=cols < D)
    tl.store(part + 7 * D + cols, tl.sum(dxa * xhat_a, axis=0), mask=cols < D)
    tl.store(part + 8 * D + cols, tl.sum(dxa, axis=0), mask=cols < D)


def _launch_config(streams, weights, n_heads):
    """Tile sizes: whole samples per program, every extent padded to a power of two ≥ 16; 64-bit
    offsets (WIDE) only where a buffer reaches 2³¹ elements (over 500,000 samples at the presets'
    sizes), since they cost the backward its last registers (compile_check: bf16 spills)."""
    b, _, t, d = streams.shape
    samples = max(1, ROWS_PER_PROGRAM // (2 * t))
    wide = (b + samples) * 2 * t * max(d, weights[14].shape[-2]) >= WIDE_ELEMENTS   # the largest: (B·2T, F or d)
    return dict(SB=samples, BR=next_block(samples * 2 * t), BT=next_block(samples * t), BD=next_block(d),
                BDH=next_block(d // n_heads), PREC=dot_precision(weights[4].dtype), WIDE=wide,
                num_warps=NUM_WARPS)


def _sizes(streams, weights, n_heads):
    """B, T, D, H, Dh, F of the launch (weights may carry a leading iteration axis)."""
    b, _, t, d = streams.shape
    return (b, t, d, n_heads, d // n_heads, weights[14].shape[-2])


def _keep_pointers(streams, keep_attn, keep_ffn):
    """The two keep masks, or placeholders that the kernels never read when there is no dropout."""
    return (streams, streams) if keep_attn is None else (keep_attn, keep_ffn)


def forward(streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps, n_layers):
    """Launch the forward of ``n_layers`` iterations on the tensors' device (weights with a leading
    iteration axis when ``n_layers`` > 1): the updated streams (B, 2, T, d). The body of ops
    ``prlf_fast_triton::interact_iteration_fwd`` and ``interact_stack_fwd`` (prlf_fast/ops/interact.py)."""
    out = torch.empty_like(streams)
    cfg = _launch_config(streams, weights, n_heads)
    grid = (triton.cdiv(streams.shape[0], cfg["SB"]),)
    if grid[0] == 0:
        return out
    sizes = _sizes(streams, weights, n_heads)
    launch(_iteration_fwd_kernel, grid, streams,
           streams, anchor, gates, out, *weights, *_keep_pointers(streams, keep_attn, keep_ffn),
           *sizes, eps, 1.0 / math.sqrt(sizes[4]), keep_scale,
           N_LAYERS=n_layers, BF=min(FFN_CHUNK, next_block(sizes[5])), DROPOUT=keep_attn is not None, **cfg)
    return out


def backward(grad_out, streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps):
    """Launch the backward of one iteration, then the weight-gradient GEMMs: [d streams, d anchor,
    d gates, d of all vector parameters (bq, bk, bv, bo, b2, then the LayerNorm weight/bias of
    streams, anchor and FFN, then b1), d Wq, d [Wk; Wv], d Wo, d W1, d W2]. The body of op
    ``prlf_fast_triton::interact_iteration_bwd``."""
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
        launch(_iteration_bwd_kernel, (n_prog,), streams,
               streams, anchor, gates, grad_out, *weights, *_keep_pointers(streams, keep_attn, keep_ffn),
               ds, da, dg, part, xs, xa, c, xf, hh, da1, do, dq, dkv, dy,
               *_sizes(streams, weights, n_heads), eps, 1.0 / math.sqrt(d // n_heads), keep_scale,
               BF=min(FFN_CHUNK, next_block(f)), BG=triton.next_power_of_2(2 * cfg["SB"]), DROPOUT=dropout, **cfg)
    return [ds, da, dg.to(gates.dtype), part.sum(dim=0),
            dq.t() @ xs, dkv.t() @ xa, do.t() @ c, da1.t() @ xf, dy.t() @ hh]
