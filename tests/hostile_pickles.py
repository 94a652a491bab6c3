"""Small MMSA pickles, valid and hostile, built opcode by opcode for the loader's tests.

``tiny_mmsa()`` is a valid MMSA dict a few KB in size; ``splice(data, **ops)`` pickles it
(protocol 3, no frames) with the values of chosen keys replaced by raw opcode sequences.
"""
import collections
import pickle
import pickletools
import struct

import numpy as np

MARKER = "@@HOSTILE:{}@@"


def tiny_mmsa(seed=0, sizes=(3, 2, 2)) -> dict:
    """A valid unaligned MMSA dict: text 4×6, text_bert, audio 5×3 (one −inf per split), vision
    3×2 (float64), lengths, labels, object ``id`` array of str."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in zip(("train", "valid", "test"), sizes):
        audio = rng.standard_normal((n, 5, 3)).astype(np.float32)
        audio[0, 1, 2] = -np.inf
        bert = np.zeros((n, 3, 4))
        bert[:, 0, :2] = [101, 102]
        bert[:, 1, :2] = 1
        data[split] = {
            "text": rng.standard_normal((n, 4, 6)).astype(np.float32),
            "text_bert": bert,
            "audio": audio,
            "vision": rng.standard_normal((n, 3, 2)),
            "audio_lengths": np.full(n, 4),
            "vision_lengths": [3] * n,
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "id": np.array([f"{split}_{i}" for i in range(n)], dtype=object),
        }
    return data


def ops(obj) -> bytes:
    """The opcodes that push ``obj`` (protocol 3, no PROTO/STOP, no memo puts)."""
    return pickletools.optimize(pickle.dumps(obj, protocol=3))[2:-1]


def splice(data, protocol=3, **replace) -> bytes:
    """Pickle ``data`` with ``data[split][key]`` (keys given as ``split__key``, or ``top__key``
    for a top-level entry) pushed by the raw opcodes ``replace[...]`` instead."""
    data = {s: dict(v) if isinstance(v, dict) else v for s, v in data.items()}
    for name in replace:
        split, key = name.split("__", 1)
        (data if split == "top" else data[split])[key] = MARKER.format(name)
    blob = pickle.dumps(data, protocol=protocol)
    for name, code in replace.items():
        text = MARKER.format(name).encode()
        old = b"X" + struct.pack("<I", len(text)) + text
        assert blob.count(old) == 1
        blob = blob.replace(old, code)
    return blob


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module: str, name: str, *args_ops: bytes) -> bytes:
    """``module.name(*args)`` as GLOBAL, MARK, args, TUPLE, REDUCE."""
    return glob(module, name) + b"(" + b"".join(args_ops) + b"tR"


def array_interface_dict(address=0x1000, shape=(3, 5, 3)) -> bytes:
    """An OrderedDict carrying an instance ``__array_interface__``: a writable float32 array of
    ``shape`` at ``address`` (the default shape is ``tiny_mmsa``'s train audio)."""
    od = collections.OrderedDict()
    od.__array_interface__ = {"data": (address, False), "shape": shape, "typestr": "<f4", "version": 3}
    return ops(od)


def nested(opener: bytes, closer: bytes, depth: int, leaf=b"K\x00") -> bytes:
    """``depth`` containers nested in each other (``opener`` each, then ``closer`` each)."""
    return opener * depth + leaf + closer * depth


def deep_tuple(depth: int) -> bytes:
    return b"K\x00" + b"\x85" * depth  # TUPLE1 repeatedly


def deep_list(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)  # EMPTY_LIST repeatedly, then APPEND each into the previous


def top_entry(blob: bytes, key_ops: bytes, value_ops: bytes) -> bytes:
    """A pickle of a dict with one more item, pushed by raw opcodes (after its other items)."""
    assert blob.endswith(b".")
    return blob[:-1] + key_ops + value_ops + b"s."
