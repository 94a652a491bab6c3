"""DistributedDataParallel, as docs/training.md states it: with dropout 0 and every sample keeping
every modality, two gloo processes on CPU (launched with torchrun) train to the parameters of one
process on the same global batches; with dropout, each rank draws its own dropout masks, so they
do not."""
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch.distributed as dist
from safetensors.torch import load_file

from helpers import TINY_MODEL

CLI = shutil.which("prlf-fast")
pytestmark = [
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.skipif(CLI is None, reason="the prlf-fast command is not installed"),
]

# dropout 0 and no training-time masking: every modality is present in every sample, so each
# loss term's mean over a shard, averaged over the two equal shards, is the global mean.
ARGS = ["train", "--synthetic", "64,16,16", "--epochs", "2", "--batch-size", "16", "--device", "cpu",
        "--no-eval", "--no-train-missing", "--set", "dropout=0.0", *TINY_MODEL]
# A key projection's bias cannot change attention (softmax ignores a shift shared by all keys):
# its gradient is 0 up to rounding, which Adam scales up to steps of lr size.
ZERO_GRADIENT = "k_proj.bias"


def run(nproc, out, extra=()):
    """``prlf-fast train`` under torchrun with ``nproc`` ranks, or as one plain process (nproc=0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [CLI, *ARGS, *extra, "--out", str(out)]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--no-python", f"--nproc_per_node={nproc}",
               "--standalone", *cmd]
    # A session of its own, so a hung run is ended with all its ranks.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return load_file(str(out / "last.safetensors")), err


def max_model_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("model/") and ZERO_GRADIENT not in k)


def test_two_gloo_ranks_match_one_process(tmp_path):
    two, log = run(2, tmp_path / "ddp")
    assert "2 rank(s)" in log
    one, _ = run(0, tmp_path / "single")
    assert max_model_diff(two, one) < 2e-5
    # The tolerance tells apart a run on other batches (here: global batches of 8).
    other, _ = run(0, tmp_path / "other", extra=("--batch-size", "8"))
    assert max_model_diff(other, one) > 1e-3
    # Only rank 0 wrote: one log line per epoch.
    assert (tmp_path / "ddp" / "train.log").read_text().count("epoch 2/2") == 1


@pytest.mark.slow
def test_with_dropout_ranks_draw_other_masks(tmp_path):
    dropout = ("--set", "dropout=0.1")
    two, _ = run(2, tmp_path / "ddp", extra=dropout)
    one, _ = run(0, tmp_path / "single", extra=dropout)
    assert max_model_diff(two, one) > 1e-4  # 5× the tolerance above: not float rounding
