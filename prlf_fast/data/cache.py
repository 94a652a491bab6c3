"""The converted cache: one memory-mapped safetensors file per split plus ``meta.json``.

Tensors are stored as ``load_mmsa`` returns them (float32, sanitised, bool masks), so loading is
a memory map: no parsing, no conversion, and pages are read only when touched.

A conversion commits as a whole: the split files get names no earlier conversion used
(``train.<id>.safetensors``), and ``meta.json``, which names them, is replaced atomically last.
Until that rename a reader sees the previous cache, unchanged; after it, the new one. Files no
``meta.json`` names (an earlier conversion's, or an interrupted one's) are removed by the next
conversion, which also replaces a cache of another version as a whole.
"""
from __future__ import annotations

import json
import os
import re
import secrets

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from prlf_fast.data.errors import DataError
from prlf_fast.data.mmsa import MASK_KEYS, SPLITS, check_split_shapes
from prlf_fast.io import atomic
from prlf_fast.errors import PRLFError
from prlf_fast.io.atomic import WriteError, atomic_path, make_dir, write_json
from prlf_fast.io.files import ReadError, read_text, regular_path

FORMAT = "prlf_fast.mmsa-cache"
VERSION = 2
META = "meta.json"
SPLIT_LIMIT = 1 << 40  # a split file is memory-mapped, not read: only special files are refused
_SPLIT_FILE = re.compile(r"^(train|valid|test)(\.[0-9a-f]{8})?\.safetensors$")
# Sample ids and raw text per split (``ids.sample_texts``), when the pickle had them.
_TEXTS_FILE = re.compile(r"^texts\.[0-9a-f]{8}\.json$")


def is_cache(path) -> bool:
    """Whether ``path`` is read as a cache: a directory is (a pickle is a file); whether it
    holds a valid cache is checked when it is read (``read_cache``)."""
    return os.path.isdir(path)


def is_conversion_file(name: str) -> bool:
    """Whether ``name`` is a split file or a temporary file that a conversion writes."""
    return bool(_SPLIT_FILE.match(name) or _TEXTS_FILE.match(name) or atomic.is_stray(name))


def clean(cache_dir) -> None:
    """Remove what interrupted or earlier conversions left in ``cache_dir``: temporary files,
    and split files that its ``meta.json`` does not name (nothing else is touched)."""
    atomic.remove_strays(cache_dir)
    try:
        meta = read_meta(cache_dir)
        keep = {*meta["files"].values(), meta.get("texts")}
    except DataError:
        keep = None  # no readable cache here: leave its split-named files alone
    for name in os.listdir(cache_dir):
        if keep is not None and (_SPLIT_FILE.match(name) or _TEXTS_FILE.match(name)) and name not in keep:
            atomic.remove(os.path.join(cache_dir, name))


def write_cache(splits: dict, out_dir, source: str, nonfinite: dict, texts: dict | None = None) -> None:
    """Write ``{split: {key: tensor}}`` (as from ``prepare_mmsa``) and ``texts``
    (``{split: {"id"/"raw_text": [str]}}``, when given) to ``out_dir`` as one commit: new files
    first, then ``meta.json`` naming them (atomically), then the old files go."""
    make_dir(out_dir, user_given=True)
    token = secrets.token_hex(4)
    files = {split: f"{split}.{token}.safetensors" for split in SPLITS}
    for split in SPLITS:
        tensors = {k: v.contiguous() for k, v in splits[split].items()}
        path = os.path.join(out_dir, files[split])
        with atomic_path(path) as tmp:
            try:
                save_file(tensors, tmp)
            except SafetensorError as exc:
                raise WriteError(path, str(exc)) from exc
    meta = {"format": FORMAT, "version": VERSION, "source": os.path.abspath(source),
            "nonfinite": nonfinite, "files": files,
            "shapes": {s: {k: list(v.shape) for k, v in splits[s].items()} for s in SPLITS}}
    if texts:
        meta["texts"] = f"texts.{token}.json"
        write_json(os.path.join(out_dir, meta["texts"]), texts)
    write_json(os.path.join(out_dir, META), meta)
    clean(out_dir)


def read_meta(cache_dir) -> dict:
    path = os.path.join(cache_dir, META)
    try:
        meta = json.loads(read_text(cache_dir, META))
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{cache_dir}: not a prlf_fast data cache (no {META}); "
                        "write one with `prlf-fast data convert FILE.pkl DIR`") from None
    except (OSError, ValueError, PRLFError) as exc:
        raise DataError(f"{path}: unreadable cache metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a prlf_fast data cache (format {meta.get('format')!r})"
                        if isinstance(meta, dict) else f"{path}: not a prlf_fast data cache")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: cache version {meta.get('version')!r}, this prlf_fast reads "
                        f"version {VERSION}; convert the pickle again")
    files = meta.get("files")
    if not (isinstance(files, dict) and all(
            isinstance(files.get(s), str) and _SPLIT_FILE.match(files[s]) for s in SPLITS)):
        raise DataError(f"{path}: 'files' must name one split file per split; convert the pickle again")
    return meta


def read_texts(cache_dir) -> dict:
    """``{split: {"id"/"raw_text": [str]}}`` kept by ``write_cache``; {} for a cache without them."""
    name = read_meta(cache_dir).get("texts")
    if not (isinstance(name, str) and _TEXTS_FILE.match(name)):
        return {}
    path = os.path.join(cache_dir, name)
    try:
        return json.loads(read_text(cache_dir, name))
    except (OSError, ValueError, PRLFError) as exc:
        raise DataError(f"{path}: unreadable sample ids ({exc})") from None


def read_cache(cache_dir, preset: str | None = None) -> dict:
    """Memory-map a cache directory; keys and shapes are checked, values are trusted. Every file
    must be a regular file in ``cache_dir`` (never a symlink or a special file: ``io.files``)."""
    files = read_meta(cache_dir)["files"]
    splits, reference = {}, None
    for split in SPLITS:
        path = os.path.join(cache_dir, files[split])
        if not os.path.isfile(path):
            raise DataError(f"{cache_dir}: missing split '{split}' ({path} does not exist)")
        try:
            tensors = load_file(regular_path(path, SPLIT_LIMIT))
        except ReadError as exc:
            raise DataError(str(exc)) from None
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
