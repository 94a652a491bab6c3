"""One ProgInteract iteration at MOSEI shapes (d 128, 8 heads, T 8, FFN 256), batch 64 and
1024: the fused Triton iteration against the eager reference layer and torch.compile of it
(targets: ≥ 3× eager, ≥ 1.3× compiled, forward+backward). CUDA only; see docs/kernels.md."""
import pytest
import torch
from conftest import synced

from prlf_fast.model.interact import InteractLayer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

D_MODEL, HEADS, FFN, TOKENS = 128, 8, 256, 8


def iteration(variant):
    torch.manual_seed(0)
    layer = InteractLayer(D_MODEL, HEADS, FFN, dropout=0.0).cuda()
    backend = "triton" if variant == "triton" else "reference"

    def run(streams, anchor, gates):
        return layer(streams, anchor, gates, backend=backend)

    return layer, (torch.compile(run) if variant == "compiled" else run)


@pytest.mark.parametrize("variant", ["eager", "compiled", "triton"])
@pytest.mark.parametrize("mode", ["forward+backward", "inference"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
@pytest.mark.parametrize("batch", [64, 1024])
def test_interact_iteration(benchmark, batch, precision, mode, variant):
    layer, run = iteration(variant)
    g = torch.Generator(device="cuda").manual_seed(1)
    train = mode == "forward+backward"
    streams = torch.randn(batch, 2, TOKENS, D_MODEL, device="cuda", generator=g).requires_grad_(train)
    anchor = torch.randn(batch, TOKENS, D_MODEL, device="cuda", generator=g).requires_grad_(train)
    gates = torch.rand(batch, 2, device="cuda", generator=g).requires_grad_(train)
    grad = torch.randn_like(streams)
    inputs = [streams, anchor, gates, *layer.parameters()]

    def step():
        with torch.inference_mode(not train), torch.autocast("cuda", torch.bfloat16, enabled=precision != "fp32"):
            out = run(streams, anchor, gates)
        if train:
            torch.autograd.grad(out, inputs, grad)
        return out

    step()
    benchmark.extra_info.update(batch=batch, precision=precision, mode=mode)
    out = benchmark(synced(step, "cuda"))
    assert out.shape == streams.shape


@pytest.mark.parametrize("variant", ["eager", "compiled", "triton"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
@pytest.mark.parametrize("batch", [1024, 4096])
def test_prog_interact_inference(benchmark, batch, precision, variant):
    """All 3 iterations of ProgInteract for inference: the persistent one-launch kernel."""
    from prlf_fast import PRLFConfig
    from prlf_fast.model.interact import ProgInteract

    torch.manual_seed(0)
    module = ProgInteract(PRLFConfig.preset("mosei")).cuda().eval()
    backend = "triton" if variant == "triton" else "reference"

    def run(hidden, weights, order):
        return module(hidden, weights, order, backend=backend)[1]

    run = torch.compile(run) if variant == "compiled" else run
    g = torch.Generator(device="cuda").manual_seed(2)
    hidden = torch.randn(batch, 3, TOKENS, D_MODEL, device="cuda", generator=g)
    weights = torch.softmax(torch.randn(batch, 3, device="cuda", generator=g), dim=-1)
    order = torch.argsort(weights, dim=-1, descending=True)

    @torch.inference_mode()
    def step():
        with torch.autocast("cuda", torch.bfloat16, enabled=precision != "fp32"):
            return run(hidden, weights, order)

    step()
    benchmark.extra_info.update(batch=batch, precision=precision, iterations=len(module.layers))
    out = benchmark(synced(step, "cuda"))
    assert out.shape == (batch, 2, TOKENS, D_MODEL)
