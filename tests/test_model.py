"""The reference model behaves as docs/design.md §4 and §6 say."""
import math

import pytest
import torch
from conftest import random_batch, tiny_config

from prlf_fast import PRLF, Batch, PRLFConfig
from prlf_fast.model.amre import reliability_weights_and_order
from prlf_fast.model.prlf import recognition_class


def _model(cfg=None, seed=0, backend="reference"):
    torch.manual_seed(seed)
    return PRLF(cfg or tiny_config(), backend=backend).eval()


def test_output_shapes_and_types(tiny_cfg):
    model, batch = _model(tiny_cfg), random_batch(tiny_cfg, 5)
    out = model(batch)
    k = tiny_cfg.n_classes
    assert out.prediction.shape == (5,)
    assert out.weights.shape == out.confidence.shape == out.fisher.shape == (5, 3)
    assert out.dominant.shape == (5,) and out.dominant.dtype == torch.int64
    assert out.logits.shape == (5, 3, k)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(5))
    assert (out.fisher > 0).all()


def test_invalid_positions_change_no_output(tiny_cfg):
    model, batch = _model(tiny_cfg), random_batch(tiny_cfg, 4, seed=3)
    ref = model(batch)
    noisy = {}
    for m in ("text", "audio", "vision"):
        x, mask = batch.features(m), batch.mask(m)
        noisy[m] = x + 100.0 * torch.randn_like(x) * (~mask)[..., None]
        noisy[f"{m}_mask"] = mask
    out = model(Batch(**noisy, label=batch.label))
    for name in ("prediction", "weights", "confidence", "fisher", "logits"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=0)


def test_absent_modality_is_never_dominant_and_gets_zero_weight(tiny_cfg):
    model = _model(tiny_cfg)
    for m in range(3):
        name = ("text", "audio", "vision")[m]
        batch = random_batch(tiny_cfg, 6, seed=m, lengths={name: torch.zeros(6, dtype=torch.long)})
        out = model(batch)
        assert (out.dominant != m).all()
        assert torch.equal(out.weights[:, m], torch.zeros(6))
        assert torch.isneginf(out.scores[:, m]).all()


def test_all_absent_sample(tiny_cfg):
    model = _model(tiny_cfg)
    zeros = torch.zeros(3, dtype=torch.long)
    batch = random_batch(tiny_cfg, 3, lengths={"text": zeros, "audio": zeros, "vision": torch.tensor([0, 2, 0])})
    out = model(batch)
    for b in (0, 2):
        torch.testing.assert_close(out.weights[b], torch.full((3,), 1 / 3))
        assert out.dominant[b] == 0
    assert out.dominant[1] == 2
    assert all(torch.isfinite(getattr(out, n)).all() for n in ("prediction", "weights", "logits"))
    losses = model.loss(out, batch)
    model.train()
    loss = model.loss(model(batch), batch)["total"]
    loss.backward()
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_dominant_is_argmax_of_weights_and_order_is_sorted(tiny_cfg):
    model = _model(tiny_cfg)
    batch = random_batch(tiny_cfg, 16, seed=5, lengths={"audio": torch.randint(0, 3, (16,))})
    out = model(batch)
    assert torch.equal(out.dominant, out.weights.argmax(-1))
    ordered = torch.gather(out.scores, 1, out.order)
    assert (ordered[:, :-1] >= ordered[:, 1:]).all()
    assert torch.equal(out.order.sort(-1).values, torch.arange(3).expand(16, 3))


def test_amre_ties_pick_lowest_index():
    inf = float("-inf")
    scores = torch.tensor([[-1.0, -1.0, -1.0], [inf, -2.0, -2.0], [inf, inf, -0.5], [inf, inf, inf], [-3.0, -1.0, -3.0]])
    weights, order = reliability_weights_and_order(scores, tau=1.0)
    assert order.tolist() == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2], [1, 0, 2]]
    torch.testing.assert_close(weights[:4], torch.tensor([[1 / 3] * 3, [0, 0.5, 0.5], [0, 0, 1.0], [1 / 3] * 3]))
    sharp, _ = reliability_weights_and_order(scores[4:], tau=0.1)
    assert sharp[0, 1] > weights[4, 1]


def test_proginteract_never_changes_the_anchor(tiny_cfg):
    model = _model(tiny_cfg)
    batch = random_batch(tiny_cfg, 4, seed=2)
    hidden, present = model.encode(batch)
    rel = model.amre(hidden.mean(2), present)
    anchor, streams = model.interact(hidden, rel.weights, rel.order)
    expected_anchor = hidden[torch.arange(4), rel.order[:, 0]]
    assert torch.equal(anchor, expected_anchor)
    expected_first = hidden[torch.arange(4), rel.order[:, 1]]
    assert not torch.allclose(streams[:, 0], expected_first)


def test_gates_scale_the_cross_attention(tiny_cfg):
    """With gate 0 the cross-attention adds nothing: the stream sees only its FFN."""
    layer = _model(tiny_cfg).interact.layers[0]
    s, a = torch.randn(2, 2, 3, tiny_cfg.d_model), torch.randn(2, 3, tiny_cfg.d_model)
    out0 = layer(s, a, torch.zeros(2, 2))
    out1 = layer(s, a + 1.0, torch.zeros(2, 2))
    torch.testing.assert_close(out0, out1)
    assert not torch.allclose(layer(s, a, torch.ones(2, 2)), out0)


def test_gradients_reach_alpha_and_beta(tiny_cfg):
    model = _model(tiny_cfg)
    model.train()
    batch = random_batch(tiny_cfg, 6, seed=4)
    model.loss(model(batch), batch)["total"].backward()
    assert model.amre.alpha_raw.grad is not None and model.amre.alpha_raw.grad.abs() > 0
    assert model.amre.beta_raw.grad is not None and model.amre.beta_raw.grad.abs() > 0
    assert math.isclose(model.amre.alpha.item(), 1.0, rel_tol=1e-6)
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_loss_terms_by_hand(tiny_cfg):
    model = _model(tiny_cfg)
    batch = random_batch(tiny_cfg, 5, seed=6, lengths={"vision": torch.tensor([0, 3, 0, 1, 2])})
    out = model(batch)
    losses = model.loss(out, batch)
    y = batch.label
    assert losses["task"].item() == pytest.approx((out.prediction - y).abs().mean().item(), rel=1e-6)
    cls = recognition_class(y, tiny_cfg.neutral_band)
    ce = [torch.nn.functional.cross_entropy(out.logits[b, m][None], cls[b][None])
          for b in range(5) for m in range(3) if out.present[b, m]]
    assert losses["rec"].item() == pytest.approx(torch.stack(ce).mean().item(), rel=1e-5)
    terms = []
    for b in range(5):
        for j in range(2):
            if out.present[b, out.order[b, j + 1]]:
                terms.append(1 - torch.nn.functional.cosine_similarity(out.stream_mean[b, j], out.anchor_mean[b], dim=0))
    assert losses["align"].item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    total = losses["task"] + tiny_cfg.lambda_rec * losses["rec"] + tiny_cfg.lambda_align * losses["align"]
    assert losses["total"].item() == pytest.approx(total.item(), rel=1e-6)


def test_align_loss_stops_gradient_into_anchor(tiny_cfg):
    model = _model(tiny_cfg)
    batch = random_batch(tiny_cfg, 3, seed=8)
    out = model(batch)
    anchor = out.anchor_mean
    (g,) = torch.autograd.grad(model.loss(out, batch)["align"], anchor, allow_unused=True)
    assert g is None or torch.equal(g, torch.zeros_like(g))


def test_recognition_class_boundaries():
    y = torch.tensor([-3.0, -0.51, -0.5, 0.0, 0.5, 0.51, 3.0])
    assert recognition_class(y, 0.5).tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_state_dict_round_trip_across_backends(tiny_cfg, tmp_path):
    model = _model(tiny_cfg, seed=1, backend="reference")
    fast = _model(tiny_cfg, seed=2, backend="fast")
    assert list(model.state_dict()) == list(fast.state_dict())
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fast.load_state_dict(torch.load(tmp_path / "m.pt"))
    batch = random_batch(tiny_cfg, 4, seed=9)
    torch.testing.assert_close(fast(batch).prediction, model(batch).prediction, rtol=1e-5, atol=1e-6)


def test_fast_backend_matches_reference_with_gradients(tiny_cfg):
    ref, fast = _model(tiny_cfg, backend="reference"), _model(tiny_cfg, backend="fast")
    batch = random_batch(tiny_cfg, 5, seed=10, lengths={"audio": torch.tensor([0, 1, 3, 11, 2])})
    losses = [m.loss(m(batch), batch)["total"] for m in (ref, fast)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_same_seed_same_result(tiny_cfg):
    batch = random_batch(tiny_cfg, 4, seed=11)
    outs = []
    for _ in range(2):
        model = _model(tiny_cfg, seed=123).train()
        torch.manual_seed(7)
        outs.append(model.loss(model(batch), batch)["total"])
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(_model(tiny_cfg, seed=124)(batch).prediction, _model(tiny_cfg, seed=123)(batch).prediction)


def test_backend_names(tiny_cfg):
    model = _model(tiny_cfg)
    model.backend = "auto"
    assert model.backend == "fast"
    with pytest.raises(ValueError, match="unknown backend"):
        model.backend = "cuda"


def test_bad_inputs_name_the_problem(tiny_cfg):
    model = _model(tiny_cfg)
    batch = random_batch(tiny_cfg, 2)
    too_long = torch.zeros(2, tiny_cfg.audio_len + 1, tiny_cfg.audio_dim)
    with pytest.raises(ValueError, match="audio input has 12 positions"):
        model(Batch(batch.text, batch.text_mask, too_long, torch.ones(2, 12, dtype=torch.bool),
                    batch.vision, batch.vision_mask))
    with pytest.raises(ValueError, match="audio_mask shape"):
        Batch(batch.text, batch.text_mask, batch.audio, batch.audio_mask[:, :3], batch.vision, batch.vision_mask)
    with pytest.raises(ValueError, match="not divisible"):
        PRLFConfig(d_model=30, n_heads=8)
    with pytest.raises(ValueError, match="unknown preset"):
        PRLFConfig.preset("iemocap")


def test_presets_match_design():
    assert (PRLFConfig.preset("mosei").audio_dim, PRLFConfig.preset("mosei").vision_len) == (74, 500)
    sims = PRLFConfig.preset("sims")
    assert (sims.text_len, sims.vision_dim, sims.neutral_band) == (39, 709, 0.1)
    cfg = PRLFConfig.preset("mosi", d_model=64)
    assert PRLFConfig.from_dict(cfg.to_dict()) == cfg
