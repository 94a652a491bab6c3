"""The converted cache: one memory-mapped safetensors file per split plus ``meta.json``.

Tensors are stored as ``load_mmsa`` returns them (float32, sanitised, bool masks), so loading is
a memory map: no parsing, no conversion, and pages are read only when touched.
"""
from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from prlf_fast.data.errors import DataError
from prlf_fast.data.mmsa import MASK_KEYS, SPLITS, check_split_shapes

FORMAT = "prlf_fast.mmsa-cache"
VERSION = 1
META = "meta.json"
TEXTS = "texts.json"   # sample ids and raw text per split (``ids.sample_texts``), when the pickle had them


def is_cache(path) -> bool:
    return os.path.isdir(path)


def write_cache(splits: dict, out_dir, source: str, nonfinite: dict, texts: dict | None = None) -> None:
    """Write ``{split: {key: tensor}}`` (as from ``prepare_mmsa``) to ``out_dir``, and ``texts``
    (``{split: {"id"/"raw_text": [str]}}``) when given."""
    os.makedirs(out_dir, exist_ok=True)
    for split in SPLITS:
        tensors = {k: v.contiguous() for k, v in splits[split].items()}
        save_file(tensors, os.path.join(out_dir, f"{split}.safetensors"))
    if texts:
        with open(os.path.join(out_dir, TEXTS), "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
    meta = {"format": FORMAT, "version": VERSION, "source": os.path.abspath(source),
            "nonfinite": nonfinite,
            "shapes": {s: {k: list(v.shape) for k, v in splits[s].items()} for s in SPLITS}}
    with open(os.path.join(out_dir, META), "w") as f:
        json.dump(meta, f, indent=1)


def read_meta(cache_dir) -> dict:
    path = os.path.join(cache_dir, META)
    if not os.path.isfile(path):
        raise DataError(f"{cache_dir}: not a prlf_fast data cache (no {META}); "
                        "write one with `prlf-fast data convert FILE.pkl DIR`")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable cache metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a prlf_fast data cache (format {meta.get('format')!r})"
                        if isinstance(meta, dict) else f"{path}: not a prlf_fast data cache")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: cache version {meta.get('version')!r}, this prlf_fast reads "
                        f"version {VERSION}; convert the pickle again")
    return meta


def read_texts(cache_dir) -> dict:
    """``{split: {"id"/"raw_text": [str]}}`` kept by ``write_cache``; {} for a cache without them."""
    path = os.path.join(cache_dir, TEXTS)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable sample ids ({exc})") from None


def read_cache(cache_dir, preset: str | None = None) -> dict:
    """Memory-map a cache directory; keys and shapes are checked, values are trusted."""
    read_meta(cache_dir)
    splits, reference = {}, None
    for split in SPLITS:
        path = os.path.join(cache_dir, f"{split}.safetensors")
        if not os.path.isfile(path):
            raise DataError(f"{cache_dir}: missing split '{split}' ({path} does not exist)")
        try:
            tensors = load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{path}: truncated or corrupt safetensors file ({exc})") from None
        check_split_shapes({k: tuple(v.shape) for k, v in tensors.items()}, path, split, reference, preset)
        for key in MASK_KEYS:
            if key not in tensors:
                raise DataError(f"{path}: split '{split}' has no key '{key}'")
        for key, tensor in tensors.items():
            want = torch.bool if key.endswith("_mask") else torch.float32
            if tensor.dtype != want:
                raise DataError(f"{path}: key '{key}' has dtype {tensor.dtype}, expected {want}")
        splits[split] = tensors
        reference = reference or {k: tuple(v.shape) for k, v in tensors.items()}
    return splits
