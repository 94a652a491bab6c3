"""Masked attention at the encoder-pooling shape (8 learned queries over up to 500 frames, 8
heads of 16): the Triton kernel against PyTorch SDPA with a boolean mask (target: ≥ 1.5×).
CUDA only; see docs/kernels.md for measured numbers."""
import pytest
import torch
from conftest import synced

from prlf_fast.ops import sdpa_masked_attention

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

HEADS, HEAD_DIM, QUERIES, KEYS = 8, 16, 8, 500


def pooling_inputs(batch, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(batch, HEADS, QUERIES, HEAD_DIM, device="cuda", dtype=dtype, generator=g)
    k, v = (torch.randn(batch, HEADS, KEYS, HEAD_DIM, device="cuda", dtype=dtype, generator=g) for _ in range(2))
    lengths = torch.randint(0, KEYS + 1, (batch,), device="cuda", generator=g)
    valid = torch.arange(KEYS, device="cuda")[None] < lengths[:, None]
    return q, k, v, valid


def implementation(variant):
    if variant == "sdpa":
        return sdpa_masked_attention
    from prlf_fast.kernels import masked_attention

    return masked_attention


@pytest.mark.parametrize("variant", ["sdpa", "triton"])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [64, 1024])
def test_masked_pooling(benchmark, batch, dtype, mode, variant):
    fn = implementation(variant)
    q, k, v, valid = pooling_inputs(batch, dtype)
    train = mode == "forward+backward"
    q, k, v = (t.requires_grad_(train) for t in (q, k, v))
    grad = torch.randn_like(q)

    def step():
        out = fn(q, k, v, valid)
        if train:
            torch.autograd.grad(out, (q, k, v), grad)
        return out

    step()
    benchmark.extra_info.update(batch=batch, dtype=str(dtype), mode=mode, keys=KEYS)
    out = benchmark(synced(step, "cuda"))
    assert out.shape == q.shape
