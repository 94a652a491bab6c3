"""Masked attention at the encoder-pooling shape (8 learned queries over 500 frames, 8 heads of
16, d 128).

``test_masked_pooling``: the attention core alone; the Triton kernel against PyTorch SDPA with a
boolean mask on CUDA (target ≥ 1.5×), SDPA against the explicit reference on CPU.
``test_encoder_pooling``: the encoder's whole pooling step with its projections
(``MultiHeadAttention.pool``), backend "reference" against "fast" (on CPU the folded form that
never projects the 500 keys and values; on CUDA the projections plus the Triton kernel).
See docs/kernels.md and BENCHMARKS.md.
"""
import pytest
import torch
from conftest import DTYPES, devices, synced

from prlf_fast import reference
from prlf_fast.model.layers import MultiHeadAttention
from prlf_fast.ops import implementation, sdpa_masked_attention

HEADS, HEAD_DIM, QUERIES, KEYS = 8, 16, 8, 500
D_MODEL = HEADS * HEAD_DIM
BATCHES = {"cpu": [64], "cuda": [64, 1024]}
PRECISIONS = {"cpu": ["fp32"], "cuda": ["fp32", "bf16"]}
# The attention core's variants per device: the explicit reference is the CPU baseline, SDPA the
# CUDA one; Triton runs on CUDA only.
CORE_VARIANTS = {"cpu": ("reference", "sdpa"), "cuda": ("sdpa", "triton")}
CASES = [pytest.param(dev, b, dt, id=f"{dev}-{b}-{dt}")
         for dev in devices() for b in BATCHES[dev] for dt in PRECISIONS[dev]]


def key_mask(batch, device, g):
    lengths = torch.randint(0, KEYS + 1, (batch,), device=device, generator=g)
    return torch.arange(KEYS, device=device)[None] < lengths[:, None]


def core(variant):
    if variant == "reference":
        return reference.masked_attention
    if variant == "sdpa":
        return sdpa_masked_attention
    from prlf_fast.kernels import masked_attention

    return masked_attention


@pytest.mark.parametrize("variant", ["reference", "sdpa", "triton"])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("device, batch, dtype", CASES)
def test_masked_pooling(benchmark, device, batch, dtype, mode, variant):
    if variant not in CORE_VARIANTS[device]:
        pytest.skip(f"{variant} is not measured on {device}")
    fn, dtype = core(variant), DTYPES[dtype]
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(batch, HEADS, QUERIES, HEAD_DIM, device=device, dtype=dtype, generator=g)
    k, v = (torch.randn(batch, HEADS, KEYS, HEAD_DIM, device=device, dtype=dtype, generator=g) for _ in range(2))
    valid = key_mask(batch, device, g)
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
    out = benchmark(synced(step, device))
    assert out.shape == q.shape


@pytest.mark.parametrize("variant", ["reference", "fast"])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("device, batch, dtype", CASES)
def test_encoder_pooling(benchmark, device, batch, dtype, mode, variant):
    dtype = DTYPES[dtype]
    torch.manual_seed(0)
    attn = MultiHeadAttention(D_MODEL, HEADS).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    train = mode == "forward+backward"
    queries = torch.randn(QUERIES, D_MODEL, device=device, generator=g).requires_grad_(train)
    x = torch.randn(batch, KEYS, D_MODEL, device=device, generator=g).requires_grad_(train)
    valid = key_mask(batch, device, g)
    inputs = [queries, x, *attn.parameters()]
    grad = torch.randn(batch, QUERIES, D_MODEL, device=device, generator=g)

    def step():
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            out = attn.pool(queries, x, valid, backend=variant)
        if train:
            torch.autograd.grad(out, inputs, grad.to(out.dtype))
        return out

    step()
    benchmark.extra_info.update(batch=batch, dtype=str(dtype), mode=mode, keys=KEYS,
                                implementation=implementation("query_pooling", variant, device))
    out = benchmark(synced(step, device))
    assert out.shape == (batch, QUERIES, D_MODEL)
