"""AMRE at work on the synthetic set, where text carries the strongest signal: after a short
training, text is the dominant modality for most complete samples. That a dropped modality is
never dominant (and the one left always is) holds for any weights: checked on an untrained tiny
model, without the training."""
import pytest
import torch
from conftest import random_batch, tiny_config

from prlf_fast import PRLF, Batch, PRLFConfig
from prlf_fast.config import MODALITIES, TrainConfig
from prlf_fast.data import Split
from prlf_fast.data.runs import data_spec, load_splits
from prlf_fast.eval.robustness import inter
from prlf_fast.io.rundir import RunDir
from prlf_fast.train.trainer import Trainer

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = PRLFConfig.preset("mosi", d_model=32, n_heads=2, n_tokens=2, ffn_dim=64, recog_hidden=32,
                            n_encoder_layers=1, n_interact=1)
    spec = data_spec(None, {"n_train": 480, "n_valid": 40, "n_test": 120, "seed": 0})
    splits = load_splits(spec, cfg, "cpu")
    run = RunDir(str(tmp_path_factory.mktemp("amre")), echo=False)
    trainer = Trainer(cfg, TrainConfig(epochs=20, batch_size=16, lr=1e-3, seed=0), splits, run, "cpu")
    trainer.fit()
    return {r["config"]: r for r in inter(trainer.model, splits["test"], "mosi")}


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny model and a split with every modality present in every sample."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = PRLF(cfg, backend="reference").eval()
    b = random_batch(cfg, 12, seed=3)
    return model, b, Split(b.text, b.text_mask, b.audio, b.audio_mask, b.vision, b.vision_mask, b.label)


@pytest.fixture(scope="module")
def untrained(tiny):
    """The inter-modality records of the untrained tiny model."""
    model, _, split = tiny
    return {r["config"]: r for r in inter(model, split, "mosi")}


@pytest.mark.slow  # ~10 s of training on an idle 2-core CPU
def test_text_dominates_most_complete_samples(trained):
    share = trained["complete"]["dominant_share"]
    assert share["text"] > 0.5, share
    assert share["text"] > share["audio"] and share["text"] > share["vision"]


@pytest.mark.parametrize("config", ["text", "text-audio", "text-vision"])
def test_dropped_text_is_never_dominant(untrained, config):
    share = untrained[config]["dominant_share"]
    assert share["text"] == 0.0, share
    assert sum(share.values()) == pytest.approx(1.0)


def test_only_text_left_is_always_dominant(untrained):
    assert untrained["audio-vision"]["dominant_share"]["text"] == 1.0


def test_each_record_is_the_model_on_the_batch_without_the_named_modalities(tiny, untrained):
    """The reference: the model itself on the batch with the masks of the modalities the record's
    name lists cleared (so a record that drops the wrong modality, or mislabels one, fails)."""
    model, batch, _ = tiny
    assert sorted(untrained) == sorted(["complete", "text", "audio", "vision", "text-audio", "text-vision",
                                        "audio-vision"])
    for name, record in untrained.items():
        dropped = [] if name == "complete" else name.split("-")
        masks = {f"{m}_mask": torch.zeros_like(getattr(batch, f"{m}_mask")) for m in dropped}
        with torch.no_grad():
            dominant = model(Batch(**{**vars(batch), **masks})).dominant
        expected = {m: float((dominant == i).double().mean()) for i, m in enumerate(MODALITIES)}
        assert record["dominant_share"] == pytest.approx(expected, abs=1e-12), name
