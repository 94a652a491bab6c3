"""Synthetic MMSA data with the real key names and shapes and a learnable signal.

Each sample has a latent sentiment s ~ U(−1, 1); its label is s scaled to the preset's range and
rounded to the annotation grid (steps of 1/3 for MOSI/MOSEI, 0.2 for SIMS, so some labels are
exactly 0). Every valid position of modality m carries a_m · (s + η_m) along a fixed random unit
direction u_m on top of unit Gaussian noise, with a per-sample nuisance η_m ~ N(0, σ_m²): a larger
σ_m caps how much the modality can tell about s however many positions are observed, so text is
the strongest modality and audio and vision are weaker but clearly informative.

``reliability="varying"``: each sample has one *reliable* modality (a balanced random third of
the samples each; stored as ``reliable_modality``, 0/1/2 = text/audio/vision). It carries the
signal as text does by default (a = 1, σ = 0.15); the other two carry no signal and louder noise
(noise rows × ``NOISY_SCALE``), so which modality to trust differs from sample to sample and no
fixed anchor is right for every sample.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from prlf_fast.config import MODALITIES, PRESETS
from prlf_fast.data.mmsa import SPLITS
from prlf_fast.io.atomic import atomic_path

CLS, SEP, PAD = 101, 102, 0
FULL_SIZES = {"mosi": (1284, 229, 686), "mosei": (16326, 1871, 4659), "sims": (1368, 456, 457)}
# modality → (per-position amplitude a_m, per-sample nuisance σ_m)
SIGNAL = {"text": (1.0, 0.15), "audio": (0.6, 0.7), "vision": (0.5, 0.9)}
AUDIO_NEG_INF_RATE = 2e-3  # fraction of valid audio frames holding one −inf (as MOSEI's COVAREP)
_BANK_ROWS = 4096  # noise rows drawn once and resampled per position: fast for MOSEI-sized sets
_LABEL_STEPS = {3.0: 3, 1.0: 5}  # label range → grid steps per unit
RELIABILITY = ("fixed", "varying")
RELIABLE_SIGNAL = SIGNAL["text"]  # (a, σ) of the reliable modality under reliability="varying"
NOISY_SCALE = 2.0  # noise scale of the unreliable modalities under reliability="varying"


def synthesize(preset: str, n_train: int, n_valid: int, n_test: int, seed: int = 0,
               aligned: bool = False, reliability: str = "fixed") -> dict:
    """An MMSA dict of numpy arrays (``train``/``valid``/``test``) shaped like ``preset``.

    ``aligned=True`` gives word-aligned files: audio and vision share the text length and there
    are no ``audio_lengths``/``vision_lengths`` (validity comes from non-zero rows).
    ``reliability``: ``"fixed"`` (text strongest for every sample) or ``"varying"`` (one reliable
    modality per sample, in the extra key ``reliable_modality`` (N,) int64; see the module doc).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    if reliability not in RELIABILITY:
        raise ValueError(f"unknown reliability {reliability!r}; expected one of {list(RELIABILITY)}")
    sizes = dict(zip(SPLITS, (n_train, n_valid, n_test)))
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"n_{split}={n} must be ≥ 1")
    cfg = PRESETS[preset]
    g = torch.Generator().manual_seed(seed)
    dims = {m: cfg[f"{m}_dim"] for m in MODALITIES}
    directions = {m: _unit(torch.randn(dims[m], generator=g)) for m in MODALITIES}
    banks = {m: torch.randn(_BANK_ROWS, dims[m], generator=g) for m in MODALITIES}
    return {split: _split(preset, cfg, n, g, directions, banks, aligned, split, reliability == "varying")
            for split, n in sizes.items()}


def write_pickle(data: dict, path) -> None:
    """Write an MMSA dict as a pickle (protocol 5: large arrays are written without copies)."""
    with atomic_path(os.fspath(path)) as tmp:  # a fresh temporary name: never through a symlink
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=5)


def _unit(v):
    return v / v.norm()


def _lengths(n, low, high, g):
    return torch.randint(low, high + 1, (n,), generator=g)


def _features(n, length, valid, latent, m, g, directions, banks, zero_padding, reliable=None):
    """Bank noise rows plus a_m (s + η_m) u_m on valid positions. ``reliable`` (n,) bool: the
    samples where m is the reliable modality (varying reliability; None: fixed)."""
    amplitude, nuisance = SIGNAL[m] if reliable is None else RELIABLE_SIGNAL
    rows = torch.randint(0, _BANK_ROWS, (n * length,), generator=g)
    x = banks[m].index_select(0, rows)  # (n·L, d)
    coef = amplitude * (latent + nuisance * torch.randn(n, generator=g))
    if reliable is not None:
        coef = coef * reliable
        x.mul_(torch.where(reliable, 1.0, NOISY_SCALE).repeat_interleave(length)[:, None])
    x.addr_((valid * coef[:, None]).reshape(-1).float(), directions[m])
    x = x.view(n, length, -1)
    if zero_padding:
        x.masked_fill_(~valid[:, :, None], 0.0)
    return x


def _split(preset, cfg, n, g, directions, banks, aligned, split, varying=False):
    label_range = cfg["label_range"]
    latent = torch.rand(n, generator=g) * 2 - 1
    carrier = torch.randperm(n, generator=g) % len(MODALITIES) if varying else None

    def reliable(m):
        return None if carrier is None else carrier == MODALITIES.index(m)

    steps = _LABEL_STEPS[label_range]
    label = (torch.round(latent * label_range * steps) / steps).clamp(-label_range, label_range)

    text_len = cfg["text_len"]
    n_text = _lengths(n, 3, text_len, g)
    positions = torch.arange(text_len)
    text_valid = positions[None, :] < n_text[:, None]
    ids = torch.randint(1000, 29000, (n, text_len), generator=g)
    ids[:, 0] = CLS
    ids[torch.arange(n), n_text - 1] = SEP
    ids.masked_fill_(~text_valid, PAD)
    text_bert = torch.stack([ids.float(), text_valid.float(), torch.zeros(n, text_len)], dim=1)

    out = {"text_bert": text_bert.numpy()}
    # BERT outputs exist at padding positions too: text padding is noise, not zeros.
    out["text"] = _features(n, text_len, text_valid, latent, "text", g, directions, banks, False,
                            reliable("text")).numpy()
    for m in ("audio", "vision"):
        length = text_len if aligned else cfg[f"{m}_len"]
        n_valid = n_text if aligned else _lengths(n, max(1, length // 5), length, g)
        valid = torch.arange(length)[None, :] < n_valid[:, None]
        x = _features(n, length, valid, latent, m, g, directions, banks, True, reliable(m))
        if m == "audio":
            hit = (torch.rand(n, length, generator=g) < AUDIO_NEG_INF_RATE) & valid
            b, t = hit.nonzero(as_tuple=True)
            x[b, t, torch.randint(0, x.shape[-1], (b.numel(),), generator=g)] = float("-inf")
        out[m] = x.numpy()
        if not aligned:
            out[f"{m}_lengths"] = n_valid.numpy()

    out["regression_labels"] = label.numpy()
    cls = (label > 0).long() - (label < 0).long()
    out["classification_labels"] = (cls + 1).float().numpy()
    out["annotations"] = np.array(["Negative", "Neutral", "Positive"], dtype=object)[(cls + 1).numpy()]
    out["id"] = np.array([f"synthetic_{split}_{i:05d}" for i in range(n)], dtype=object)
    out["raw_text"] = np.array([f"synthetic {preset} sample {i}" for i in range(n)], dtype=object)
    if carrier is not None:
        out["reliable_modality"] = carrier.numpy()
    if preset == "sims":
        for m, key in zip(MODALITIES, "TAV"):
            if carrier is None:
                noisy = latent + SIGNAL[m][1] * torch.randn(n, generator=g)
            else:  # an unreliable modality's own label knows nothing of s
                noisy = torch.where(reliable(m), latent + RELIABLE_SIGNAL[1] * torch.randn(n, generator=g),
                                    torch.rand(n, generator=g) * 2 - 1)
            out[f"regression_labels_{key}"] = (torch.round(noisy * steps) / steps).clamp(-1, 1).numpy()
    return out
