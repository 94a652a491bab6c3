"""AMRE at work on the synthetic set, where text carries the strongest signal: after a short
training, text is the dominant modality for most complete samples, and never when it is dropped."""
import pytest

from prlf_fast import PRLFConfig
from prlf_fast.config import TrainConfig
from prlf_fast.data.runs import data_spec, load_splits
from prlf_fast.eval.robustness import inter
from prlf_fast.io.rundir import RunDir
from prlf_fast.train.trainer import Trainer

pytestmark = pytest.mark.slow  # ~10 s of training on an idle 2-core CPU


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = PRLFConfig.preset("mosi", d_model=32, n_heads=2, n_tokens=2, ffn_dim=64, recog_hidden=32,
                            n_encoder_layers=1, n_interact=1)
    spec = data_spec(None, {"n_train": 480, "n_valid": 40, "n_test": 120, "seed": 0})
    splits = load_splits(spec, cfg, "cpu")
    run = RunDir(str(tmp_path_factory.mktemp("amre")), echo=False)
    run.create(resume=False)
    trainer = Trainer(cfg, TrainConfig(epochs=20, batch_size=16, lr=1e-3, seed=0), splits, run, "cpu")
    trainer.fit()
    return {r["config"]: r for r in inter(trainer.model, splits["test"], "mosi")}


def test_text_dominates_most_complete_samples(trained):
    share = trained["complete"]["dominant_share"]
    assert share["text"] > 0.5, share
    assert share["text"] > share["audio"] and share["text"] > share["vision"]


@pytest.mark.parametrize("config", ["text", "text-audio", "text-vision"])
def test_dropped_text_is_never_dominant(trained, config):
    share = trained[config]["dominant_share"]
    assert share["text"] == 0.0, share
    assert sum(share.values()) == pytest.approx(1.0)


def test_only_text_left_is_always_dominant(trained):
    assert trained["audio-vision"]["dominant_share"]["text"] == 1.0
