"""``Split``: one whole split as tensors, gathered into ``Batch``es by index (no per-sample Python)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from prlf_fast.batch import Batch
from prlf_fast.config import MODALITIES
from prlf_fast.data.mmsa import LABEL_KEY


@dataclass
class Split:
    """Features (N, L_m, d_m), bool masks (N, L_m), labels (N,) and optional token ids (N, L)."""

    text: torch.Tensor
    text_mask: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    vision: torch.Tensor
    vision_mask: torch.Tensor
    label: torch.Tensor
    text_ids: torch.Tensor | None = None

    def __post_init__(self):
        n = self.label.shape[0]
        for f in fields(self):
            t = getattr(self, f.name)
            if t is not None and t.shape[0] != n:
                raise ValueError(f"Split.{f.name} has {t.shape[0]} samples, Split.label has {n}")
        for m in MODALITIES:
            mask = getattr(self, f"{m}_mask")
            if mask.dtype != torch.bool or mask.shape != getattr(self, m).shape[:2]:
                raise ValueError(f"Split.{m}_mask must be bool of shape {tuple(getattr(self, m).shape[:2])}; "
                                 f"got {mask.dtype} {tuple(mask.shape)}")

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
            return out._map(lambda t: t.pin_memory())
        return out

    def __len__(self) -> int:
        return self.label.shape[0]

    @property
    def device(self) -> torch.device:
        return self.label.device

    def _map(self, fn) -> "Split":
        return Split(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                        for f in fields(self)})

    def to(self, device, non_blocking: bool = False) -> "Split":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def batch(self, idx: torch.Tensor) -> Batch:
        """Gather the samples ``idx`` (LongTensor) into a ``Batch`` on the split's device."""
        idx = idx.to(self.device)
        pinned = self.device.type == "cpu" and self.label.is_pinned()

        def gather(t):
            if t is None:
                return None
            if not pinned:
                return t.index_select(0, idx)
            out = torch.empty((idx.numel(), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
            return torch.index_select(t, 0, idx, out=out)

        return Batch(**{f.name: gather(getattr(self, f.name)) for f in fields(self)})

    def iter_batches(self, batch_size: int):
        """Yield ``(idx, Batch)`` over the split in order, the last batch possibly smaller; ``idx``
        lies on the split's device. (Training draws its own order: ``Trainer._epoch_batches``.)"""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be ≥ 1")
        order = torch.arange(len(self), device=self.device)
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            yield idx, self.batch(idx)
