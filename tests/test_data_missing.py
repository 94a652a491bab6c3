"""Missing-modality protocols (docs/design.md §3) on whole batches."""
import math

import pytest
import torch

from prlf_fast import Batch
from prlf_fast.config import MODALITIES
from prlf_fast.data import (DEFAULT_RATES, INTER_CONFIGS, Split, epoch_generator, eval_uniforms,
                            inter_drop, intra_corrupt, modality_dropout, modality_subsets, select_uniforms,
                            train_corrupt, train_rates)

LENGTHS = {"text": 20, "audio": 300, "vision": 40}
DIMS = {"text": 6, "audio": 5, "vision": 3}


def make_batch(n=64, seed=0, full=False):
    """Prefix-valid masks, non-zero features and token ids with [CLS]=101 / [SEP]=102 / pad 0."""
    g = torch.Generator().manual_seed(seed)
    parts = {}
    for m in MODALITIES:
        length = LENGTHS[m]
        n_valid = torch.full((n,), length) if full else torch.randint(2, length + 1, (n,), generator=g)
        mask = torch.arange(length)[None] < n_valid[:, None]
        parts[m] = (torch.rand(n, length, DIMS[m], generator=g) + 0.5) * mask[..., None]
        parts[f"{m}_mask"] = mask
    ids = torch.randint(1000, 2000, (n, LENGTHS["text"]), generator=g)
    n_text = parts["text_mask"].sum(1)
    ids[:, 0], ids[torch.arange(n), n_text - 1] = 101, 102
    return Batch(**parts, label=torch.rand(n, generator=g), text_ids=ids.masked_fill(~parts["text_mask"], 0))


def check_consistent(clean, out):
    """Dropped rows are zero and invalid, kept rows unchanged, dropped token ids are 100."""
    for m in MODALITIES:
        keep = out.mask(m)
        assert not (keep & ~clean.mask(m)).any(), "a padding position became valid"
        assert torch.equal(out.features(m), clean.features(m) * keep[..., None])
    dropped = clean.text_mask & ~out.text_mask
    assert torch.equal(out.text_ids, torch.where(dropped, 100, clean.text_ids))


def text_ends_kept(out):
    ids = out.text_ids
    assert (ids[:, 0] == 101).all() and out.text_mask[:, 0].all()
    assert ((ids == 102) & out.text_mask).sum(1).eq(1).all()


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_realised_drop_fraction_within_binomial_bound(rate):
    clean = make_batch(256, seed=1)
    u = eval_uniforms(clean, seed=7)
    out = intra_corrupt(clean, rate, u)
    check_consistent(clean, out)
    for m in ("audio", "vision"):
        n = int(clean.mask(m).sum())
        dropped = n - int(out.mask(m).sum())
        assert abs(dropped - n * rate) <= 5 * math.sqrt(n * rate * (1 - rate)), (m, dropped, n * rate)
    # text: the first and last valid positions are always kept; the others drop at the rate
    inner = clean.text_mask.clone()
    inner[:, 0] = False
    inner[torch.arange(clean.size), clean.text_mask.sum(1) - 1] = False
    n, dropped = int(inner.sum()), int((inner & ~out.text_mask).sum())
    assert abs(dropped - n * rate) <= 5 * math.sqrt(n * rate * (1 - rate))


def test_rate_zero_keeps_everything_and_cls_sep_kept_at_any_rate():
    clean = make_batch(128, seed=2)
    u = eval_uniforms(clean, seed=0)
    out = intra_corrupt(clean, 0.0, u)
    for m in MODALITIES:
        assert torch.equal(out.mask(m), clean.mask(m))
    text_ends_kept(intra_corrupt(clean, 1.0, u))
    text_ends_kept(train_corrupt(clean, epoch_generator(0, 0)))


def test_masks_nested_across_rates():
    clean = make_batch(64, seed=3)
    u = eval_uniforms(clean, seed=11)
    previous = None
    for rate in DEFAULT_RATES:
        out = intra_corrupt(clean, rate, u)
        if previous is not None:
            for m in MODALITIES:
                assert not (out.mask(m) & ~previous.mask(m)).any(), (m, rate)
            assert int(out.audio_mask.sum()) < int(previous.audio_mask.sum())
        previous = out


def test_eval_uniforms_fixed_by_seed_and_selectable():
    split = Split.from_mmsa({**{m: make_batch(30).features(m) for m in MODALITIES},
                             **{f"{m}_mask": make_batch(30).mask(m) for m in MODALITIES},
                             "regression_labels": torch.zeros(30)})
    a, b, c = eval_uniforms(split, 5), eval_uniforms(split, 5), eval_uniforms(split, 6)
    assert all(torch.equal(a[m], b[m]) for m in MODALITIES)
    assert not torch.equal(a["audio"], c["audio"])
    assert a["audio"].min() > 0 and a["audio"].max() <= 1
    idx = torch.tensor([4, 0, 29])
    batch = split.batch(idx)
    chosen = select_uniforms(a, idx)
    assert torch.equal(chosen["vision"], a["vision"][idx])
    assert torch.equal(intra_corrupt(batch, 0.4, chosen).audio_mask,
                       intra_corrupt(split.batch(torch.arange(30)), 0.4, a).audio_mask[idx])
    with pytest.raises(ValueError, match="select_uniforms"):
        intra_corrupt(batch, 0.4, a)


def test_train_masks_same_seed_same_masks_next_epoch_new():
    clean = make_batch(32, seed=4)
    first = train_corrupt(clean, epoch_generator(3, 0))
    again = train_corrupt(clean, epoch_generator(3, 0))
    later = train_corrupt(clean, epoch_generator(3, 1))
    other = train_corrupt(clean, epoch_generator(4, 0))
    for m in MODALITIES:
        assert torch.equal(first.mask(m), again.mask(m))
    assert not torch.equal(first.audio_mask, later.audio_mask)
    assert not torch.equal(first.audio_mask, other.audio_mask)
    check_consistent(clean, first)


def test_train_rates_half_complete_rest_uniform():
    g = epoch_generator(0, 0)
    rates = torch.cat([train_rates(64, g) for _ in range(50)])
    complete = (rates == 0).all(1)
    assert complete.view(50, 64).sum(1).eq(32).all()  # exactly half of each even batch
    rest = rates[~complete]
    assert rest.min() > 0 and rest.max() < 1 and abs(rest.mean().item() - 0.5) < 0.02
    odd = torch.stack([(train_rates(5, g) == 0).all(1).sum() for _ in range(400)])
    assert set(odd.tolist()) == {2, 3} and abs(odd.double().mean().item() - 2.5) < 0.15


def test_train_corrupt_realises_the_rates():
    clean = make_batch(512, seed=5, full=True)
    out = train_corrupt(clean, epoch_generator(1, 2))
    kept = out.audio_mask.double().mean(1)
    untouched = (out.audio_mask == clean.audio_mask).all(1) & (out.vision_mask == clean.vision_mask).all(1)
    assert 0.45 < untouched.double().mean().item() < 0.6  # the complete half (+ rare tiny rates)
    assert abs(kept.mean().item() - 0.75) < 0.04  # E[1 − r] with half r = 0, half r ~ U(0, 1)


@pytest.mark.parametrize("dropped", [(), *INTER_CONFIGS])
def test_inter_configurations_exact(dropped):
    clean = make_batch(16, seed=6)
    out = inter_drop(clean, dropped)
    for m in MODALITIES:
        if m in dropped:
            assert not out.mask(m).any() and (out.features(m) == 0).all()
        else:
            assert torch.equal(out.mask(m), clean.mask(m)) and torch.equal(out.features(m), clean.features(m))
    expected_ids = torch.where(clean.text_mask, 100, 0) if "text" in dropped else clean.text_ids
    assert torch.equal(out.text_ids, expected_ids)


def test_inter_configs_order_and_validation():
    assert INTER_CONFIGS == (("text",), ("audio",), ("vision",), ("text", "audio"),
                             ("text", "vision"), ("audio", "vision"))
    with pytest.raises(ValueError, match="unknown modality 'l'"):
        inter_drop(make_batch(2), ("l",))


def test_modality_dropout_never_removes_every_present_modality():
    clean = inter_drop(make_batch(400, seed=8), ())
    partial = inter_drop(make_batch(400, seed=8), ("vision",))
    g = epoch_generator(0, 0)
    assert modality_dropout(clean, 0.0, g) is clean
    for batch in (clean, partial):
        out = modality_dropout(batch, 1.0, g)
        present = torch.stack([out.mask(m).any(1) for m in MODALITIES], 1)
        assert present.sum(1).eq(1).all()
        check_consistent(batch, out)
    out = modality_dropout(clean, 0.3, g)
    present = torch.stack([out.mask(m).any(1) for m in MODALITIES], 1)
    assert present.any(1).all()
    assert abs(1 - present.double().mean().item() - 0.3) < 0.05


def test_modality_subsets_draw_every_nonempty_subset_of_present_modalities_equally():
    clean = inter_drop(make_batch(7000, seed=10), ())
    partial = inter_drop(make_batch(3000, seed=10), ("audio",))
    g = epoch_generator(1, 0)
    assert modality_subsets(clean, 0.0, g) is clean
    for batch, n_subsets in ((clean, 7), (partial, 3)):
        before = torch.stack([batch.mask(m).any(1) for m in MODALITIES], 1)
        out = modality_subsets(batch, 1.0, g)
        check_consistent(batch, out)
        after = torch.stack([out.mask(m).any(1) for m in MODALITIES], 1)
        assert after.any(1).all() and not (after & ~before).any()   # non-empty, never adds one
        codes = (after.long() * torch.tensor([1, 2, 4])).sum(1)
        counts = torch.bincount(codes, minlength=8)[1:]
        drawn = counts[counts > 0]
        assert len(drawn) == n_subsets
        expected = len(codes) / n_subsets
        assert ((drawn - expected).abs() < 4 * expected ** 0.5).all(), counts   # ~4 sigma
    out = modality_subsets(clean, 0.4, g)
    after = torch.stack([out.mask(m).any(1) for m in MODALITIES], 1)
    changed = ~after.all(1)   # a chosen sample draws the full set with probability 1/7
    assert abs(changed.double().mean().item() - 0.4 * 6 / 7) < 0.03
    nothing = inter_drop(make_batch(4, seed=11), MODALITIES)
    assert not any(modality_subsets(nothing, 1.0, g).mask(m).any() for m in MODALITIES)


def test_inplace_train_corrupt_matches_and_only_then_mutates():
    clean = make_batch(32, seed=9)
    copy = make_batch(32, seed=9)
    out = train_corrupt(clean, epoch_generator(2, 3))
    assert torch.equal(clean.audio, copy.audio) and torch.equal(clean.text_ids, copy.text_ids)
    same = train_corrupt(copy, epoch_generator(2, 3), inplace=True)
    assert same.audio.data_ptr() == copy.audio.data_ptr()
    for name in ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "text_ids"):
        assert torch.equal(getattr(out, name), getattr(same, name)), name
    check_consistent(clean, out)


def test_modality_dropout_scheme_setting():
    from prlf_fast.config import TrainConfig

    assert TrainConfig(modality_dropout=1.0, modality_dropout_scheme="subset").modality_dropout == 1.0
    with pytest.raises(ValueError, match="modality_dropout=1.0"):
        TrainConfig(modality_dropout=1.0)
    with pytest.raises(ValueError, match="modality_dropout_scheme='per-sample' is one of independent, subset"):
        TrainConfig(modality_dropout_scheme="per-sample")
