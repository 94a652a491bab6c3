"""Query pooling of the encoders (DESIGN §4.1): attention of T learned queries, the same for every
sample, over a modality's L frames: ``MultiHeadAttention.pool`` (prlf_fast/model/layers.py).

Schema   queries (T, d), frames (B, L, d), key_valid (B, L) bool -> (B, T, d).
Implementations
  reference  project queries, keys and values, then the reference masked attention
  triton     the same projections, then ``prlf_fast_triton::masked_attention_fwd`` (ops/attention.py)
  folded     no key/value projections: H·T folded queries attend over the frames through SDPA
             (docs/kernels.md, "the folded form"); where attention has no Triton kernel
Selection  ``select`` below: it follows masked attention's choice; ``python -m prlf_fast.info``.
Tests      tests/test_query_pooling.py, tests/test_model_triton.py
Benchmark  bench/test_bench_attention.py::test_encoder_pooling
"""
from __future__ import annotations

import torch

from prlf_fast.ops import registry
from prlf_fast.ops.registry import Choice


def select(backend: str, device: torch.device, dtype: torch.dtype) -> Choice:
    attention = registry.select("masked_attention", backend, device, dtype)
    if attention.name == "sdpa":
        return Choice("query_pooling", "folded", {
            "reference": "projecting L keys and values costs twice the multiply-adds of folding them",
            "triton": f"masked attention: {attention.rejected['triton']}"})
    why = f"masked attention runs {attention.name}; the folded form is written for its SDPA path"
    return Choice("query_pooling", attention.name, {"folded": why})


registry.register("query_pooling", select)
