"""AMRE's variants (docs/model.md "AMRE variants"): the Fisher trace over the head's biases (``fisher_params``),
per-modality α, β and bias (``reliability_params``), and the anchor loss (``lambda_anchor``):
definitions, validation, every backend against the reference, defaults unchanged."""
import pytest
import torch
from conftest import random_batch, tiny_config
from helpers import LENGTHS, check_backend_parity

from prlf_fast import PRLF, PRLFConfig
from prlf_fast.config import MODALITIES
from prlf_fast.model.reliability import anchor_loss, bias_fisher
from prlf_fast.reference.fisher import fisher_reliability, recognition_logits

INF = float("-inf")
CANDIDATES = [dict(reliability_params="modality"), dict(fisher_params="bias"),
              dict(reliability_params="modality", fisher_params="bias", reliability="confidence")]
TRAINED = dict(reliability_params="modality", lambda_anchor=0.5, dropout=0.0)   # the anchor loss needs training mode


def ids(s):
    return ",".join(f"{k}={v}" for k, v in s.items())


def test_settings_are_validated_and_old_configs_read_as_defaults():
    cfg = PRLFConfig.preset("mosi", reliability_params="modality", fisher_params="bias", lambda_anchor=0.1,
                            anchor_temperature=0.2)
    assert PRLFConfig.from_dict(cfg.to_dict()) == cfg
    new = ("reliability_params", "fisher_params", "lambda_anchor", "anchor_temperature")
    assert PRLFConfig.from_dict({k: v for k, v in PRLFConfig().to_dict().items() if k not in new}) == PRLFConfig()
    for bad, match in [(dict(reliability_params="each"), "reliability_params='each'; expected one of"),
                       (dict(fisher_params="all"), "fisher_params='all'; expected one of"),
                       (dict(lambda_anchor=-0.1), "lambda_anchor=-0.1 must be ≥ 0"),
                       (dict(anchor_temperature=0.0), "anchor_temperature=0.0 must be > 0")]:
        with pytest.raises(ValueError, match=match):
            PRLFConfig.preset("mosi", **bad)


def test_default_state_dict_is_unchanged():
    names = set(PRLF(tiny_config()).state_dict())
    assert "amre.bias" not in names and PRLF(tiny_config()).amre.alpha_raw.shape == ()
    per = PRLF(tiny_config(reliability_params="modality"))
    assert set(per.state_dict()) == names | {"amre.bias"}
    assert per.amre.alpha_raw.shape == per.amre.beta_raw.shape == per.amre.bias.shape == (3,)
    torch.testing.assert_close(per.amre.alpha, torch.ones(3))


def test_bias_fisher_equals_per_sample_gradients():
    """F_b = Σ_k p_k ‖∇_(b1, b2) log p_k‖², against torch.func in float64."""
    from torch.func import jacrev, vmap

    g = torch.Generator().manual_seed(0)
    b_, m, d, h, k = 5, 3, 6, 7, 3
    z, w1, b1 = torch.randn(b_, m, d, generator=g) * 2, torch.randn(m, h, d, generator=g), torch.randn(m, h, generator=g)
    w2, b2 = torch.randn(m, k, h, generator=g), torch.randn(m, k, generator=g)
    z, w1, b1, w2, b2 = (t.double() for t in (z, w1, b1, w2, b2))
    a, _, logits = recognition_logits(z, w1, b1, w2, b2)
    got = bias_fisher(a, logits, w2)
    for j in range(m):
        def log_probs(biases, x, j=j):
            return torch.log_softmax(w2[j] @ torch.nn.functional.gelu(w1[j] @ x + biases[0]) + biases[1], dim=-1)

        def fisher(x, j=j):
            jac = jacrev(log_probs)((b1[j], b2[j]), x)
            sq = sum(t.reshape(k, -1).square().sum(-1) for t in jac)
            return (log_probs((b1[j], b2[j]), x).exp() * sq).sum()

        torch.testing.assert_close(got[:, j], vmap(fisher)(z[:, j]), rtol=1e-12, atol=1e-12)
    # The same head function on a 10× larger input (W1 / 10): F_b is unchanged, docs/design.md §4.2's F grows.
    a_big, _, logits_big = recognition_logits(z * 10, w1 / 10, b1, w2, b2)
    torch.testing.assert_close(bias_fisher(a_big, logits_big, w2), got, rtol=1e-12, atol=1e-12)
    assert (fisher_reliability(z * 10, w1 / 10, b1, w2, b2)[1] > 10 * fisher_reliability(z, w1, b1, w2, b2)[1]).all()


def test_scores_with_per_modality_parameters_and_the_bias_fisher():
    batch = random_batch(tiny_config(), 4, seed=3, lengths=LENGTHS)
    torch.manual_seed(0)
    model = PRLF(tiny_config(reliability_params="modality", fisher_params="bias")).eval()
    with torch.no_grad():
        model.amre.alpha_raw.copy_(torch.tensor([0.5, 1.0, 2.0]))
        model.amre.beta_raw.copy_(torch.tensor([-1.0, 0.0, 1.0]))
        model.amre.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    out = model(batch)
    hidden, _ = model.encode(batch)
    amre = model.amre
    a, _, logits = recognition_logits(hidden.mean(2), amre.w1, amre.b1, amre.w2, amre.b2)
    torch.testing.assert_close(out.fisher, bias_fisher(a, logits, amre.w2))
    torch.testing.assert_close(out.confidence, torch.softmax(logits, -1).amax(-1))
    alpha, beta = torch.nn.functional.softplus(amre.alpha_raw), torch.nn.functional.softplus(amre.beta_raw)
    expected = alpha * out.confidence.log() - beta * torch.log1p(out.fisher) + amre.bias
    torch.testing.assert_close(out.scores, expected.masked_fill(~out.present, INF))
    # uniform keeps equal scores: the bias does not apply.
    uniform = PRLF(tiny_config(reliability_params="modality", reliability="uniform")).eval()
    with torch.no_grad():
        uniform.amre.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    assert torch.equal(uniform(batch).scores, torch.zeros(4, 3).masked_fill(~out.present, INF))


def test_anchor_loss_is_the_cross_entropy_over_present_modalities():
    scores = torch.tensor([[0.0, 1.0, -1.0], [0.5, INF, 0.0], [INF, INF, 2.0], [INF, INF, INF]], requires_grad=True)
    preds = torch.tensor([[0.1, 0.9, 0.4], [0.0, 5.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    label = torch.tensor([0.0, 0.2, 1.0, 0.0])
    loss = anchor_loss(scores, preds, label, tau=0.5, temperature=0.1)
    # rows 0 and 1 count (two or more present modalities); rows 2 and 3 do not.
    t0 = torch.softmax(-torch.tensor([0.1, 0.9, 0.4]) / 0.1, 0)
    t1 = torch.softmax(-torch.tensor([0.2, 0.8]) / 0.1, 0)
    ce0 = -(t0 * torch.log_softmax(torch.tensor([0.0, 1.0, -1.0]) / 0.5, 0)).sum()
    ce1 = -(t1 * torch.log_softmax(torch.tensor([0.5, 0.0]) / 0.5, 0)).sum()
    torch.testing.assert_close(loss, (ce0 + ce1) / 2)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[2:].abs().sum() == 0
    # A step against the gradient raises the score of the modality with the lowest error.
    assert scores.grad[0].argmin() == 0 and scores.grad[1, 0] < 0
    alone = torch.tensor([[INF, 1.0, INF]], requires_grad=True)
    assert anchor_loss(alone, torch.zeros(1, 3), torch.zeros(1), 1.0, 0.1).item() == 0.0


def test_anchor_targets_are_drawn_without_dropout():
    """With dropout, each anchor's target prediction is the eval-mode one, not a noisy draw; the
    model stays in training mode."""
    from prlf_fast.model.reliability import anchor_predictions

    cfg = tiny_config(**{**TRAINED, "dropout": 0.3})
    torch.manual_seed(0)
    model = PRLF(cfg).train()
    batch = random_batch(cfg, 4, seed=4, lengths=LENGTHS)
    with torch.no_grad():
        hidden, present = model.encode(batch)
        targets = anchor_predictions(model, hidden, present)
        assert model.training and model.interact.training
        model.eval()
        expected = torch.stack([model.fuse(hidden, present, anchor=m).prediction for m in MODALITIES], dim=-1)
    torch.testing.assert_close(targets, expected, rtol=0, atol=0)


def test_training_forward_holds_each_anchors_prediction():
    cfg = tiny_config(**TRAINED)
    torch.manual_seed(0)
    model = PRLF(cfg).train()
    batch = random_batch(cfg, 4, seed=4, lengths=LENGTHS)
    out = model(batch)
    hidden, present = model.encode(batch)
    for j, m in enumerate(MODALITIES):
        torch.testing.assert_close(out.anchor_predictions[:, j], model.fuse(hidden, present, anchor=m).prediction,
                                   rtol=0, atol=0)
    assert not out.anchor_predictions.requires_grad
    losses = model.loss(out, batch)
    expected = anchor_loss(out.scores, out.anchor_predictions, batch.label, cfg.tau, cfg.anchor_temperature)
    assert losses["anchor"] == expected
    torch.testing.assert_close(losses["total"], losses["task"] + 0.1 * losses["rec"] + 0.1 * losses["align"]
                               + 0.5 * expected)
    losses["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert model.amre.bias.grad.abs().sum() > 0
    assert model.eval()(batch).anchor_predictions is None
    assert "anchor" not in PRLF(tiny_config()).train().loss(PRLF(tiny_config()).train()(batch), batch)


@pytest.mark.parametrize("switches", CANDIDATES, ids=ids)
def test_fast_backend_honours_the_candidate(switches):
    cfg = tiny_config(**switches)
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "fast")


def test_fast_backend_honours_the_anchor_loss():
    cfg = tiny_config(**TRAINED)
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "fast", training=True)


@pytest.mark.triton
@pytest.mark.slow
def test_triton_backend_honours_the_candidates():
    cfg = tiny_config(**CANDIDATES[2])
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "triton")
    cfg = tiny_config(**TRAINED, fisher_params="bias")
    check_backend_parity(cfg, random_batch(cfg, 4, seed=7, lengths=LENGTHS), "triton", training=True)


def test_score_parameters_get_their_own_learning_rate():
    from prlf_fast.config import TrainConfig
    from prlf_fast.train.optim import build_optimizer

    default, _ = build_optimizer(PRLF(tiny_config(reliability_params="modality")), TrainConfig(lr=1e-3), 10)
    assert len(default.param_groups) == 2
    model = PRLF(tiny_config(reliability_params="modality", score_lr_scale=20.0))
    opt, sched = build_optimizer(model, TrainConfig(lr=1e-3, warmup=0.0), 10)
    score = opt.param_groups[2]
    assert {id(p) for p in score["params"]} == {id(model.amre.alpha_raw), id(model.amre.beta_raw), id(model.amre.bias)}
    assert score["lr"] == pytest.approx(2e-2) and score["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    opt.step()
    sched.step()
    assert opt.param_groups[2]["lr"] == pytest.approx(20 * opt.param_groups[0]["lr"])
