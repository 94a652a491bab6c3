"""The Triton masked-attention kernel against the reference (docs/design.md §5, §6): forward and every
gradient under the error rule, rows with no valid key, awkward lengths; on CPU through the
Triton interpreter (fp32, tiny grids), on a GPU also at real sizes in fp32 and bf16."""
import pytest
import torch
from conftest import assert_error_rule, requires_cuda

from prlf_fast import reference
from prlf_fast.kernels import masked_attention

pytestmark = pytest.mark.triton


def attention_inputs(b, h, lq, lk, dh, seed, device="cpu"):
    """float64 q, k, v as the model builds them (strided views of (B, L, H·Dh)) and a key mask
    with an all-invalid first sample and a single-valid-key last sample."""
    g = torch.Generator().manual_seed(seed)

    def heads(n):
        return torch.randn(b, n, h * dh, generator=g, dtype=torch.float64).view(b, n, h, dh).transpose(1, 2)

    q, k, v = heads(lq), heads(lk), heads(lk)
    valid = torch.rand(b, lk, generator=g) > 0.4
    valid[0] = False
    if b > 1:
        valid[-1] = False
        valid[-1, lk - 1] = True
    return [t.to(device) for t in (q, k, v, valid)]


def run_with_grads(fn, q, k, v, valid, grad_out, dtype):
    leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, valid)
    grads = torch.autograd.grad(out, leaves, grad_out.to(dtype))
    return [out, *grads]


def check_parity(b, h, lq, lk, dh, seed, dtype=torch.float32, device="cpu", fn=masked_attention):
    """``fn`` (the kernel, or a wrapper of it) against the reference: output and every gradient."""
    q, k, v, valid = attention_inputs(b, h, lq, lk, dh, seed, device)
    grad_out = torch.randn(b, h, lq, dh, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    grad_out = grad_out.to(device)
    exact = run_with_grads(reference.masked_attention, q, k, v, valid, grad_out, torch.float64)
    same = run_with_grads(reference.masked_attention, q, k, v, valid, grad_out, dtype)
    fast = run_with_grads(fn, q, k, v, valid, grad_out, dtype)
    assert_error_rule(fast, same, exact, ["output", "dq", "dk", "dv"])
    return fast, valid


@pytest.mark.parametrize("b, h, lq, lk, dh", [
    (1, 1, 5, 70, 16),     # B = 1 (its only row has no valid key), Lk not a multiple of the block
    (3, 8, 8, 65, 16),     # the encoder pooling shape, 8 heads, Lk = block + 1
    (2, 2, 17, 130, 32),   # Lq over one query block, three key blocks
    (2, 1, 3, 9, 64),
    (2, 2, 4, 7, 8),       # a head dim below the tile width (the tiny test models)
])
def test_matches_reference_forward_and_gradients(b, h, lq, lk, dh):
    check_parity(b, h, lq, lk, dh, seed=b * 100 + lk)


def test_row_without_valid_key_is_exactly_zero_with_zero_gradients():
    (out, dq, dk, dv), valid = check_parity(3, 2, 6, 20, 16, seed=5)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert torch.equal(dq[0], torch.zeros_like(dq[0]))
    invalid = ~valid[:, None, :, None].expand_as(dk)
    assert torch.equal(dk[invalid], torch.zeros_like(dk[invalid]))
    assert torch.equal(dv[invalid], torch.zeros_like(dv[invalid]))


@pytest.mark.parametrize("b, lq, lk", [(0, 3, 5), (2, 0, 5), (2, 3, 0)])
def test_empty_shapes_give_empty_or_zero_results(b, lq, lk):
    q = torch.randn(b, 2, lq, 16, requires_grad=True)
    k, v = (torch.randn(b, 2, lk, 16, requires_grad=True) for _ in range(2))
    out = masked_attention(q, k, v, torch.ones(b, lk, dtype=torch.bool))
    out.sum().backward()
    assert out.shape == q.shape and not out.any()
    assert not (q.grad.any() or k.grad.any() or v.grad.any())


def test_no_mask_equals_an_all_valid_mask():
    q, k, v, _ = attention_inputs(2, 2, 5, 70, 16, seed=4)
    grad = torch.randn(2, 2, 5, 16, dtype=torch.float64)
    unmasked = run_with_grads(masked_attention, q, k, v, None, grad, torch.float32)
    full = run_with_grads(masked_attention, q, k, v, torch.ones(2, 70, dtype=torch.bool), grad, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(unmasked, full))


def test_invalid_keys_do_not_matter():
    q, k, v, valid = (t.float() if t.is_floating_point() else t for t in attention_inputs(2, 2, 4, 37, 16, seed=3))
    invalid = (~valid)[:, None, :, None]
    out = masked_attention(q, k, v, valid)
    torch.testing.assert_close(masked_attention(q, k + 50 * invalid, v - 7 * invalid, valid), out)


def test_interpreter_kernels_are_launched_without_wrap_triton(monkeypatch):
    """The interpreter's kernels are not JITFunctions, which torch < 2.13's ``wrap_triton`` refuses:
    they are launched directly (forward and backward), whatever that torch's ``wrap_triton`` does."""
    from prlf_fast.kernels import common

    def refuse(kernel):
        raise RuntimeError("wrap_triton only works on functions annotated with triton.jit")

    monkeypatch.setattr(common, "wrap_triton", refuse)
    check_parity(2, 2, 4, 7, 8, seed=1)


@pytest.mark.parametrize("change, message", [
    (lambda q, k, v, m: (q[0], k, v, m), "expected q"),
    (lambda q, k, v, m: (q, k, v[:, :, :-1], m), "expected q"),
    (lambda q, k, v, m: (q, k, v, m.float()), "key_valid must be bool"),
    (lambda q, k, v, m: (q, k, v, m[:, :-1]), "key_valid must be bool"),
    (lambda q, k, v, m: (q.double(), k, v, m), "must share one of"),
])
def test_rejects_bad_inputs(change, message):
    q, k, v, valid = attention_inputs(2, 2, 3, 5, 16, seed=0)
    q, k, v = q.float(), k.float(), v.float()
    with pytest.raises(ValueError, match=message):
        masked_attention(*change(q, k, v, valid))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b, h, lq, lk, dh", [(64, 8, 8, 500, 16), (16, 8, 16, 375, 16), (8, 4, 40, 257, 32),
                                              (4, 2, 33, 512, 64),
                                              (8200, 8, 3, 9, 16)])  # B·H > 65535, grid axis 1's limit
def test_cuda_matches_reference_at_real_sizes(b, h, lq, lk, dh, dtype):
    check_parity(b, h, lq, lk, dh, seed=lk, dtype=dtype, device="cuda")


@requires_cuda
@pytest.mark.cuda
def test_cuda_repeated_runs_are_bitwise_identical():
    q, k, v, valid = attention_inputs(64, 8, 8, 500, 16, seed=9, device="cuda")
    grad_out = torch.randn(64, 8, 8, 16, device="cuda", dtype=torch.bfloat16)
    first = run_with_grads(masked_attention, q, k, v, valid, grad_out, torch.bfloat16)
    for _ in range(5):
        again = run_with_grads(masked_attention, q, k, v, valid, grad_out, torch.bfloat16)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@requires_cuda
@pytest.mark.cuda
def test_cuda_torch_compile_traces_the_kernel_fullgraph():
    q, k, v, valid = attention_inputs(4, 8, 8, 100, 16, seed=2, device="cuda")
    q, k, v = (t.float().requires_grad_() for t in (q, k, v))
    compiled = torch.compile(lambda *a: masked_attention(*a).square().sum(), fullgraph=True)
    loss = compiled(q, k, v, valid)
    loss.backward()
    torch.testing.assert_close(loss, masked_attention(q, k, v, valid).square().sum())
    # The compiled kernel's output and every gradient against the reference (the error rule).
    check_parity(4, 8, 8, 100, 16, seed=2, device="cuda",
                 fn=torch.compile(lambda *a: masked_attention(*a), fullgraph=True))


@requires_cuda
@pytest.mark.cuda
def test_cuda_opcheck():
    q, k, v, valid = attention_inputs(3, 2, 8, 70, 16, seed=6, device="cuda")
    q, k, v = (t.float().requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.prlf_fast_triton.masked_attention_fwd.default, (q, k, v, valid))


@requires_cuda
@pytest.mark.cuda
def test_cuda_small_launch():
    """Small enough for bench/gpu_check.sh's compute-sanitizer memcheck pass: forward and backward
    with a mask, partial query and key blocks, a row without a valid key."""
    check_parity(3, 2, 5, 70, 16, seed=11, device="cuda")


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_cuda_launch_on_the_tensors_device_not_the_current_one():
    with torch.cuda.device(0):
        (out, *_), _ = check_parity(4, 2, 8, 70, 16, seed=12, device="cuda:1")
    assert out.device == torch.device("cuda:1")


@requires_cuda
@pytest.mark.cuda
def test_cuda_pooling_beyond_2_31_elements():
    """MOSEI's encoder pooling at B = 34,000: k and v are head views of (B, 500, 128), whose
    B·500·128 elements pass 2³¹ (32-bit sample offsets wrapped from B ≈ 33,555). The last samples
    (and the first) match the reference, forward and every gradient."""
    b, h, lq, lk, dh = 34_000, 8, 8, 500, 16
    assert b * lk * h * dh > 2**31
    g = torch.Generator(device="cuda").manual_seed(0)

    def heads(n):
        x = torch.randn(b, n, h * dh, generator=g, device="cuda", dtype=torch.bfloat16)
        return x.view(b, n, h, dh).transpose(1, 2).requires_grad_()

    q, k, v = heads(lq), heads(lk), heads(lk)
    valid = torch.rand(b, lk, generator=g, device="cuda") > 0.4
    valid[-1] = False
    valid[-2] = False
    valid[-2, lk - 1] = True
    grad_out = torch.randn(b, h, lq, dh, generator=g, device="cuda", dtype=torch.bfloat16)
    out = masked_attention(q, k, v, valid)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    rows = [0, b - 4, b - 3, b - 2, b - 1]
    fast = [t[rows] for t in (out, *grads)]
    some = [t[rows].detach() for t in (q, k, v, valid)]
    exact = run_with_grads(reference.masked_attention, *some, grad_out[rows].double(), torch.float64)
    same = run_with_grads(reference.masked_attention, *some, grad_out[rows], torch.bfloat16)
    assert_error_rule(fast, same, exact, ["output", "dq", "dk", "dv"])
