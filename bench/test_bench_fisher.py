"""Batched Fisher reliability scoring at the default head (M = 3, d = d_h = 128, K = 3): the
compiled op ("extension") against the closed form in plain torch ops ("torch-ops",
prlf_fast.reference) and the torch.func per-sample-gradient oracle ("oracle").

Targets (measured numbers in docs/fisher.md): CPU at B = 8192, float32: ≥ 50× the oracle and
≥ 2× torch-ops. CUDA: ≥ 5× torch-ops at B = 8192 and ≥ 3× at B = 64; the CUDA rows also record
the achieved memory bandwidth (bytes of inputs and outputs over the median time).
"""
import pytest
import torch
from conftest import DTYPES, synced

from prlf_fast import _extension, reference

M, D, HIDDEN, K = 3, 128, 128, 3
ORACLE_CHUNK = 1024  # samples per oracle call: bounds its per-sample-gradient memory, not its work

needs_op = pytest.mark.skipif(not _extension.has_op("fisher_reliability"),
                              reason=f"extension op unavailable: {_extension.problem()}")


def head_inputs(batch, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    args = (torch.randn(batch, M, D, generator=g), torch.randn(M, HIDDEN, D, generator=g) / D ** 0.5,
            torch.randn(M, HIDDEN, generator=g) * 0.1, torch.randn(M, K, HIDDEN, generator=g) / HIDDEN ** 0.5,
            torch.randn(M, K, generator=g))
    return tuple(t.to(device=device, dtype=dtype) for t in args)


def chunked_oracle(z, *head):
    parts = [reference.fisher_reliability_oracle(zc, *head) for zc in z.split(ORACLE_CHUNK)]
    return torch.cat([c for c, _ in parts]), torch.cat([f for _, f in parts])


def variant_fn(variant):
    if variant == "oracle":
        return chunked_oracle
    if variant == "torch-ops":
        return reference.fisher_reliability
    return torch.ops.prlf_fast.fisher_reliability


def io_bytes(args):
    """Bytes the op must move at least: every input once, two (B, M) outputs."""
    z = args[0]
    return sum(t.numel() * t.element_size() for t in args) + 2 * z.shape[0] * z.shape[1] * z.element_size()


@pytest.mark.parametrize("variant", [
    "extension", "torch-ops", pytest.param("oracle", marks=pytest.mark.slow)])
@pytest.mark.parametrize("batch", [64, 1024, 8192])
def test_fisher_cpu(benchmark, batch, variant):
    if variant == "extension" and not _extension.has_op("fisher_reliability"):
        pytest.skip(f"extension op unavailable: {_extension.problem()}")
    args = head_inputs(batch, "cpu", torch.float32)
    fn = variant_fn(variant)
    benchmark.extra_info.update(batch=batch, dtype="float32", M=M, d=D, d_h=HIDDEN, K=K)
    if variant == "oracle":  # seconds per call at B = 8192
        confidence, fisher = benchmark.pedantic(fn, args, rounds=3, iterations=1, warmup_rounds=1)
    else:
        confidence, fisher = benchmark(fn, *args)
    assert confidence.shape == fisher.shape == (batch, M)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("variant", [pytest.param("extension", marks=needs_op), "torch-ops"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("batch", [64, 1024, 8192])
def test_fisher_cuda(benchmark, batch, dtype, variant):
    args = head_inputs(batch, "cuda", DTYPES[dtype])
    fn = variant_fn(variant)
    fn(*args)
    benchmark.extra_info.update(batch=batch, dtype=dtype, M=M, d=D, d_h=HIDDEN, K=K,
                                io_bytes=io_bytes(args))
    confidence, fisher = benchmark(synced(lambda: fn(*args), "cuda"))
    assert confidence.shape == fisher.shape == (batch, M)
    if benchmark.stats is not None:  # absent under --benchmark-disable
        benchmark.extra_info["bandwidth_GBps"] = io_bytes(args) / benchmark.stats.stats.median / 1e9
