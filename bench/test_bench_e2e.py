"""End to end: a training step and inference throughput at MOSI and MOSEI shapes, reference
against fast, with torch.compile of the reference as the peer a user would try first.

Compare ratios within one run (same machine, same process): see BENCHMARKS.md.
"""
import pytest
import torch
from conftest import devices, synced

from prlf_fast import PRLF, Batch, PRLFConfig

TRAIN_BATCH = 64
INFER_BATCH = {"cpu": 256, "cuda": 4096}
VARIANTS = ("reference", "fast", "compiled-reference")


def make_batch(cfg, batch_size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    parts = {}
    for m, dim in cfg.dims().items():
        length = cfg.lengths()[m]
        n_valid = torch.randint(1, length + 1, (batch_size,), generator=g)
        parts[m] = torch.randn(batch_size, length, dim, generator=g).to(device)
        parts[f"{m}_mask"] = (torch.arange(length)[None] < n_valid[:, None]).to(device)
    return Batch(**parts, label=(torch.rand(batch_size, generator=g) * 6 - 3).to(device))


def build(preset, variant, device, train):
    torch.manual_seed(0)
    model = PRLF(PRLFConfig.preset(preset), backend="fast" if variant == "fast" else "reference").to(device)
    model.train(train)
    forward = torch.compile(model) if variant == "compiled-reference" else model
    return model, forward


def _skip_slow_compile(benchmark, variant, device):
    if variant == "compiled-reference" and device == "cpu" and benchmark.disabled:
        pytest.skip("compiling on CPU takes minutes; measured only with benchmarks enabled")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("preset", ["mosi", "mosei"])
@pytest.mark.parametrize("device", devices())
def test_train_step(benchmark, preset, variant, device):
    _skip_slow_compile(benchmark, variant, device)
    model, forward = build(preset, variant, device, train=True)
    batch = make_batch(model.config, TRAIN_BATCH, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model.loss(forward(batch), batch)["total"]
        loss.backward()
        opt.step()
        return loss

    step()  # warm-up (and compilation)
    benchmark.extra_info.update(batch=TRAIN_BATCH, preset=preset, variant=variant)
    loss = benchmark(synced(step, device))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("preset", ["mosi", "mosei"])
@pytest.mark.parametrize("device", devices())
def test_inference(benchmark, preset, variant, device):
    _skip_slow_compile(benchmark, variant, device)
    model, forward = build(preset, variant, device, train=False)
    batch = make_batch(model.config, INFER_BATCH[device], device)

    @torch.inference_mode()
    def infer():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            return forward(batch).prediction

    infer()
    bytes_in = sum(t.numel() * t.element_size() for t in (batch.text, batch.audio, batch.vision))
    benchmark.extra_info.update(batch=batch.size, preset=preset, variant=variant, input_bytes=bytes_in)
    pred = benchmark(synced(infer, device))
    assert pred.shape == (batch.size,)
    if benchmark.stats is not None:  # absent under --benchmark-disable
        # Inference reads every input feature once: compare with test_copy_bandwidth's figure.
        benchmark.extra_info["bandwidth_GBps"] = bytes_in / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("device", devices())
def test_copy_bandwidth(benchmark, device):
    """The device's measured copy bandwidth (bytes read + written per second), the yardstick of
    inference's achieved bandwidth."""
    n_bytes = (1 << 30) if device == "cuda" else (256 << 20)
    src = torch.empty(n_bytes // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    benchmark(synced(lambda: dst.copy_(src), device))
    assert torch.equal(dst[:1024], src[:1024])
    if benchmark.stats is not None:
        benchmark.extra_info["bandwidth_GBps"] = 2 * n_bytes / benchmark.stats.stats.median / 1e9
