"""The compiled fisher_reliability op (csrc/) against the closed-form reference and the
torch.func oracle: float64 to round-off, lower precisions under the 2× error rule."""
import pytest
import torch

from prlf_fast import _extension, ops, reference
from prlf_fast.ops import implementation
from conftest import requires_cuda, tiny_config

requires_cuda_op = pytest.mark.skipif(not _extension.has_cuda_kernels(),
                                      reason="the extension was built without its CUDA kernels")

pytestmark = [
    pytest.mark.ext,
    pytest.mark.skipif(not _extension.has_op("fisher_reliability"),
                       reason=f"extension op unavailable: {_extension.problem()}"),
]

# (B, M, d, d_h, K, scale): odd sizes, B = 1, every M and K in range; scale > 1 makes the
# logits large (p nearly one-hot) and pushes the GELU into both tails.
SHAPES = [
    (1, 1, 3, 5, 2, 1.0),
    (1, 3, 9, 7, 7, 1.0),
    (5, 2, 7, 9, 3, 1.0),
    (37, 3, 17, 13, 4, 1.0),
    (70, 3, 33, 31, 5, 6.0),
    (129, 1, 16, 11, 6, 20.0),
    (20, 2, 45, 150, 3, 2.0),  # d_h > 128: several hidden-unit chunks in the CUDA kernel
    (300, 3, 128, 128, 3, 1.0),
]


def head_inputs(b, m, d, h, k, scale=1.0, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    args = (r(b, m, d), r(m, h, d) * (scale / d ** 0.5), r(m, h) * scale, r(m, k, h) * (scale / h ** 0.5),
            r(m, k) * scale)
    return tuple(t.to(device=device, dtype=dtype) for t in args)


def rel_err(x, exact):
    return ((x.double() - exact) / (1.0 + exact.abs())).abs().max().item()


def assert_two_x_rule(args64, dtype, device):
    """error(op in dtype vs float64) ≤ 2 × error(reference in dtype vs float64) + floor, where
    float64 is the reference on the same inputs rounded to dtype (rounding the inputs alone can
    move F by more than any implementation's arithmetic when the logits are large)."""
    low = tuple(t.to(device=device, dtype=dtype) for t in args64)
    rounded = tuple(t.to(device="cpu", dtype=torch.float64) for t in low)
    exact = reference.fisher_reliability(*rounded)
    fast = torch.ops.prlf_fast.fisher_reliability(*low)
    ref = reference.fisher_reliability(*low)
    # Any implementation rounds logits of size |o| to ~eps·|o|: the floor scales with them.
    logit_size = reference.recognition_logits(*rounded)[2].abs().max().item()
    floor = 4 * torch.finfo(dtype).eps * (1.0 + logit_size)
    for name, f, r, e in zip(("confidence", "fisher"), fast, ref, exact):
        e = e.to(device)
        assert f.dtype == dtype and f.shape == e.shape and f.device == e.device
        assert rel_err(f, e) <= 2 * rel_err(r, e) + floor, (name, rel_err(f, e), rel_err(r, e))


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_reference_and_oracle(shape):
    args = head_inputs(*shape)
    conf, fisher = torch.ops.prlf_fast.fisher_reliability(*args)
    ref_conf, ref_fisher = reference.fisher_reliability(*args)
    torch.testing.assert_close(conf, ref_conf, rtol=1e-12, atol=1e-13)
    # atol: the reference cancels terms of size ‖u‖² when p is nearly one-hot; the op does not.
    torch.testing.assert_close(fisher, ref_fisher, rtol=1e-11, atol=1e-10)
    if shape[0] * shape[2] * shape[3] <= 20000:  # the oracle materialises per-sample gradients
        or_conf, or_fisher = reference.fisher_reliability_oracle(*args)
        torch.testing.assert_close(conf, or_conf, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(fisher, or_fisher, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_two_x_rule(shape):
    assert_two_x_rule(head_inputs(*shape, seed=1), torch.float32, "cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu_is_float32_rounded(dtype):
    args = head_inputs(40, 3, 17, 13, 3, seed=2, dtype=dtype)
    conf, fisher = torch.ops.prlf_fast.fisher_reliability(*args)
    conf32, fisher32 = torch.ops.prlf_fast.fisher_reliability(*(t.float() for t in args))
    assert conf.dtype == fisher.dtype == dtype
    torch.testing.assert_close(conf, conf32.to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(fisher, fisher32.to(dtype), rtol=0, atol=0)


def noncontiguous(args):
    """The same values laid out with transposed and strided memory."""
    z, w1, b1, w2, b2 = args
    return (z.transpose(0, 2).contiguous().transpose(0, 2),
            w1.transpose(1, 2).contiguous().transpose(1, 2),
            torch.stack([b1, b1], dim=-1)[..., 0],
            w2.transpose(0, 1).contiguous().transpose(0, 1),
            b2.t().contiguous().t())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_noncontiguous_inputs(dtype):
    args = head_inputs(23, 3, 9, 11, 3, seed=3, dtype=dtype)
    strided = noncontiguous(args)
    assert not any(t.is_contiguous() for t in strided)
    for got, want in zip(torch.ops.prlf_fast.fisher_reliability(*strided),
                         torch.ops.prlf_fast.fisher_reliability(*args)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_empty_batch():
    conf, fisher = torch.ops.prlf_fast.fisher_reliability(*head_inputs(0, 3, 5, 4, 3))
    assert conf.shape == fisher.shape == (0, 3)


def test_public_entry_uses_the_extension_on_cpu():
    assert implementation("fisher_reliability", "fast", "cpu") == "extension"
    args = head_inputs(8, 3, 6, 5, 3, seed=4)
    for got, want in zip(ops.fisher_reliability(*args), torch.ops.prlf_fast.fisher_reliability(*args)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("bad, message", [
    (lambda a: (a[0][0],) + a[1:], "z must be (B, M, d)"),
    (lambda a: (a[0], a[1][:, :, :-1]) + a[2:], "w1 must have shape"),
    (lambda a: a[:2] + (a[2][:, :-1],) + a[3:], "b1 must have shape"),
    (lambda a: a[:3] + (a[3][:2],) + a[4:], "w2 must have shape"),
    (lambda a: a[:4] + (a[4][:, :-1],), "b2 must have shape"),
    (lambda a: (a[0].float(),) + a[1:], "dtype"),
    (lambda a: (a[0].to("meta"),) + a[1:], "device"),
    (lambda a: tuple(t.int() for t in a), "not supported"),
])
def test_invalid_inputs_raise_clear_errors(bad, message):
    """One check per input: csrc/fisher_checks.h on real tensors, the fake impl's on meta ones
    (the "device" case dispatches to Meta); the same ValueError either way."""
    args = bad(head_inputs(4, 3, 5, 6, 3))
    pattern = message.replace("(", r"\(").replace(")", r"\)")
    for fn in (ops.fisher_reliability, torch.ops.prlf_fast.fisher_reliability):
        with pytest.raises(ValueError, match=pattern):
            fn(*args)


def test_opcheck():
    args = head_inputs(6, 3, 7, 5, 4, seed=5, dtype=torch.float32)
    torch.library.opcheck(torch.ops.prlf_fast.fisher_reliability.default, args)


def test_backward_refuses_with_a_clear_message():
    # Enough samples for several CPU tasks, so worker threads also see inputs that require grad.
    z, *rest = head_inputs(1200, 2, 4, 5, 3)
    _, fisher = torch.ops.prlf_fast.fisher_reliability(z.requires_grad_(), *rest)
    with pytest.raises(RuntimeError, match="has no gradient"):
        fisher.sum().backward()


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    args = head_inputs(9, 3, 7, 5, 3, seed=6, dtype=torch.float32)
    compiled = torch.compile(lambda *a: ops.fisher_reliability(*a)[1].log1p(), fullgraph=True)
    torch.testing.assert_close(compiled(*args), ops.fisher_reliability(*args)[1].log1p())


def test_model_fast_backend_scores_with_the_op():
    from prlf_fast.model.amre import AMRE

    amre = AMRE(tiny_config()).double()
    z = torch.randn(6, 3, amre.w1.shape[-1], dtype=torch.float64)
    present = torch.ones(6, 3, dtype=torch.bool)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fast = amre(z, present, backend="fast")
    assert "prlf_fast::fisher_reliability" in {e.name for e in prof.events()}
    slow = amre(z, present, backend="reference")
    torch.testing.assert_close(fast.fisher, slow.fisher, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(fast.confidence, slow.confidence, rtol=1e-12, atol=1e-13)


# --- CUDA: the same checks on the GPU kernel (skipped without a device) ---

CUDA_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@requires_cuda
@requires_cuda_op
@pytest.mark.cuda
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_float64_matches_reference(shape):
    args = head_inputs(*shape)
    got = torch.ops.prlf_fast.fisher_reliability(*(t.cuda() for t in args))
    for g, w in zip(got, reference.fisher_reliability(*args)):
        # atol as on the CPU: the reference's pair sums cancel to ~1e-12 at SHAPES' largest logits
        torch.testing.assert_close(g.cpu(), w, rtol=1e-11, atol=1e-10)


@requires_cuda
@requires_cuda_op
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES[1:])
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_two_x_rule(shape, dtype):
    assert_two_x_rule(head_inputs(*shape, seed=7), dtype, "cuda")


@requires_cuda
@requires_cuda_op
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", CUDA_DTYPES)
def test_cuda_noncontiguous_and_side_stream(dtype):
    args = head_inputs(45, 3, 19, 21, 5, seed=8, dtype=dtype, device="cuda")
    want = torch.ops.prlf_fast.fisher_reliability(*args)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = torch.ops.prlf_fast.fisher_reliability(*noncontiguous(args))
    torch.cuda.current_stream().wait_stream(stream)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@requires_cuda
@requires_cuda_op
@pytest.mark.cuda
def test_cuda_small_launch():
    """Small enough for bench/gpu_check.sh's compute-sanitizer memcheck pass: several hidden-unit
    chunks, B not a multiple of the kernel's rows per block."""
    assert_two_x_rule(head_inputs(37, 3, 17, 150, 4, seed=13), torch.float32, "cuda")


@requires_cuda
@requires_cuda_op
@pytest.mark.cuda
def test_cuda_opcheck_and_compile():
    args = head_inputs(6, 3, 7, 5, 4, seed=9, dtype=torch.float32, device="cuda")
    torch.library.opcheck(torch.ops.prlf_fast.fisher_reliability.default, args)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: ops.fisher_reliability(*a)[1], fullgraph=True)
    torch.testing.assert_close(compiled(*args), ops.fisher_reliability(*args)[1])
    assert implementation("fisher_reliability", "fast", "cuda") == "extension"
