"""``load_mmsa``: an MMSA pickle or a converted cache directory → ``{split: {key: tensor}}``."""
from __future__ import annotations

import os

from prlf_fast.data.cache import is_cache, read_cache, write_cache
from prlf_fast.data.errors import DataError
from prlf_fast.data.ids import sample_texts
from prlf_fast.data.mmsa import prepare_mmsa, report_nonfinite
from prlf_fast.data.safe_pickle import safe_load


def load_pickle(path, preset: str | None = None):
    """Restricted-unpickle, check and sanitise an MMSA pickle; returns (splits, nonfinite)."""
    return prepare_mmsa(safe_load(path), os.fspath(path), preset, copy=False)


def load_mmsa(path, preset: str | None = None) -> dict:
    """Load ``train``/``valid``/``test`` from an MMSA pickle or a cache directory.

    Each split maps ``text``, ``audio``, ``vision`` (N, L_m, d_m), ``regression_labels`` (N,) and
    ``text_bert`` (N, 3, L) when present to float32 tensors (non-finite values replaced by 0 and
    counted in one warning), and ``text_mask``, ``audio_mask``, ``vision_mask`` to bool (N, L_m).
    ``preset`` also checks feature sizes and maximum lengths against that dataset preset.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    if is_cache(path):
        return read_cache(path, preset)
    splits, nonfinite = load_pickle(path, preset)
    report_nonfinite(path, nonfinite)
    return splits


def convert(pickle_path, out_dir, preset: str | None = None) -> dict:
    """Convert an MMSA pickle to a cache directory (keeping each split's ``id`` and ``raw_text``,
    see ``cache.read_texts``); returns the non-finite counts replaced."""
    raw = safe_load(pickle_path)
    texts = sample_texts(raw, os.fspath(pickle_path))   # before prepare_mmsa releases the splits
    splits, nonfinite = prepare_mmsa(raw, os.fspath(pickle_path), preset, copy=False)
    write_cache(splits, out_dir, os.fspath(pickle_path), nonfinite, texts)
    return nonfinite
