"""Missing-modality protocols (docs/design.md §3), applied to whole batches on the batch's device.

Intra-modality at rate r: keep = valid ∧ (U > r) with U uniform on (0, 1] per (sample, position),
so r = 0 keeps everything and the expected dropped fraction of valid positions is r. Text always
keeps its first and last valid positions ([CLS]/[SEP]). Dropped feature rows become 0 and invalid;
dropped token ids become 100 ([UNK]). Inter-modality: the listed modalities lose every position.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from prlf_fast.batch import Batch
from prlf_fast.config import MODALITIES

DEFAULT_RATES = tuple(i / 10 for i in range(10))
INTER_CONFIGS = (("text",), ("audio",), ("vision",), ("text", "audio"), ("text", "vision"),
                 ("audio", "vision"))
UNK = 100


def epoch_generator(seed: int, epoch: int, device="cpu") -> torch.Generator:
    """A generator on ``device`` seeded by the pair (seed, epoch) (no collisions across pairs)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, np.uint32)
    value = (int(state[0]) << 31) ^ int(state[1])  # < 2**63
    return torch.Generator(device=device).manual_seed(value)


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    """U on (0, 1], drawn on the generator's device and moved to ``device``."""
    return (1.0 - torch.rand(shape, generator=generator, device=generator.device)).to(device)


def _with_text_ends(keep: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``keep`` plus each sample's first and last valid position."""
    length = valid.shape[1]
    pos = torch.arange(length, device=valid.device)
    first = torch.where(valid, pos, length).amin(dim=1, keepdim=True)
    last = torch.where(valid, pos, -1).amax(dim=1, keepdim=True)
    return keep | (valid & ((pos == first) | (pos == last)))


def apply_keep(batch: Batch, keep: dict, inplace: bool = False) -> Batch:
    """A batch where modality m keeps only ``keep[m]`` (B, L_m) of its positions: other rows are
    zeroed (by multiplication, so features must be finite, as ``load_mmsa`` makes them) and
    marked invalid, and dropped valid token ids become [UNK]. With ``inplace`` the features and
    token ids of ``batch`` are overwritten (meant for fresh batches such as ``Split.batch``'s);
    otherwise ``batch`` is left untouched."""
    mul, fill = ((torch.Tensor.mul_, torch.Tensor.masked_fill_) if inplace
                 else (torch.Tensor.mul, torch.Tensor.masked_fill))
    changes = {}
    for m, k in keep.items():
        changes[m] = mul(batch.features(m), k.unsqueeze(-1))  # finite features: 0 where dropped
        changes[f"{m}_mask"] = k
    if "text" in keep and batch.text_ids is not None:
        changes["text_ids"] = fill(batch.text_ids, batch.text_mask & ~keep["text"], UNK)
    return dataclasses.replace(batch, **changes)


def _intra_keep(batch: Batch, rates: dict, uniforms: dict) -> dict:
    keep = {}
    for m in MODALITIES:
        k = batch.mask(m) & (uniforms[m] > rates[m])
        keep[m] = _with_text_ends(k, batch.mask(m)) if m == "text" else k
    return keep


def train_rates(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Training missing rates (B, 3) on the generator's device: r ~ U(0, 1) per sample and
    modality, then a random half of the samples get r = 0 for every modality (odd B: ⌊B/2⌋ or
    ⌈B/2⌉ with equal chance)."""
    device = generator.device
    rates = torch.rand(batch_size, len(MODALITIES), generator=generator, device=device)
    rank = torch.randperm(batch_size, generator=generator, device=device)
    offset = torch.rand((), generator=generator, device=device)
    complete = (rank + offset) < batch_size / 2
    return rates.masked_fill(complete.unsqueeze(1), 0.0)


def train_corrupt(batch: Batch, generator: torch.Generator, inplace: bool = False) -> Batch:
    """The intra-modality training protocol on one batch (redraw each epoch via ``epoch_generator``).
    ``inplace=True`` overwrites the batch's features and ids (see ``apply_keep``), saving the
    allocation of new feature tensors."""
    device = batch.text.device
    rates = train_rates(batch.size, generator).to(device)
    uniforms = {m: _uniform(batch.mask(m).shape, generator, device) for m in MODALITIES}
    keep = _intra_keep(batch, {m: rates[:, i:i + 1] for i, m in enumerate(MODALITIES)}, uniforms)
    return apply_keep(batch, keep, inplace)


def eval_uniforms(split, seed: int) -> dict:
    """Per-position uniforms {modality: (N, L_m)} on the split's device, drawn once from ``seed``
    on the CPU (so masks do not depend on the device) and reused for every rate: nested masks."""
    g = torch.Generator().manual_seed(int(seed))
    device = getattr(split, "text").device
    return {m: _uniform(getattr(split, f"{m}_mask").shape, g, device) for m in MODALITIES}


def select_uniforms(uniforms: dict, idx: torch.Tensor) -> dict:
    """The rows ``idx`` of ``eval_uniforms`` for one batch."""
    return {m: u.index_select(0, idx.to(u.device)) for m, u in uniforms.items()}


def intra_corrupt(batch: Batch, rate: float, uniforms: dict) -> Batch:
    """Evaluation protocol: every sample and modality at ``rate`` with the given uniforms (B, L_m)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"missing rate {rate} must lie in [0, 1]")
    for m in MODALITIES:
        if uniforms[m].shape != batch.mask(m).shape:
            raise ValueError(f"uniforms['{m}'] has shape {tuple(uniforms[m].shape)}, batch mask has "
                             f"{tuple(batch.mask(m).shape)}; use select_uniforms(uniforms, idx)")
    return apply_keep(batch, _intra_keep(batch, dict.fromkeys(MODALITIES, float(rate)), uniforms))


def inter_drop(batch: Batch, dropped: tuple) -> Batch:
    """Remove whole modalities (no [CLS]/[SEP] kept); ``()`` is the complete case."""
    unknown = [m for m in dropped if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; expected names from {MODALITIES}")
    return apply_keep(batch, {m: torch.zeros_like(batch.mask(m)) for m in dropped})


def modality_dropout(batch: Batch, p: float, generator: torch.Generator) -> Batch:
    """Drop each present modality of each sample with probability ``p``, never all of a
    sample's present modalities (one of them, chosen at random, is then kept)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality dropout probability {p} must lie in [0, 1]")
    if p == 0.0:
        return batch
    device = batch.text.device
    shape = (batch.size, len(MODALITIES))
    present = torch.stack([batch.mask(m).any(dim=1) for m in MODALITIES], dim=1)
    drop = (_uniform(shape, generator, device) <= p) & present
    lost_all = present.any(dim=1) & ~(present & ~drop).any(dim=1)
    rescue = _uniform(shape, generator, device).masked_fill(~present, -1.0).argmax(dim=1)
    drop &= ~(lost_all.unsqueeze(1) & torch.nn.functional.one_hot(rescue, len(MODALITIES)).bool())
    return apply_keep(batch, {m: batch.mask(m) & ~drop[:, i:i + 1] for i, m in enumerate(MODALITIES)})


def modality_subsets(batch: Batch, p: float, generator: torch.Generator) -> Batch:
    """With probability ``p`` per sample, keep a uniformly drawn non-empty subset of the sample's
    present modalities (each of the 2^k − 1 subsets of its k present modalities equally likely,
    the full set included), as MMIN and MoMKE train for missing modalities; the other samples are
    unchanged. A sample with no present modality stays as it is."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality subset probability {p} must lie in [0, 1]")
    if p == 0.0:
        return batch
    device = batch.text.device
    present = torch.stack([batch.mask(m).any(dim=1) for m in MODALITIES], dim=1)         # (B, 3)
    n = len(MODALITIES)
    codes = torch.arange(1, 2 ** n, device=device)                                        # (7,)
    members = (codes[:, None] >> torch.arange(n, device=device)) & 1 == 1                  # (7, 3)
    allowed = ~(members[None] & ~present[:, None]).any(dim=2)                              # (B, 7)
    pick = _uniform((batch.size, len(codes)), generator, device).masked_fill(~allowed, -1.0).argmax(dim=1)
    chosen = (_uniform((batch.size,), generator, device) < p) & present.any(dim=1)
    keep = torch.where(chosen[:, None], members[pick], present)                            # (B, 3)
    return apply_keep(batch, {m: batch.mask(m) & keep[:, i:i + 1] for i, m in enumerate(MODALITIES)})
