"""The training path on CUDA: the whole model in train() mode with dropout (the same fixed keep masks
on both backends) under bf16 autocast, backend "triton" against "reference", the loss and every
parameter gradient by the error rule; one SGD step of each; and a model on cuda:1 while cuda:0 is
current (skipped below 2 GPUs). Runs in bench/gpu_check.sh. On CPU, the same fixed-mask comparison
runs at tiny sizes in float32 under the Triton interpreter."""
import copy
import zlib

import pytest
import torch
from conftest import assert_error_rule, random_batch, requires_cuda, tiny_config
from helpers import batch_to, fix_reference_dropout, run_model

from prlf_fast import PRLF, Batch, PRLFConfig

pytestmark = pytest.mark.triton


class MaskBank:
    """Keep masks per (dropout module, call), drawn once for the ``full`` batch from fixed seeds;
    ``rows`` selects the samples in use. Shared, not copied, by deep copies of the model."""

    def __init__(self, p: float, full: int):
        self.p, self.full, self.masks, self.rows, self.calls, self.fused_calls = p, full, {}, None, {}, 0
        self.reference_calls = 0

    def __deepcopy__(self, memo):
        return self

    def reset(self):
        self.calls, self.fused_calls, self.reference_calls = {}, 0, 0

    def next(self, name: str, shape, device):
        call = self.calls.get(name, 0)
        self.calls[name] = call + 1
        if (name, call) not in self.masks:
            g = torch.Generator().manual_seed(zlib.crc32(f"{name}/{call}".encode()))
            self.masks[name, call] = (torch.rand(self.full, *shape[1:], generator=g) >= self.p).to(torch.uint8)
        mask = self.masks[name, call] if self.rows is None else self.masks[name, call][self.rows]
        return mask.to(device)


class FixedDropout(torch.nn.Module):
    """nn.Dropout with the bank's masks (train mode only)."""

    def __init__(self, bank: MaskBank, name: str):
        super().__init__()
        self.bank, self.name, self.p = bank, name, bank.p

    def forward(self, x):
        if not self.training:
            return x
        return x * self.bank.next(self.name, x.shape, x.device).to(x.dtype) / (1 - self.p)


def with_fixed_dropout(model: PRLF, bank: MaskBank, monkeypatch) -> PRLF:
    """Every nn.Dropout of ``model`` draws from ``bank``; so do the reference iteration's dropout
    and the fused iterations' keep masks (InteractLayer j's two calls: attention branch, then FFN
    branch)."""
    for name, module in list(model.named_modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, torch.nn.Dropout):
                setattr(module, child, FixedDropout(bank, f"{name}.{child}"))
    import prlf_fast.ops.interact as fused

    def reference_mask(x, p):  # InteractLayer j's calls 2j and 2j + 1: attention branch, then FFN branch
        layer = bank.reference_calls // 2
        bank.reference_calls += 1
        return bank.next(f"interact.layers.{layer}.drop", x.shape, x.device)

    fix_reference_dropout(monkeypatch, reference_mask)

    def fixed_masks(streams, p):
        name = f"interact.layers.{bank.fused_calls}.drop"
        bank.fused_calls += 1
        return tuple(bank.next(name, streams.shape, streams.device) for _ in range(2))

    monkeypatch.setattr(fused, "draw_keep_masks", fixed_masks)
    return model


def run(model, batch, backend, dtype, autocast, bank, device="cuda"):
    """(prediction, loss, every gradient) and their names; ``model`` is copied, not changed."""
    model = copy.deepcopy(model).to(device=device, dtype=dtype).train()
    model.backend = backend
    batch = batch_to(batch, dtype, device)
    bank.reset()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        out = model(batch)
        loss = model.loss(out, batch)["total"]
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return model, [out.prediction, loss, *grads], ["prediction", "loss", *names]


def clearly_ordered_rows(model, batch, bank, min_gap):
    """Samples whose float64 AMRE weights (with the fixed masks) differ pairwise by ≥ ``min_gap``:
    elsewhere bf16 may order the modalities either way (see test_model_triton.clearly_ordered)."""
    bank.reset()
    with torch.no_grad():
        weights = copy.deepcopy(model).cuda().train()(batch_to(batch, torch.float64, "cuda")).weights
    keep = (weights.sort(dim=-1).values.diff(dim=-1).min(dim=-1).values >= min_gap).nonzero().squeeze(1).cpu()
    assert len(keep) >= 16, f"only {len(keep)} clearly ordered samples"
    return keep


@pytest.fixture
def mosei_training(monkeypatch):
    cfg = PRLFConfig.preset("mosei", dropout=0.1)
    torch.manual_seed(0)
    bank = MaskBank(cfg.dropout, full=64)
    model = with_fixed_dropout(PRLF(cfg, backend="reference").double(), bank, monkeypatch)
    batch = random_batch(cfg, 64, seed=21)
    bank.rows = clearly_ordered_rows(model, batch, bank, min_gap=0.03)
    batch = Batch(**{k: v[bank.rows] for k, v in vars(batch).items() if v is not None})
    return model, batch, bank


@pytest.mark.slow
def test_train_mode_dropout_matches_reference_with_the_same_masks_on_cpu(monkeypatch):
    cfg = tiny_config(dropout=0.3)
    torch.manual_seed(0)
    bank = MaskBank(cfg.dropout, full=5)
    model = with_fixed_dropout(PRLF(cfg, backend="reference").double(), bank, monkeypatch)
    batch = random_batch(cfg, 5, seed=3, lengths={"audio": torch.tensor([0, 4, 1, 11, 2])})
    _, exact, names = run(model, batch, "reference", torch.float64, False, bank, "cpu")
    _, same, _ = run(model, batch, "reference", torch.float32, False, bank, "cpu")
    _, fast, _ = run(model, batch, "triton", torch.float32, False, bank, "cpu")
    assert bank.fused_calls == cfg.n_interact          # the fused iterations drew the bank's masks
    assert_error_rule(fast, same, exact, names)
    _, dropped, _ = run(model, batch, "triton", torch.float32, False, MaskBank(cfg.dropout, full=5), "cpu")
    assert not torch.equal(dropped[0], fast[0])        # other masks, other predictions: dropout is live


@requires_cuda
@pytest.mark.cuda
def test_cuda_train_mode_dropout_bf16_autocast_matches_reference(mosei_training):
    model, batch, bank = mosei_training
    _, exact, names = run(model, batch, "reference", torch.float64, False, bank)
    _, same, _ = run(model, batch, "reference", torch.float32, True, bank)
    _, fast, _ = run(model, batch, "triton", torch.float32, True, bank)
    assert_error_rule(fast, same, exact, names)


@requires_cuda
@pytest.mark.cuda
def test_cuda_one_training_step_of_each_backend(mosei_training):
    """One SGD step from the same start on each backend, then an eval-mode forward (the fused
    inference stack must see the updated weights): parameters and predictions by the error rule."""
    model, batch, bank = mosei_training
    results = []
    for backend, dtype, autocast in (("reference", torch.float64, False), ("reference", torch.float32, True),
                                     ("triton", torch.float32, True)):
        stepped, values, names = run(model, batch, backend, dtype, autocast, bank)
        with torch.no_grad():
            for p, g in zip(stepped.parameters(), values[2:]):
                p -= 0.05 * g
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                prediction = stepped.eval()(batch_to(batch, dtype, "cuda")).prediction
        results.append([prediction, *stepped.parameters()])
    names = ["prediction after the step", *(n for n, _ in model.named_parameters())]
    assert_error_rule(results[2], results[1], results[0], names)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_cuda_model_on_the_second_gpu_while_the_first_is_current():
    """Every Triton launch runs on its tensors' device (kernels.common.on_device), whatever
    device is current: forward, loss and gradients on cuda:1 match the reference there."""
    cfg = PRLFConfig.preset("mosei", dropout=0.0)
    torch.manual_seed(0)
    model = PRLF(cfg, backend="reference").float().eval()
    batch = random_batch(cfg, 32, seed=22)
    with torch.cuda.device(0):
        fast, names = run_model(model, batch, torch.float32, "triton", "cuda:1")
        same, _ = run_model(model, batch, torch.float32, "reference", "cuda:1")
        exact, _ = run_model(model.double(), batch, torch.float64, "reference", "cuda:1")
    assert all(t.device == torch.device("cuda:1") for t in fast)
    assert_error_rule(fast, same, exact, names)
