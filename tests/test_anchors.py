"""Anchor diagnostics of the robustness evaluation: the run's anchor rule against each
fixed anchor and the per-sample best, on one encoding per batch."""
import dataclasses

import pytest
import torch
from conftest import tiny_config
from helpers import tiny_split

from prlf_fast import PRLF
from prlf_fast.config import MODALITIES
from prlf_fast.eval import anchors
from prlf_fast.eval import robustness as evaluate
from prlf_fast.model.encoder import ModalityEncoder

COLUMNS = ("amre", "text", "audio", "vision", "best")


def check_record(rec, metrics, available):
    """The invariants of one case's anchor record."""
    cols = rec["metrics"]
    assert tuple(cols) == COLUMNS
    assert cols["amre"] == metrics                     # the rule's column is the case's metrics
    for c in COLUMNS:                                  # the per-sample best is never worse
        assert cols["best"]["MAE"] <= cols[c]["MAE"] + 1e-12, c
    for m in MODALITIES:
        if m not in available:                         # an absent fixed anchor falls back to AMRE's rule
            assert cols[m] == cols["amre"], m
    if len(available) <= 1:                            # nothing to choose: no headroom (0/0)
        assert rec["headroom"] is None and rec["rule_best_share"] == 1.0
    else:
        assert rec["headroom"] is None or rec["headroom"] <= 1.0 + 1e-9
    assert 0.0 <= rec["rule_best_share"] <= 1.0


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_robustness_reports_each_anchor(backend):
    cfg = tiny_config()
    torch.manual_seed(0)
    model = PRLF(cfg, backend=backend)
    split = tiny_split(cfg, 13)
    got = evaluate.robustness(model, split, "mosi", rates=[0.0, 0.5], seeds=[0, 1], batch_size=5)
    plain = evaluate.robustness(model, split, "mosi", rates=[0.0, 0.5], seeds=[0, 1], batch_size=5, anchors=False)
    # The diagnostics only add fields: every other value is bit for bit the same.
    for proto in ("intra", "inter"):
        extra = got[proto].pop("anchors")
        assert [{k: v for k, v in r.items() if k != "anchors"} for r in got[proto]["records"]] == plain[proto]["records"]
        assert {k: v for k, v in got[proto].items() if k != "records"} == \
            {k: v for k, v in plain[proto].items() if k != "records"}
        got[proto]["anchors"] = extra
    for r in got["intra"]["records"]:
        check_record(r["anchors"], r["metrics"], MODALITIES)
    for r in got["inter"]["records"]:
        check_record(r["anchors"], r["metrics"], r["available"])
    text_dropped = got["inter"]["records"][0]
    assert text_dropped["dropped"] == ["text"]
    assert text_dropped["anchors"]["metrics"]["text"] == text_dropped["anchors"]["metrics"]["amre"]
    # Summaries: the mean over seeds per rate, the headroom share of those means.
    per_rate = got["intra"]["anchors"]["per_rate"]
    assert [r["rate"] for r in per_rate] == [0.0, 0.5]
    at_half = [r["anchors"] for r in got["intra"]["records"] if r["rate"] == 0.5]
    for c in COLUMNS:
        assert per_rate[1]["metrics"][c]["MAE"] == pytest.approx(sum(a["metrics"][c]["MAE"] for a in at_half) / 2)
    assert per_rate[1]["headroom"] == anchors.headroom({c: m["MAE"] for c, m in per_rate[1]["metrics"].items()})
    six = [r["anchors"]["metrics"]["best"]["MAE"] for r in got["inter"]["records"] if r["dropped"]]
    assert got["inter"]["anchors"]["average"]["metrics"]["best"]["MAE"] == pytest.approx(sum(six) / 6)
    assert got["intra"]["anchors"]["average"]["metrics"]["best"]["MAE"] <= \
        min(got["intra"]["anchors"]["average"]["metrics"][m]["MAE"] for m in MODALITIES)


def test_fixed_anchor_outputs_equal_models_configured_that_way():
    """A fixed anchor forced at inference gives what a model configured with that anchor gives."""
    cfg = tiny_config()
    torch.manual_seed(1)
    model = PRLF(cfg).eval()
    split = tiny_split(cfg, 7, seed=3)
    out = evaluate.collect(model, split, evaluate.corrupted(model, {"": lambda b, i: b}, evaluate.anchor_fuse(model)), 7,
                           torch.device("cpu"), False)
    for m in MODALITIES:
        fixed = PRLF(tiny_config(anchor=m)).eval()
        fixed.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert torch.equal(out[("", m)]["prediction"], fixed(split.batch(torch.arange(7))).prediction)


def test_each_modality_is_encoded_once_for_every_anchor(monkeypatch):
    calls = []
    original = ModalityEncoder.forward
    monkeypatch.setattr(ModalityEncoder, "forward", lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k))
    cfg = tiny_config()
    evaluate.intra(PRLF(cfg), tiny_split(cfg, 10), "mosi", [0.0, 0.5], [0], batch_size=10, anchors=True)
    assert calls == ["text", "audio", "vision"] * 2


def test_headroom_share():
    mae = {"amre": 0.7, "text": 0.6, "audio": 0.8, "vision": 0.9, "best": 0.4}
    assert anchors.headroom(mae) == pytest.approx(-0.5)     # worse than always text
    assert anchors.headroom({**mae, "amre": 0.5}) == pytest.approx(0.5)
    assert anchors.headroom({**mae, "amre": 0.4}) == pytest.approx(1.0)
    assert anchors.headroom({**mae, "best": 0.6}) is None    # 0 headroom: nothing to capture


@pytest.mark.parametrize("backend", ["reference", "fast"])
@pytest.mark.parametrize("n, rate", [(1, 0.0), (5, 0.5), (33, 0.3), (64, 0.0), (64, 0.9)])
def test_fuse_all_is_bit_for_bit_each_anchors_fuse(backend, n, rate):
    """The forced anchors' predictions (the rule's reused where the order is the rule's, the rest
    batched) against ``PRLF.fuse(..., anchor=m)`` on the whole batch: equal to the bit, with samples
    missing modalities (and some none) and batches of 1 to 64."""
    from prlf_fast.data import missing

    cfg = tiny_config(n_interact=2)
    torch.manual_seed(n)
    model = PRLF(cfg, backend=backend).eval()
    split = tiny_split(cfg, n, seed=n)
    idx = torch.arange(n)
    batch = missing.intra_corrupt(split.batch(idx), rate, missing.select_uniforms(missing.eval_uniforms(split, n), idx))
    if n >= 3:   # the last sample has no modality, the one before it vision only (one valid frame at least)
        masks = {f"{m}_mask": getattr(batch, f"{m}_mask").clone() for m in MODALITIES}
        for m in MODALITIES:
            masks[f"{m}_mask"][n - 1] = False
        masks["text_mask"][n - 2] = masks["audio_mask"][n - 2] = False
        masks["vision_mask"][n - 2, 0] = True
        batch = dataclasses.replace(batch, **masks)
    predicted = []
    original = model.predict
    model.predict = lambda hidden, *a: predicted.append(len(hidden)) or original(hidden, *a)
    with torch.no_grad():
        hidden, present = model.encode(batch)
        assert n < 3 or (not present[n - 1].any() and present[n - 2].tolist() == [False, False, True])
        out = anchors.fuse_all(model, "", hidden, present)
        model.predict = original
        assert torch.equal(out[""].prediction, model.fuse(hidden, present).prediction)
        for m in MODALITIES:
            forced = model.fuse(hidden, present, anchor=m)
            assert torch.equal(out[("", m)].prediction, forced.prediction), m
            assert torch.equal(out[("", m)].dominant, forced.dominant), m
    # The rule's pass, then at most two: a sample's order changes for at most two anchors.
    assert len(predicted) <= 3 and set(predicted) == {n}
