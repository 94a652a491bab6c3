"""The whole model on backend "triton" (every masked attention and ProgInteract iteration through
the Triton kernels; on CPU under the interpreter) against backend "reference": predictions, loss
and every parameter gradient under the error rule; same parameters and state_dict."""
import pytest
import torch
from conftest import assert_error_rule, random_batch, requires_cuda, tiny_config
from helpers import batch_to, fix_reference_dropout, run_model

from prlf_fast import PRLF, Batch

pytestmark = pytest.mark.triton


def clearly_ordered(model, batch, min_gap: float) -> Batch:
    """The samples whose float64 AMRE weights differ pairwise by at least ``min_gap``. AMRE's
    ordering is discontinuous: where two weights lie within a low precision's rounding, either
    path may order them either way, and the error rule would measure a coin toss."""
    with torch.no_grad():
        weights = model(batch_to(batch, torch.float64, "cpu")).weights
    keep = weights.sort(dim=-1).values.diff(dim=-1).min(dim=-1).values >= min_gap
    assert keep.sum() >= 16, f"only {int(keep.sum())} clearly ordered samples"
    return Batch(**{k: v[keep] for k, v in vars(batch).items() if v is not None})


def check_model_parity(cfg, batch, dtype=torch.float32, device="cpu", min_weight_gap=0.0):
    torch.manual_seed(0)
    model = PRLF(cfg, backend="reference").double().eval()
    if min_weight_gap > 0:
        batch = clearly_ordered(model, batch, min_weight_gap)
    exact, names = run_model(model, batch, torch.float64, "reference", device)
    same, _ = run_model(model, batch, dtype, "reference", device)
    fast, _ = run_model(model, batch, dtype, "triton", device)
    assert_error_rule(fast, same, exact, names)


def test_model_matches_reference_with_absent_modalities_and_batch_of_one(monkeypatch):
    import prlf_fast.kernels.attention
    import prlf_fast.kernels.interact

    calls = {"attention": 0, "interact": 0}   # forward launches of each kernel
    for name in calls:
        module = getattr(prlf_fast.kernels, name)

        def counted(*args, _fn=module.forward, _name=name, **kwargs):
            calls[_name] += 1
            return _fn(*args, **kwargs)
        monkeypatch.setattr(module, "forward", counted)
    cfg = tiny_config()
    lengths = {"audio": torch.tensor([0, 5, 1, 11]), "vision": torch.tensor([13, 0, 2, 0])}
    check_model_parity(cfg, random_batch(cfg, 4, seed=1, lengths=lengths))
    check_model_parity(cfg, random_batch(cfg, 1, seed=2, lengths={"text": torch.tensor([0])}))
    # Per model call: pooling + one self-attention per encoder layer, for 3 modalities; N iterations.
    assert calls == {"attention": 2 * 3 * (1 + cfg.n_encoder_layers), "interact": 2 * cfg.n_interact}


def test_state_dict_does_not_depend_on_the_backend():
    cfg = tiny_config()
    torch.manual_seed(0)
    keys = {b: list(PRLF(cfg, backend=b).state_dict()) for b in ("reference", "triton", "fast")}
    assert keys["reference"] == keys["triton"] == keys["fast"]


def test_training_mode_with_dropout_matches_reference_with_the_same_masks(monkeypatch):
    cfg = tiny_config(dropout=0.3)
    torch.manual_seed(0)
    model = PRLF(cfg, backend="triton").train()
    batch = random_batch(cfg, 3, seed=4)
    first = model(batch)
    assert not torch.equal(first.prediction, model(batch).prediction)   # dropout is active
    # Prediction, weights, loss and every gradient in training mode against the reference.
    model = model.double()
    from prlf_fast.ops.interact import draw_keep_masks

    drawn = []

    def keep_mask(x, p):  # as the fused iteration draws them: both branches' masks at the first call
        if not drawn:
            drawn.extend(draw_keep_masks(x, p))
        return drawn.pop(0)

    fix_reference_dropout(monkeypatch, keep_mask)
    runs = []
    for dtype, backend in [(torch.float64, "reference"), (torch.float32, "reference"), (torch.float32, "triton")]:
        torch.manual_seed(1)              # the same dropout masks in every run
        runs.append(run_model(model, batch, dtype, backend, "cpu"))
    (exact, names), (same, _), (fast, _) = runs
    assert_error_rule(fast, same, exact, names)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_model_matches_reference_at_mosei_sizes(dtype):
    from prlf_fast import PRLFConfig

    cfg = PRLFConfig.preset("mosei", dropout=0.0)
    # bf16 resolves AMRE weights near 1/3 to ~0.01 after the encoders: compare clear orderings only.
    gap = 0.03 if dtype == torch.bfloat16 else 0.0
    check_model_parity(cfg, random_batch(cfg, 64, seed=5), dtype=dtype, device="cuda", min_weight_gap=gap)
