"""The inter-modality evaluation encodes each modality once per batch and reuses it for the
complete case and the six configurations, with results equal, bit for bit, to running the model
on each corrupted batch."""
import pytest
import torch
from conftest import tiny_config
from helpers import tiny_split

from prlf_fast import PRLF
from prlf_fast.eval import robustness as evaluate
from prlf_fast.model.encoder import ModalityEncoder

FIELDS = evaluate.OUTPUT_FIELDS


def both_ways(model, split, batch_size):
    configs = [tuple(c) for c in evaluate.missing.INTER_CONFIGS] + [()]
    cpu = torch.device("cpu")
    drop_each = {c: lambda b, i, c=c: evaluate.missing.inter_drop(b, c) for c in configs}
    once = evaluate.collect(model, split, evaluate.inter_encode_once(model, configs), batch_size, cpu, False, FIELDS)
    each = evaluate.collect(model, split, evaluate.corrupted(model, drop_each), batch_size, cpu, False, FIELDS)
    return once, each


def assert_same(once, each):
    assert once.keys() == each.keys()
    for c in each:
        for f in FIELDS:
            assert torch.equal(once[c][f], each[c][f]), (c, f)


@pytest.mark.parametrize("switches", [{}, dict(anchor="text", n_interact=0), dict(reliability="uniform")])
@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_encode_once_equals_encoding_every_configuration(backend, switches):
    cfg = tiny_config(**switches)
    torch.manual_seed(0)
    model = PRLF(cfg, backend=backend)
    split = tiny_split(cfg, 11)
    assert_same(*both_ways(model, split, batch_size=4))   # batches of 4, 4, 3
    assert model.training   # restored
    once = evaluate.inter(model, split, "mosi", batch_size=4)
    each = evaluate.inter(model, split, "mosi", batch_size=4, encode_once=False)
    assert once == each


@pytest.mark.triton
@pytest.mark.slow
def test_encode_once_on_backend_triton():
    cfg = tiny_config()
    torch.manual_seed(0)
    assert_same(*both_ways(PRLF(cfg, backend="triton"), tiny_split(cfg, 2, seed=1), batch_size=2))


def test_each_modality_is_encoded_once_per_batch(monkeypatch):
    calls = []
    original = ModalityEncoder.forward
    monkeypatch.setattr(ModalityEncoder, "forward",
                        lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k))
    cfg = tiny_config()
    evaluate.inter(PRLF(cfg), tiny_split(cfg, 10), "mosi", batch_size=4)
    assert calls == ["text", "audio", "vision"] * 3
    calls.clear()
    evaluate.inter(PRLF(cfg), tiny_split(cfg, 10), "mosi", batch_size=4, encode_once=False)
    assert len(calls) == 3 * 7 * 3
