"""Encoder pooling with batch-independent queries: the "folded" implementation (keys and values
never projected) against projecting them as the reference does, forward and every gradient,
under the error rule; rows with no valid key, one valid key, odd lengths, B = 1."""
import pytest
import torch
from conftest import assert_error_rule

from prlf_fast.model.layers import MultiHeadAttention
from prlf_fast.ops import implementation

SHAPES = [  # (B, T, L, d, heads)
    (1, 1, 1, 8, 1),
    (5, 3, 11, 16, 2),
    (4, 8, 37, 32, 8),
]


def pooling_inputs(b, t, length, d, seed):
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(t, d, generator=g, dtype=torch.float64)
    x = torch.randn(b, length, d, generator=g, dtype=torch.float64)
    valid = torch.rand(b, length, generator=g) > 0.5
    valid[0, 0] = True
    if b > 1:
        valid[1] = False                      # no valid key
        valid[-1] = False
        valid[-1, length - 1] = True          # exactly one, the last
    grad_out = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    return queries, x, valid, grad_out


def run(attn, queries, x, valid, grad_out, dtype, backend):
    attn = attn.to(dtype)
    leaves = [queries.to(dtype).requires_grad_(), x.to(dtype).requires_grad_()]
    out = attn.pool(*leaves, valid, backend=backend)
    params = list(attn.parameters())
    grads = torch.autograd.grad(out, leaves + params, grad_out.to(dtype))
    return [out, *grads]


def test_fast_backend_folds_on_cpu():
    assert implementation("query_pooling", "fast", "cpu") == "folded"
    assert implementation("query_pooling", "reference", "cpu") == "reference"


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("key_mask", [True, False], ids=["masked", "all-valid"])
def test_folded_matches_projected(shape, key_mask):
    b, t, length, d, heads = shape
    torch.manual_seed(sum(shape))
    attn = MultiHeadAttention(d, heads).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)                 # biases non-zero, so b_k's cancellation is exercised
    queries, x, valid, grad_out = pooling_inputs(b, t, length, d, seed=sum(shape))
    valid = valid if key_mask else None
    names = ["output", "d queries", "d x", *(n for n, _ in attn.named_parameters())]
    exact = run(attn, queries, x, valid, grad_out, torch.float64, "reference")
    folded64 = run(attn, queries, x, valid, grad_out, torch.float64, "fast")
    for f, e, name in zip(folded64, exact, names):
        torch.testing.assert_close(f, e, rtol=1e-10, atol=1e-12, msg=name)
    same = run(attn, queries, x, valid, grad_out, torch.float32, "reference")
    folded = run(attn, queries, x, valid, grad_out, torch.float32, "fast")
    assert_error_rule(folded, same, exact, names)
    if key_mask and b > 1:
        assert folded[0][1].abs().max() == 0      # the sample with no valid key pools to exactly 0
