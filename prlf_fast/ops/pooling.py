"""Query pooling of the encoders (docs/design.md §4.1): attention of T learned queries, the same
for every sample, over a modality's L frames (``MultiHeadAttention.pool`` calls it).

Schema   queries (T, d), frames (B, L, d), key_valid (B, L) bool, the attention's 8 projection
         weights and biases -> (B, T, d).
Implementations
  reference  prlf_fast.reference.query_pooling: project queries, keys and values, then the
             reference masked attention
  triton     the same projections, then ``prlf_fast_triton::masked_attention_fwd`` (ops/attention.py)
  folded     ``folded_pooling`` below: no key/value projections, H·T folded queries attend over the
             frames through SDPA (docs/kernels.md, "the folded form"); where attention has no
             Triton kernel
Selection  ``select`` below: it follows masked attention's choice for the same sizes (``kernel_limits``);
           ``python -m prlf_fast.info``.
Tests      tests/test_query_pooling.py, tests/test_model_triton.py
Benchmark  bench/test_bench_attention.py::test_encoder_pooling
"""
from __future__ import annotations

import functools
import math

import torch

from prlf_fast import reference
from prlf_fast.ops import registry
from prlf_fast.ops.attention import head_limits, masked_attention, sdpa_masked_attention
from prlf_fast.ops.registry import Choice


def kernel_limits(queries, x_kv, n_heads: int) -> tuple:
    """The attention's ``kernel_limits`` for T queries (T, d) over x_kv's L frames (B, L, d) in
    ``n_heads`` heads; no reasons for inputs of other ranks (the op's checks say why)."""
    if queries.dim() != 2 or x_kv.dim() != 3 or n_heads < 1 or not registry.triton_importable():
        return registry.NO_LIMITS
    return head_limits(x_kv.shape[0], n_heads, queries.shape[0], x_kv.shape[1], x_kv.shape[2] // n_heads)


def select(backend: str, device: torch.device, dtype: torch.dtype, limits: tuple) -> Choice:
    attention = registry.select("masked_attention", backend, device, dtype, limits)
    if attention.name == "sdpa":
        return Choice("query_pooling", "folded", {
            "reference": "projecting L keys and values costs twice the multiply-adds of folding them",
            "triton": f"masked attention: {attention.rejected['triton']}"})
    why = f"masked attention runs {attention.name}; the folded form is written for its SDPA path"
    return Choice("query_pooling", attention.name, {"folded": why})


registry.register("query_pooling", select)


def query_pooling(queries, x_kv, key_valid, weights, n_heads: int, backend: str = "fast"):
    """The op under ``backend`` (module docstring); differentiable. ``weights`` = (W_q, b_q, W_k,
    b_k, W_v, b_v, W_o, b_o), nn.Linear layout."""
    limits = kernel_limits(queries, x_kv, n_heads)
    if registry.implementation("query_pooling", backend, x_kv.device, x_kv.dtype, limits) == "folded":
        return folded_pooling(queries, x_kv, key_valid, weights, n_heads)
    return reference.query_pooling(queries, x_kv, key_valid, weights, n_heads,
                                   functools.partial(masked_attention, backend=backend))


def folded_pooling(queries, x_kv, key_valid, weights, n_heads: int):
    """Query pooling without projecting the L keys and values. Per head h,
    q_h·(W_k,h x + b_k,h) = (W_k,hᵀ q_h)·x + const, and the constant cancels in the softmax;
    Σ_j p_j (W_v,h x_j + b_v,h) = W_v,h (Σ_j p_j x_j) + b_v,h. Attention then runs over x itself
    with H·T folded queries, about half the multiply-adds of projecting keys and values."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    (b, _, d), t, h = x_kv.shape, queries.shape[0], n_heads
    q = torch.nn.functional.linear(queries, wq, bq).view(t, h, d // h)
    folded = torch.einsum("thc,hcd->htd", q, wk.view(h, d // h, d)).reshape(1, 1, h * t, d)
    ctx = sdpa_masked_attention(folded.expand(b, -1, -1, -1), x_kv[:, None], x_kv[:, None], key_valid,
                                scale=1.0 / math.sqrt(d // h))
    heads = torch.einsum("bhtd,hcd->bthc", ctx.view(b, h, t, d), wv.view(h, d // h, d))
    # b_k cancels, so its exact gradient is 0; keep it in the graph so that it gets that 0
    # (DistributedDataParallel and the optimizers expect a gradient for every parameter).
    out = torch.nn.functional.linear(heads.reshape(b, t, d) + bv, wo, bo) + 0.0 * bk.sum()
    return reference.zero_rows_without_keys(out, key_valid)
