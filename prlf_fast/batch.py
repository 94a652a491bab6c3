"""``Batch``: one mini-batch of the three modalities with their validity masks."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from prlf_fast.config import MODALITIES


@dataclass
class Batch:
    """Features (B, L_m, d_m) and bool masks (B, L_m) (True = valid) per modality.

    ``label`` (B,) is the regression target; ``text_ids`` (B, L) the BERT token ids (only for
    the ``bert`` text encoder).
    """

    text: torch.Tensor
    text_mask: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    vision: torch.Tensor
    vision_mask: torch.Tensor
    label: torch.Tensor | None = None
    text_ids: torch.Tensor | None = None

    def __post_init__(self):
        name, b = type(self).__name__, self.text.shape[0]
        for m in MODALITIES:
            x, mask = getattr(self, m), getattr(self, f"{m}_mask")
            if x.dim() != 3:
                raise ValueError(f"{name}.{m} must be (B, L, d); got shape {tuple(x.shape)}")
            if mask.shape != x.shape[:2]:
                raise ValueError(f"{name}.{m}_mask shape {tuple(mask.shape)} does not match "
                                 f"{name}.{m} shape {tuple(x.shape)} (expected {tuple(x.shape[:2])})")
            if mask.dtype != torch.bool:
                raise ValueError(f"{name}.{m}_mask must be bool; got {mask.dtype}")
            if x.shape[0] != b:
                raise ValueError(f"{name}.{m} has batch size {x.shape[0]}, {name}.text has {b}")
        if self.label is not None and self.label.shape != (b,):
            raise ValueError(f"{name}.label must be ({b},); got {tuple(self.label.shape)}")
        if self.text_ids is not None and self.text_ids.shape[0] != b:
            raise ValueError(f"{name}.text_ids has batch size {self.text_ids.shape[0]}, {name}.text has {b}")

    @property
    def size(self) -> int:
        return self.text.shape[0]

    def features(self, m: str) -> torch.Tensor:
        return getattr(self, m)

    def mask(self, m: str) -> torch.Tensor:
        return getattr(self, f"{m}_mask")

    def map(self, fn, cls=None):
        """``fn`` applied to every tensor field (None stays None), as a ``cls`` (default: this
        object's class)."""
        return (cls or type(self))(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                      for f in fields(self)})

    def to(self, device, non_blocking: bool = False):
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def rows(self, rows) -> "Batch":
        """The samples ``rows`` (an index, a slice or a bool mask over B) as a ``Batch``."""
        return self.map(lambda t: t[rows], Batch)
