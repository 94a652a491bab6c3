"""``Split``: one whole split as tensors, gathered into ``Batch``es by index (no per-sample Python)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from prlf_fast.batch import Batch
from prlf_fast.config import MODALITIES
from prlf_fast.data.mmsa import LABEL_KEY


@dataclass
class Split(Batch):
    """A whole split as one ``Batch`` of N samples: features (N, L_m, d_m), bool masks (N, L_m),
    labels (N,) (required) and optional token ids (N, L)."""

    def __post_init__(self):
        if self.label is None:
            raise ValueError("Split.label is required")
        super().__post_init__()

    @classmethod
    def from_mmsa(cls, split: dict, device=None, pin_memory: bool = False) -> "Split":
        """From one split of ``load_mmsa``. ``pin_memory`` keeps it in pinned CPU memory (when CUDA
        is available) so that ``batch`` returns pinned batches for asynchronous copies."""
        parts = {k: split[k] for k in (*MODALITIES, *(f"{m}_mask" for m in MODALITIES))}
        text_ids = split["text_bert"][:, 0].round().long() if "text_bert" in split else None
        out = cls(**parts, label=split[LABEL_KEY], text_ids=text_ids)
        if device is not None:
            return out.to(device)
        if pin_memory and torch.cuda.is_available():
            return out.map(lambda t: t.pin_memory())
        return out

    def __len__(self) -> int:
        return self.label.shape[0]

    @property
    def device(self) -> torch.device:
        return self.label.device

    def batch(self, idx: torch.Tensor) -> Batch:
        """Gather the samples ``idx`` (LongTensor) into a ``Batch`` on the split's device."""
        idx = idx.to(self.device)
        pinned = self.device.type == "cpu" and self.label.is_pinned()

        def gather(t):
            if not pinned:
                return t.index_select(0, idx)
            out = torch.empty((idx.numel(), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
            return torch.index_select(t, 0, idx, out=out)

        return self.map(gather, Batch)

    def iter_batches(self, batch_size: int):
        """Yield ``(idx, Batch)`` over the split in order, the last batch possibly smaller; ``idx``
        lies on the split's device. (Training draws its own order: ``Trainer._epoch_batches``.)"""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be ≥ 1")
        order = torch.arange(len(self), device=self.device)
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            yield idx, self.batch(idx)
