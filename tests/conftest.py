"""Shared fixtures. On a machine without CUDA, Triton kernels run under the interpreter:
TRITON_INTERPRET must be set before any kernel module is imported, so it is set here."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

# Every op module, so that each test file finds every op registered with the dispatcher
# (torch.ops.prlf_fast_triton.*: registered on import of prlf_fast.ops.<op>), also when run alone.
import prlf_fast.ops  # noqa: E402,F401
from prlf_fast import Batch, PRLFConfig  # noqa: E402

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pytest_collection_modifyitems(config, items):
    """Triton tests on CPU tensors (marked ``triton``, not ``cuda``) need the interpreter, which
    is only set above when there is no GPU, and a numpy it runs beside; elsewhere they would fail,
    or silently compare the reference fallback with itself, so they are skipped, saying why."""
    why = prlf_fast.ops.registry.triton_unavailable(torch.device("cpu"))
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"Triton on CPU tensors: {why} (TRITON_INTERPRET=1 is set when there is no GPU)")
    for item in items:
        if "triton" in item.keywords and "cuda" not in item.keywords:
            item.add_marker(skip)


def assert_error_rule(fast, same_dtype, exact, names, floor=1e-5):
    """error(fast vs float64) ≤ 2 × error(reference in the same dtype vs float64) + floor·scale."""
    for f, r, e, name in zip(fast, same_dtype, exact, names):
        assert f.shape == e.shape and f.dtype == r.dtype, name
        assert torch.isfinite(f).all(), f"{name}: non-finite values"
        scale = 1.0 + e.abs().max().item()
        err_fast = (f.double() - e).abs().max().item()
        err_ref = (r.double() - e).abs().max().item()
        assert err_fast <= 2 * err_ref + floor * scale, \
            f"{name}: error {err_fast:.3g} vs float64 exceeds 2 × reference error {err_ref:.3g}"


def tiny_config(**overrides) -> PRLFConfig:
    """A MOSI-like config small enough for float64 gradchecks and the Triton interpreter."""
    base = dict(text_dim=12, audio_dim=5, vision_dim=7, text_len=9, audio_len=11, vision_len=13,
                d_model=16, n_tokens=3, n_heads=2, n_encoder_layers=1, n_interact=2, ffn_dim=24,
                recog_hidden=10)
    return PRLFConfig.preset("mosi", **{**base, **overrides})


def random_batch(cfg: PRLFConfig, batch_size: int, seed: int = 0, dtype=torch.float32,
                 device="cpu", lengths=None, label=True) -> Batch:
    """Random features with prefix-valid masks. ``lengths`` maps a modality to (B,) valid
    counts (0 = absent); by default each sample gets a random length ≥ 1."""
    g = torch.Generator().manual_seed(seed)
    parts = {}
    for m, dim in cfg.dims().items():
        length = cfg.lengths()[m]
        n_valid = (lengths or {}).get(m)
        if n_valid is None:
            n_valid = torch.randint(1, length + 1, (batch_size,), generator=g)
        n_valid = torch.as_tensor(n_valid)
        parts[m] = torch.randn(batch_size, length, dim, generator=g, dtype=dtype).to(device)
        parts[f"{m}_mask"] = (torch.arange(length)[None, :] < n_valid[:, None]).to(device)
    y = (torch.rand(batch_size, generator=g, dtype=dtype) * 6 - 3).to(device) if label else None
    return Batch(**parts, label=y)


@pytest.fixture
def tiny_cfg():
    return tiny_config()
