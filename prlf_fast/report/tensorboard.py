"""``--tensorboard``: the scalars of metrics.jsonl as TensorBoard event files in ``RUN/tensorboard``.

Needs the optional ``tensorboard`` package (``pip install 'prlf_fast[tensorboard]'``).
"""
from __future__ import annotations

import os

from prlf_fast.errors import PRLFError

DIRNAME = "tensorboard"
MISSING = ("--tensorboard needs the tensorboard package, which is not installed: "
           "pip install 'prlf_fast[tensorboard]' (or pip install tensorboard)")


def check_available() -> None:
    """Raise ``PRLFError`` (one line, with the install command) when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise PRLFError(MISSING) from None


def scalars(record: dict) -> dict:
    """``tag -> value`` of one metrics.jsonl record: ``train/<loss>``, ``valid/<metric>``,
    ``lr``, ``epoch``, ``epoch_seconds`` and ``select/score``."""
    out = {"lr": record["lr"], "epoch": record["epoch"], "epoch_seconds": record["seconds"],
           "select/score": record["select"]["score"]}
    out.update({f"train/{k}": v for k, v in record["train"].items()})
    out.update({f"valid/{k}": v for k, v in record["valid"].items()})
    return out


class TensorBoardLog:
    """Writes each metrics record (x axis: the global training step). On (re)start it hides the
    events of earlier writers (TensorBoard's ``purge_step``) and rewrites ``history``, so a
    resumed run shows each epoch once."""

    def __init__(self, run_dir: str, history=()):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=os.path.join(run_dir, DIRNAME), purge_step=0)
        for record in history:
            self(record)

    def __call__(self, record: dict) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
