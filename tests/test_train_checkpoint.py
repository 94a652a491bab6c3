"""Checkpoints: atomic safetensors round trip of model, optimizer and scheduler; clear errors."""
import os

import pytest
import torch
from conftest import random_batch, tiny_config

from prlf_fast import PRLF
from prlf_fast.errors import PRLFError
from prlf_fast.io.atomic import write_text
from prlf_fast.io.checkpoint import Checkpoint, save_checkpoint
from prlf_fast.train.optim import WarmupCosine, param_groups


def make(cfg, seed=0):
    torch.manual_seed(seed)
    model = PRLF(cfg, backend="reference")
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(2, 10))
    return model, opt, sched


def step(model, opt, sched, seed):
    batch = random_batch(model.config, 4, seed=seed)
    opt.zero_grad()
    model.loss(model(batch), batch)["total"].backward()
    opt.step()
    sched.step()


def test_roundtrip_continues_identically(tmp_path):
    cfg = tiny_config(dropout=0.0)
    model, opt, sched = make(cfg)
    for s in range(3):
        step(model, opt, sched, s)
    path = str(tmp_path / "last.safetensors")
    save_checkpoint(path, model, cfg, opt, sched, trainer={"step": 3}, rng={"torch": torch.get_rng_state()})
    assert sorted(os.listdir(tmp_path)) == ["last.safetensors"]  # no temporary file left behind

    other, opt2, sched2 = make(cfg, seed=1)
    ckpt = Checkpoint(path)
    ckpt.check_config(cfg)
    ckpt.restore_model(other)
    ckpt.restore_optimizer(opt2)
    ckpt.restore_scheduler(sched2)
    assert ckpt.trainer == {"step": 3}
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == sched.get_last_lr()
    step(model, opt, sched, 7)
    step(other, opt2, sched2, 7)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_other_config_is_refused(tmp_path):
    cfg = tiny_config()
    model, *_ = make(cfg)
    path = str(tmp_path / "best.safetensors")
    save_checkpoint(path, model, cfg)
    with pytest.raises(PRLFError, match=r"another model config: d_model=16 \(checkpoint\) vs 32"):
        Checkpoint(path).check_config(tiny_config(d_model=32))
    with pytest.raises(PRLFError, match="no optimizer state"):
        Checkpoint(path).restore_optimizer(make(cfg)[1])


@pytest.mark.parametrize("content", [b"", b"junk" * 10])
def test_junk_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "last.safetensors"
    path.write_bytes(content)
    with pytest.raises(PRLFError, match="not a readable safetensors file"):
        Checkpoint(str(path))


def test_atomic_write_replaces_whole_file(tmp_path):
    path = str(tmp_path / "a.txt")
    write_text(path, "first")
    write_text(path, "second")
    assert open(path).read() == "second" and os.listdir(tmp_path) == ["a.txt"]


def test_warmup_cosine_schedule():
    f = WarmupCosine(4, 20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(12) == pytest.approx(0.5) and f(20) == pytest.approx(0.0)
