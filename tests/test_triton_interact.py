"""The fused ProgInteract iteration against the reference iteration (docs/design.md §4.3, §5): forward and
the gradient of streams, anchor, gates and every parameter under the error rule, also in training
mode with dropout (same keep masks), under autocast, and all iterations in one persistent launch;
on CPU through the Triton interpreter, on a GPU also at MOSEI sizes in fp32 and bf16."""
import copy

import pytest
import torch
from conftest import assert_error_rule, requires_cuda, tiny_config
from helpers import fix_reference_dropout

from prlf_fast import ops
from prlf_fast.ops import fused_iteration, fused_stack, runs_persistent
from prlf_fast.ops import WEIGHT_NAMES
from prlf_fast.model.interact import InteractLayer, ProgInteract

pytestmark = pytest.mark.triton


def make_layer(d, heads, ffn, seed, dropout=0.0):
    torch.manual_seed(seed)
    layer = InteractLayer(d, heads, ffn, dropout).double().eval()
    with torch.no_grad():   # non-trivial LayerNorm affines and biases, so their gradients are tested
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return layer


def make_inputs(b, t, d, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    streams = torch.randn(b, 2, t, d, generator=g, dtype=torch.float64)
    anchor = torch.randn(b, t, d, generator=g, dtype=torch.float64)
    gates = torch.rand(b, 2, generator=g, dtype=torch.float64)
    gates[0, 1] = 0.0   # a stream whose gate is zero (an absent modality's weight)
    grad_out = torch.randn(b, 2, t, d, generator=g, dtype=torch.float64)
    return [x.to(device) for x in (streams, anchor, gates, grad_out)]


def run_layer(layer, streams, anchor, gates, grad_out, dtype, backend):
    layer = copy.deepcopy(layer).to(dtype=dtype, device=streams.device)
    leaves = [x.detach().to(dtype).requires_grad_() for x in (streams, anchor, gates)]
    out = layer(*leaves, backend=backend)
    assert (ops.implementation("interact_iteration", backend, "cpu", dtype) == "triton") == (backend == "triton")
    grads = torch.autograd.grad(out, leaves + layer.fused_weights(), grad_out.to(dtype))
    return [out, *grads]


NAMES = ["output", "d streams", "d anchor", "d gates", *(f"d {n}" for n in WEIGHT_NAMES)]


def check_parity(b, t, d, heads, ffn, seed, dtype=torch.float32, device="cpu"):
    layer = make_layer(d, heads, ffn, seed)
    inputs = make_inputs(b, t, d, seed, device)
    exact = run_layer(layer, *inputs, torch.float64, "reference")
    same = run_layer(layer, *inputs, dtype, "reference")
    fast = run_layer(layer, *inputs, dtype, "triton")
    assert_error_rule(fast, same, exact, NAMES)
    return fast


@pytest.mark.parametrize("b, t, d, heads, ffn", [
    (1, 3, 16, 2, 24),   # B = 1; head dim 8 and T = 3 below the tile widths
    (7, 3, 16, 1, 24),   # one head; 5 samples per program, the last block partial
    (3, 8, 32, 8, 40),   # T = 8 and 8 heads as in the model; FFN width not a multiple of the chunk
])
def test_matches_eager_layer_forward_and_every_gradient(b, t, d, heads, ffn):
    check_parity(b, t, d, heads, ffn, seed=b + t + heads)


def test_64_bit_offsets_forced_at_a_small_size(monkeypatch):
    """The WIDE variant (64-bit sample offsets, chosen from 2³¹ buffer elements, over 500,000
    samples at the presets' sizes) against the eager layer and the eager iterations."""
    import prlf_fast.kernels.interact as fused

    monkeypatch.setattr(fused, "WIDE_ELEMENTS", 0)
    assert fused._launch_config(torch.zeros(1, 2, 3, 16), [torch.zeros(24, 16)] * 18, 2)["WIDE"]
    check_parity(3, 3, 16, 2, 24, seed=31)
    check_persistent(tiny_config(n_interact=2), b=3, seed=32)


@pytest.mark.parametrize("device, low", [
    ("cpu", torch.float16),
    pytest.param("cuda", torch.bfloat16, marks=[requires_cuda, pytest.mark.cuda]),
])
def test_autocast_matches_eager_autocast(device, low):
    layer = make_layer(32, 4, 40, seed=6)
    inputs = make_inputs(5, 8, 32, seed=6, device=device)
    exact = run_layer(layer, *inputs, torch.float64, "reference")
    with torch.autocast(device, dtype=low):
        same = run_layer(layer, *inputs, torch.float32, "reference")
        fast = run_layer(layer, *inputs, torch.float32, "triton")
    assert_error_rule(fast, same, exact, NAMES)


def test_empty_batch_gives_empty_streams_and_zero_weight_gradients():
    layer = make_layer(16, 2, 24, seed=0).float()
    streams, anchor, gates = (torch.zeros(0, *shape, requires_grad=True) for shape in ((2, 3, 16), (3, 16), (2,)))
    out = layer(streams, anchor, gates, backend="triton")
    grads = torch.autograd.grad(out.sum(), layer.fused_weights())
    assert out.shape == streams.shape and not any(g.any() for g in grads)


def test_training_dropout_matches_eager_with_the_same_masks(monkeypatch):
    import prlf_fast.ops.interact as fused

    p, b, t, d = 0.3, 4, 3, 16
    masks = tuple((torch.rand(b, 2, t, d, generator=torch.Generator().manual_seed(i)) >= p).to(torch.uint8)
                  for i in range(2))

    def fixed_masks(streams, prob):
        assert prob == p
        return tuple(m.to(streams.device) for m in masks)

    monkeypatch.setattr(fused, "draw_keep_masks", fixed_masks)
    calls = []

    def keep_mask(x, prob):  # the same masks in call order: attention branch, then FFN branch
        assert prob == p
        calls.append(None)
        return masks[(len(calls) - 1) % len(masks)]

    fix_reference_dropout(monkeypatch, keep_mask)
    layer = make_layer(d, 2, 24, seed=7, dropout=p).train()
    inputs = make_inputs(b, t, d, seed=7)
    exact = run_layer(layer, *inputs, torch.float64, "reference")
    same = run_layer(layer, *inputs, torch.float32, "reference")
    fast = run_layer(layer, *inputs, torch.float32, "triton")
    assert_error_rule(fast, same, exact, NAMES)


def test_training_dropout_is_random_and_p_one_drops_both_branches():
    layer = make_layer(16, 2, 24, seed=0, dropout=0.5).float().train()
    streams, anchor, gates, _ = (x.float() for x in make_inputs(3, 3, 16, seed=0))
    assert ops.implementation("interact_iteration", "triton", "cpu") == "triton"
    first, second = (layer(streams, anchor, gates, backend="triton") for _ in range(2))
    assert not torch.equal(first, second)
    torch.manual_seed(11)
    again = layer(streams, anchor, gates, backend="triton")
    torch.manual_seed(11)
    assert torch.equal(layer(streams, anchor, gates, backend="triton"), again)
    layer.drop.p = 1.0
    assert torch.equal(layer(streams, anchor, gates, backend="triton"), streams)
    layer.eval()
    torch.testing.assert_close(layer(streams, anchor, gates, backend="triton"),
                               layer(streams, anchor, gates, backend="reference"))


@pytest.mark.parametrize("change, message", [
    (lambda s, a, g, w: (s[:, :1], a, g, w), "expected streams"),
    (lambda s, a, g, w: (s, a[:, :-1], g, w), "expected streams"),
    (lambda s, a, g, w: (s, a, g, w[:-1]), "expected 18 weights"),
    (lambda s, a, g, w: (s, a, g.double(), w), "share one dtype"),
    (lambda s, a, g, w: (s, a, g, w[:4] + [w[4].double()] + w[5:]), "projection weights and biases must share"),
])
def test_rejects_bad_inputs(change, message):
    layer = make_layer(16, 2, 24, seed=0).float()
    streams, anchor, gates, _ = (x.float() for x in make_inputs(2, 3, 16, seed=0))
    with pytest.raises(ValueError, match=message):
        fused_iteration(*change(streams, anchor, gates, layer.fused_weights()), n_heads=2)


def test_rejects_a_dropout_probability_outside_0_1():
    layer = make_layer(16, 2, 24, seed=0).float()
    streams, anchor, gates, _ = (x.float() for x in make_inputs(2, 3, 16, seed=0))
    with pytest.raises(ValueError, match="dropout=1.5"):
        fused_iteration(streams, anchor, gates, layer.fused_weights(), n_heads=2, dropout=1.5)


def prog_interact_inputs(cfg, b, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, 3, cfg.n_tokens, cfg.d_model, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(b, 3, generator=g, dtype=torch.float64), dim=-1)
    order = torch.stack([torch.randperm(3, generator=g) for _ in range(b)])
    return [x.to(device) for x in (hidden, weights, order)]


def run_prog_interact(module, hidden, weights, order, dtype, backend):
    module = copy.deepcopy(module).to(dtype=dtype, device=hidden.device)
    with torch.no_grad():
        return module(hidden.to(dtype), weights.to(dtype), order, backend=backend)[1]


def check_persistent(cfg, b, seed, dtype=torch.float32, device="cpu", autocast=None):
    torch.manual_seed(seed)
    module = ProgInteract(cfg).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    inputs = prog_interact_inputs(cfg, b, seed, device)
    exact = run_prog_interact(module, *inputs, torch.float64, "reference")
    with torch.autocast(device, dtype=autocast or torch.float16, enabled=autocast is not None):
        same = run_prog_interact(module, *inputs, dtype, "reference")
        fast = run_prog_interact(module, *inputs, dtype, "triton")
    assert_error_rule([fast], [same], [exact], ["streams after all iterations"])


def test_inference_runs_all_iterations_in_one_persistent_launch(monkeypatch):
    import prlf_fast.ops.interact as interact

    calls = []
    for name in ("fused_stack", "fused_iteration"):
        def counted(*args, _fn=getattr(interact, name), _name=name, **kwargs):
            calls.append(_name)
            return _fn(*args, **kwargs)
        monkeypatch.setattr(interact, name, counted)
    cfg = tiny_config(n_interact=3)
    check_persistent(cfg, b=7, seed=8)
    check_persistent(cfg, b=1, seed=9)
    check_persistent(cfg, b=5, seed=10, autocast=torch.float16)
    assert calls == ["fused_stack"] * 3


def test_persistent_launch_sees_parameter_updates():
    cfg = tiny_config(n_interact=2)
    torch.manual_seed(0)
    module = ProgInteract(cfg).eval()
    hidden, weights, order = (x.float() if x.is_floating_point() else x for x in prog_interact_inputs(cfg, 3, seed=1))
    with torch.no_grad():
        before = module(hidden, weights, order, backend="triton")[1]
        stacked = module.stacked_weights("cpu")
        assert module.stacked_weights("cpu") is stacked          # cached
        module.layers[1].ffn.fc2.bias.add_(1.0)                 # an optimizer step, in place
        after = module(hidden, weights, order, backend="triton")[1]
        torch.testing.assert_close(after, module(hidden, weights, order, backend="reference")[1])
    assert not torch.equal(before, after) and module.stacked_weights("cpu") is not stacked


def test_persistent_launch_only_without_gradients_or_dropout():
    cfg = tiny_config(n_interact=2, dropout=0.1)
    module = ProgInteract(cfg)
    streams, anchor, gates = torch.zeros(2, 2, 3, 16), torch.zeros(2, 3, 16), torch.zeros(2, 2)
    weights = [layer.fused_weights() for layer in module.layers]
    with torch.no_grad():
        assert not runs_persistent("triton", streams, anchor, gates, weights, 0.1, training=True)  # dropout active
        assert runs_persistent("triton", streams, anchor, gates, weights, 0.1, training=False)
        assert not runs_persistent("reference", streams, anchor, gates, weights, 0.1, training=False)
    assert not runs_persistent("triton", streams, anchor, gates, weights, 0.1, training=False)  # parameters need grad
    with pytest.raises(ValueError, match="not differentiable"):
        fused_stack(streams.requires_grad_(), anchor, gates, module.stacked_weights("cpu"), n_heads=2)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype, autocast", [(torch.float32, None), (torch.bfloat16, None),
                                             (torch.float32, torch.bfloat16)])
@pytest.mark.parametrize("b", [64, 4096])
def test_cuda_persistent_launch_at_mosei_sizes(b, dtype, autocast):
    from prlf_fast import PRLFConfig

    check_persistent(PRLFConfig.preset("mosei"), b, seed=b, dtype=dtype, device="cuda", autocast=autocast)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b", [1, 64, 1024])
def test_cuda_matches_eager_layer_at_mosei_sizes(b, dtype):
    check_parity(b, 8, 128, 8, 256, seed=b, dtype=dtype, device="cuda")


@requires_cuda
@pytest.mark.cuda
def test_cuda_repeated_runs_are_bitwise_identical():
    layer = make_layer(128, 8, 256, seed=3)
    inputs = make_inputs(1024, 8, 128, seed=3, device="cuda")
    first = run_layer(layer, *inputs, torch.bfloat16, "triton")
    for _ in range(5):
        again = run_layer(layer, *inputs, torch.bfloat16, "triton")
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@requires_cuda
@pytest.mark.cuda
def test_cuda_torch_compile_traces_the_fused_iteration_fullgraph():
    layer = make_layer(128, 8, 256, seed=4).float().cuda()
    streams, anchor, gates, _ = (x.float() for x in make_inputs(64, 8, 128, seed=4, device="cuda"))
    compiled = torch.compile(lambda s, a, g: layer(s, a, g, backend="triton").sum(), fullgraph=True)
    torch.testing.assert_close(compiled(streams, anchor, gates), layer(streams, anchor, gates, backend="triton").sum())


@requires_cuda
@pytest.mark.cuda
def test_cuda_opcheck():
    layer = make_layer(32, 4, 40, seed=5).float().cuda()
    streams, anchor, gates, _ = (x.float().requires_grad_() for x in make_inputs(3, 8, 32, seed=5, device="cuda"))
    torch.library.opcheck(torch.ops.prlf_fast_triton.interact_iteration_fwd.default,
                          (streams, anchor, gates, layer.fused_weights(), None, None, 1.0, 4, 1e-5))
