"""The ablation switches of docs/design.md §4.6 (``reliability``, ``anchor``, ``gate_streams``,
``n_interact = 0``): validation, semantics on the reference model, every backend against the
reference (forward and every gradient), and defaults that keep the earlier results."""
import math

import pytest
import torch
from conftest import random_batch, tiny_config
from helpers import LENGTHS, check_backend_parity

from prlf_fast import PRLF, PRLFConfig
from prlf_fast.model.amre import reliability_weights_and_order

INF = float("-inf")
SWITCHES = [
    dict(reliability="confidence", anchor="audio"),
    dict(reliability="fisher", anchor="text", gate_streams=False),
    dict(reliability="uniform", anchor="vision"),
    dict(n_interact=0),
]


def _model(cfg, seed=0, backend="reference"):
    torch.manual_seed(seed)
    return PRLF(cfg, backend=backend).eval()


def test_switches_are_validated_and_saved():
    cfg = PRLFConfig.preset("mosi", reliability="fisher", anchor="text", gate_streams=False, n_interact=0)
    assert PRLFConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["gate_streams"] is False
    old = {k: v for k, v in PRLFConfig().to_dict().items() if k not in ("reliability", "anchor", "gate_streams")}
    assert PRLFConfig.from_dict(old) == PRLFConfig()   # a config.json written before the switches
    for bad, match in [(dict(reliability="entropy"), "reliability='entropy'; expected one of"),
                       (dict(anchor="language"), "anchor='language'; expected one of"),
                       (dict(gate_streams="false"), "gate_streams='false': expected bool"),
                       (dict(gate_streams=1), "gate_streams=1: expected bool"),
                       (dict(n_interact=-1), "n_interact=-1 must be ≥ 0")]:
        with pytest.raises(ValueError, match=match):
            PRLFConfig.preset("mosi", **bad)


def test_defaults_reproduce_the_formulation_before_the_switches():
    """Values computed (float64, reference backend) by the code before the switches existed."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = PRLF(cfg, backend="reference").double().eval()
    batch = random_batch(cfg, 4, seed=21, dtype=torch.float64,
                         lengths={"audio": torch.tensor([0, 3, 11, 1]), "vision": torch.tensor([5, 0, 13, 0])})
    out = model(batch)
    expected = [-0.004791867579263406, 0.0698734354480781, 0.21119475525688663, 0.16781936187723598]
    torch.testing.assert_close(out.prediction, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.weights[2], torch.tensor(
        [0.3264768822519577, 0.4361932806600768, 0.23732983708796554], dtype=torch.float64), rtol=1e-12, atol=0)
    assert out.order.tolist() == [[2, 0, 1], [1, 0, 2], [1, 0, 2], [1, 0, 2]]
    assert model.loss(out, batch)["total"].item() == pytest.approx(0.9335086915660094, rel=1e-12)


def test_reliability_modes_form_the_score_as_documented():
    batch = random_batch(tiny_config(), 4, seed=3, lengths=LENGTHS)
    outs = {mode: _model(tiny_config(reliability=mode))(batch)
            for mode in ("amre", "confidence", "fisher", "uniform")}
    present = outs["amre"].present
    log_c, log_f = outs["amre"].confidence.log(), torch.log1p(outs["amre"].fisher)   # α = β = 1 at init
    for mode, expected in [("amre", log_c - log_f), ("confidence", log_c), ("fisher", -log_f),
                           ("uniform", torch.zeros_like(log_c))]:
        torch.testing.assert_close(outs[mode].scores, expected.masked_fill(~present, INF), msg=mode)
    uniform = outs["uniform"]
    n_present = present.sum(-1, keepdim=True).clamp_min(1)
    expected_w = torch.where(present.any(-1, keepdim=True), present / n_present, torch.full_like(log_c, 1 / 3))
    torch.testing.assert_close(uniform.weights, expected_w)
    assert uniform.dominant.tolist() == [0, 0, 0, 0]          # ties go to the lowest present index
    assert uniform.order[3].tolist() == [0, 1, 2]


def test_fixed_anchor_leads_where_present_and_falls_back_to_the_adaptive_rule():
    inf = INF
    scores = torch.tensor([[-1.0, -0.5, -2.0], [-1.0, inf, -0.2], [inf, inf, inf], [-3.0, -1.0, -2.0]])
    weights, adaptive = reliability_weights_and_order(scores, tau=1.0)
    assert adaptive.tolist() == [[1, 0, 2], [2, 0, 1], [0, 1, 2], [1, 2, 0]]
    for anchor, expected in [("text", [[0, 1, 2], [0, 2, 1], [0, 1, 2], [0, 1, 2]]),
                             ("audio", [[1, 0, 2], [2, 0, 1], [0, 1, 2], [1, 2, 0]]),
                             ("vision", [[2, 1, 0], [2, 0, 1], [0, 1, 2], [2, 1, 0]])]:
        w, order = reliability_weights_and_order(scores, tau=1.0, anchor=anchor)
        assert order.tolist() == expected, anchor
        assert torch.equal(w, weights)

    batch = random_batch(tiny_config(), 4, seed=3, lengths=LENGTHS)
    adaptive_out = _model(tiny_config())(batch)
    out = _model(tiny_config(anchor="audio"))(batch)
    has_audio = out.present[:, 1]
    assert torch.equal(out.dominant[has_audio], torch.ones(int(has_audio.sum()), dtype=torch.long))
    assert torch.equal(out.dominant[~has_audio], adaptive_out.dominant[~has_audio])
    assert torch.equal(out.prediction[~has_audio], adaptive_out.prediction[~has_audio])
    # fuse(anchor=...) overrides the config's rule on one encoding.
    model = _model(tiny_config())
    fused = model.fuse(*model.encode(batch), anchor="audio")
    assert torch.equal(fused.prediction, out.prediction)
    with pytest.raises(ValueError, match="anchor='speech'"):
        model.fuse(*model.encode(batch), anchor="speech")


def test_ungated_streams_and_no_proginteract():
    batch = random_batch(tiny_config(), 4, seed=5, lengths=LENGTHS)
    ungated = _model(tiny_config(gate_streams=False))
    hidden, present = ungated.encode(batch)
    rel = ungated.amre(hidden.mean(2), present)
    _, streams = ungated.interact(hidden, rel.weights, rel.order)
    expected = torch.gather(hidden, 1, rel.order[:, 1:, None, None].expand(-1, -1, *hidden.shape[2:]))
    for layer in ungated.interact.layers:
        expected = layer(expected, hidden[torch.arange(4), rel.order[:, 0]], torch.ones(4, 2))
    torch.testing.assert_close(streams, expected, rtol=0, atol=0)

    plain = _model(tiny_config(n_interact=0))
    assert len(plain.interact.layers) == 0
    out = plain(batch)
    hidden, _ = plain.encode(batch)
    ordered = torch.gather(hidden, 1, out.order[:, :, None, None].expand(-1, -1, *hidden.shape[2:]))
    torch.testing.assert_close(out.stream_mean, ordered[:, 1:].mean(2), rtol=0, atol=0)
    torch.testing.assert_close(out.anchor_mean, ordered[:, 0].mean(1), rtol=0, atol=0)


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_every_parameter_gets_a_finite_gradient(switches):
    """Also where a switch cuts α, β (or the weights) off the loss: a zero gradient, not None."""
    model = _model(tiny_config(**switches)).train()
    batch = random_batch(model.config, 4, seed=6, lengths=LENGTHS)
    model.loss(model(batch), batch)["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert math.isclose(model.amre.alpha.item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_fast_backend_honours_the_switch(switches):
    cfg = tiny_config(**switches)
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "fast")
    check_backend_parity(cfg, random_batch(cfg, 1, seed=8, lengths={"audio": torch.tensor([0])}), "fast")


@pytest.mark.triton
@pytest.mark.parametrize("switches", [pytest.param(SWITCHES[0], marks=pytest.mark.slow), *SWITCHES[1:]],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_triton_backend_honours_the_switch(switches):
    cfg = tiny_config(**switches)
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "triton")
    if switches.get("anchor") == "audio":   # B = 1 with the fixed anchor absent
        check_backend_parity(cfg, random_batch(cfg, 1, seed=8, lengths={"audio": torch.tensor([0])}), "triton")


def test_switches_are_settable_from_the_command_line():
    from prlf_fast.cli import build_parser
    from prlf_fast.cli.train import run_spec

    args = build_parser().parse_args(["train", "--set", "reliability=uniform", "--set", "anchor=text",
                                      "--set", "gate_streams=false", "--set", "n_interact=0"])
    model = run_spec(args).config()["model"]
    assert (model["reliability"], model["anchor"], model["gate_streams"], model["n_interact"]) == \
        ("uniform", "text", False, 0)
    with pytest.raises(ValueError, match="anchor='lang'"):
        run_spec(build_parser().parse_args(["train", "--set", "anchor=lang"])).config()
