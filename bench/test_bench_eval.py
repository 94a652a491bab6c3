"""The full robustness evaluation a run (and every sweep cell) repeats: the intra protocol at ten
rates × three mask seeds plus the inter protocol's complete case and six configurations, at MOSI
shapes, reference against fast, with the inter protocol encoding each modality once per batch
(variants "-encode-once", the default now) or once per configuration (as before). Measure all
four in one run and compare ratios (same machine, same load); on a shared CPU,
``--benchmark-timer=time.process_time`` with one thread times the process's own work."""
import pytest
import torch
from conftest import devices, synced

from prlf_fast import PRLF, PRLFConfig
from prlf_fast.config import MODALITIES
from prlf_fast.data import Split, prepare_mmsa, synthesize
from prlf_fast.eval import anchors as anchor_diag
from prlf_fast.eval.robustness import inter, robustness

N_TEST = {"cpu": 128, "cuda": 2048}
BATCH = {"cpu": 128, "cuda": 1024}
# "reference" and "fast" encode every inter configuration apart (as before); "-encode-once"
# encodes each modality once per batch (the default now).
VARIANTS = ("reference", "fast", "reference-encode-once", "fast-encode-once")
SMOKE_N_TEST = 8   # under --benchmark-disable (CI's smoke run), each test runs once on this many


def setup(benchmark, device, backend):
    n = SMOKE_N_TEST if benchmark.disabled else N_TEST[device]
    data = prepare_mmsa(synthesize("mosi", 1, 1, n, seed=0), copy=False)[0]
    split = Split.from_mmsa(data["test"], device=device)
    torch.manual_seed(0)
    return PRLF(PRLFConfig.preset("mosi"), backend=backend).to(device).eval(), split


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("protocol", ["robustness", "inter"])
@pytest.mark.parametrize("device", devices())
def test_evaluation(benchmark, device, protocol, variant):
    """``robustness``: both protocols as ``prlf-fast train`` ends with; ``inter``: the inter
    protocol alone, the part that encoding once speeds up."""
    backend, _, once = variant.partition("-")
    model, split = setup(benchmark, device, backend)
    once = once == "encode-once"
    benchmark.extra_info.update(n_test=len(split), batch=BATCH[device], protocol=protocol, variant=variant)
    if protocol == "robustness":
        def run():
            return robustness(model, split, "mosi", batch_size=BATCH[device], device=device, encode_once=once)
    else:
        def run():
            return {"inter": {"records": inter(model, split, "mosi", BATCH[device], device, encode_once=once)}}
    results = benchmark.pedantic(synced(run, device), rounds=3, iterations=1, warmup_rounds=1)
    assert len(results["inter"]["records"]) == 7


def fuse_each_anchor(model, name, hidden, present):
    """The diagnostics as they ran before ``anchors.fuse_all`` reused work: one ``PRLF.fuse``
    (AMRE, ProgInteract, head) per fixed anchor on the whole batch."""
    out = {name: model.fuse(hidden, present)}
    for m in MODALITIES:
        out[(name, m)] = model.fuse(hidden, present, anchor=m)
    return out


@pytest.mark.parametrize("anchors", ["off", "on", "on-fuse-each"])
@pytest.mark.parametrize("device", devices())
def test_anchor_diagnostics(benchmark, device, anchors, monkeypatch):
    """The full evaluation (fast backend, encoding once) without the anchor diagnostics, with them
    (``anchors.fuse_all``: the rule's predictions reused where a fixed anchor leaves the order,
    two ProgInteract + head passes for the rest) and with one full fuse per fixed anchor
    (``fuse_each_anchor``, as before). The results of the last two are equal, bit for bit."""
    if anchors == "on-fuse-each":
        monkeypatch.setattr(anchor_diag, "fuse_all", fuse_each_anchor)
    model, split = setup(benchmark, device, "fast")
    benchmark.extra_info.update(n_test=len(split), batch=BATCH[device], backend="fast", anchors=anchors)
    results = benchmark.pedantic(synced(lambda: robustness(model, split, "mosi", batch_size=BATCH[device],
                                                           device=device, anchors=anchors != "off"), device),
                                 rounds=3, iterations=1, warmup_rounds=0)
    assert ("anchors" in results["intra"]) == (anchors != "off")
