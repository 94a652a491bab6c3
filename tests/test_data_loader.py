"""load_mmsa: restricted unpickling, layout checks, sanitising, validity masks and the cache."""
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from prlf_fast.config import PRESETS
from prlf_fast.data import (DataError, NonFiniteWarning, UnsafePickleError, convert, load_mmsa,
                            synthesize)
from prlf_fast.errors import PRLFError

SIZES = (6, 3, 4)


def as_float64(data):
    """The dict with every float array stored as float64 (as many MMSA files are)."""
    return {s: {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in split.items()}
            for s, split in data.items()}


def write(data, path, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return str(path)


def load_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        return load_mmsa(path, **kw)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("aligned", [False, True])
def test_loads_float64_and_object_arrays(tmp_path, preset, aligned):
    data = synthesize(preset, *SIZES, seed=1, aligned=aligned)
    assert data["train"]["id"].dtype == object
    out = load_quiet(write(as_float64(data), tmp_path / "d.pkl", protocol=2), preset=preset)
    assert set(out) == {"train", "valid", "test"}
    cfg = PRESETS[preset]
    for split, n in zip(("train", "valid", "test"), SIZES):
        t = out[split]
        assert set(t) == {"text", "audio", "vision", "regression_labels", "text_bert",
                          "text_mask", "audio_mask", "vision_mask"}
        for key in ("text", "audio", "vision", "regression_labels", "text_bert"):
            assert t[key].dtype == torch.float32 and torch.isfinite(t[key]).all()
        assert t["text"].shape == (n, cfg["text_len"], cfg["text_dim"])
        audio_len = cfg["text_len"] if aligned else cfg["audio_len"]
        assert t["audio"].shape == (n, audio_len, cfg["audio_dim"])
        raw = data[split]
        np.testing.assert_array_equal(t["regression_labels"].numpy(), raw["regression_labels"])
        # text validity is the token attention mask
        np.testing.assert_array_equal(t["text_mask"].numpy(), raw["text_bert"][:, 1] > 0)
        for m in ("audio", "vision"):
            mask = t[f"{m}_mask"].numpy()
            assert t[f"{m}_mask"].dtype == torch.bool
            if aligned:  # no lengths: valid iff the row is not all zero
                np.testing.assert_array_equal(mask, np.nan_to_num(raw[m], neginf=0).any(-1))
            else:
                np.testing.assert_array_equal(mask.sum(1), raw[f"{m}_lengths"])
                assert (mask[:, :-1] >= mask[:, 1:]).all()  # prefixes
        finite = np.where(np.isfinite(raw["audio"]), raw["audio"], 0)
        np.testing.assert_array_equal(t["audio"].numpy(), finite)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_every_pickle_protocol(tmp_path, protocol):
    data = synthesize("mosi", 3, 2, 2, seed=0)
    out = load_quiet(write(data, tmp_path / "d.pkl", protocol))
    np.testing.assert_array_equal(out["test"]["vision"].numpy(), data["test"]["vision"])


def test_nonfinite_replaced_and_reported_once(tmp_path):
    data = synthesize("mosi", 4, 2, 2, seed=0)
    data["train"]["vision"][0, 0, :3] = [np.nan, np.inf, -np.inf]
    expected = sum(int((~np.isfinite(s[m])).sum()) for s in data.values() for m in ("audio", "vision"))
    path = write(data, tmp_path / "d.pkl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_mmsa(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, NonFiniteWarning)]
    assert len(messages) == 1
    assert f"replaced {expected} non-finite values" in messages[0] and "train/vision: 3" in messages[0]
    assert (out["train"]["vision"][0, 0, :3] == 0).all()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    data = synthesize("mosi", 2, 2, 2, seed=0)
    data["train"]["id"] = _RunsCode(str(marker))
    path = write(data, tmp_path / "evil.pkl")
    with pytest.raises(UnsafePickleError, match=r"refused global '(io|builtins)\.open'") as info:
        load_mmsa(path)
    assert isinstance(info.value, PRLFError) and str(path) in str(info.value)
    assert not marker.exists()
    # the same file with the standard unpickler would have run the code
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'echo unsafe'\ntR.",
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cnumpy\nload\n(S'x'\ntR.",
])
def test_refused_globals_are_named(tmp_path, payload):
    path = tmp_path / "g.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=r"refused global '[\w.]+\.(system|eval|load)'"):
        load_mmsa(str(path))


def test_truncated_and_corrupt_files(tmp_path):
    path = write(synthesize("mosi", 3, 2, 2, seed=0), tmp_path / "d.pkl")
    blob = open(path, "rb").read()
    (tmp_path / "cut.pkl").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.pkl: truncated or corrupt pickle"):
        load_mmsa(str(tmp_path / "cut.pkl"))
    (tmp_path / "junk.pkl").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match=r"junk\.pkl: truncated or corrupt pickle"):
        load_mmsa(str(tmp_path / "junk.pkl"))
    with pytest.raises(DataError, match=r"missing\.pkl: no such file"):
        load_mmsa(str(tmp_path / "missing.pkl"))


def _broken(tmp_path, mutate):
    data = synthesize("mosi", 4, 3, 2, seed=0)
    mutate(data)
    return write(data, tmp_path / "bad.pkl")


def test_missing_split_and_key(tmp_path):
    with pytest.raises(DataError, match=r"bad\.pkl: missing split\(s\) 'valid'"):
        load_mmsa(_broken(tmp_path, lambda d: d.pop("valid")))
    with pytest.raises(DataError, match=r"split 'test' has no key 'audio'"):
        load_mmsa(_broken(tmp_path, lambda d: d["test"].pop("audio")))
    with pytest.raises(DataError, match=r"top level is a list"):
        load_mmsa(write([1, 2], tmp_path / "list.pkl"))


def test_shape_disagreement_within_split(tmp_path):
    def cut(d):
        d["valid"]["vision"] = d["valid"]["vision"][:2]
    with pytest.raises(DataError, match=r"bad\.pkl: split 'valid' key 'vision': expected shape "
                                        r"\(3, 500, 20\), found \(2, 500, 20\)"):
        load_mmsa(_broken(tmp_path, cut))

    def bert(d):
        d["train"]["text_bert"] = d["train"]["text_bert"][:, :, :40]
    with pytest.raises(DataError, match=r"key 'text_bert': expected shape \(4, 3, 50\), found \(4, 3, 40\)"):
        load_mmsa(_broken(tmp_path, bert))


def test_shape_disagreement_across_splits_and_with_preset(tmp_path):
    def widen(d):
        d["test"]["audio"] = np.zeros((2, 375, 6), np.float32)
    with pytest.raises(DataError, match=r"split 'test' key 'audio': expected shape \(2, 375, 5\), "
                                        r"found \(2, 375, 6\) \(as in split 'train'\)"):
        load_mmsa(_broken(tmp_path, widen))
    path = _broken(tmp_path, lambda d: None)
    with pytest.raises(DataError, match=r"split 'train' key 'audio': expected shape \(4, L ≤ 500, 74\), "
                                        r"found \(4, 375, 5\) \(preset 'mosei'\)"):
        load_quiet(path, preset="mosei")


def test_lengths_clipped_and_lists_accepted(tmp_path):
    def lengths(d):
        d["train"]["audio_lengths"] = [1000, 0, 5, 375]
    out = load_quiet(_broken(tmp_path, lengths))
    assert out["train"]["audio_mask"].sum(1).tolist() == [375, 0, 5, 375]

    def negative(d):
        d["train"]["vision_lengths"] = np.array([-1, 2, 3, 4])
    with pytest.raises(DataError, match=r"key 'vision_lengths' holds negative"):
        load_mmsa(_broken(tmp_path, negative))


def test_cache_round_trip_and_errors(tmp_path):
    path = write(as_float64(synthesize("sims", *SIZES, seed=3)), tmp_path / "d.pkl")
    nonfinite = convert(path, tmp_path / "cache")
    assert sum(nonfinite.values()) > 0 and set(nonfinite) <= {f"{s}/audio" for s in ("train", "valid", "test")}
    from_pickle, from_cache = load_quiet(path), load_mmsa(str(tmp_path / "cache"), preset="sims")
    for split in from_pickle:
        assert from_pickle[split].keys() == from_cache[split].keys()
        for key, value in from_pickle[split].items():
            assert from_cache[split][key].dtype == value.dtype
            assert torch.equal(from_cache[split][key], value)
    files = json.loads((tmp_path / "cache" / "meta.json").read_text())["files"]
    os.remove(tmp_path / "cache" / files["valid"])
    with pytest.raises(DataError, match=r"missing split 'valid'"):
        load_mmsa(str(tmp_path / "cache"))
    blob = (tmp_path / "cache" / files["train"]).read_bytes()
    (tmp_path / "cache" / files["train"]).write_bytes(blob[:100])
    with pytest.raises(DataError, match=r"train\.[0-9a-f]{8}\.safetensors: truncated or corrupt"):
        load_mmsa(str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"not a prlf_fast data cache"):
        load_mmsa(str(tmp_path))


def test_numpy1_module_names_load_without_deprecation(tmp_path):
    """Files written by numpy 1.x name ``numpy.core``; numpy 2 calls it ``numpy._core``."""
    data = synthesize("mosi", 2, 2, 2, seed=0)
    blob = pickle.dumps(data, protocol=2)  # GLOBAL opcodes hold the module name as text
    old = blob.replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in old and b"numpy._core" not in old
    (tmp_path / "old.pkl").write_bytes(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("ignore", NonFiniteWarning)
        out = load_mmsa(str(tmp_path / "old.pkl"))
    np.testing.assert_array_equal(out["valid"]["vision"].numpy(), data["valid"]["vision"])


def test_zero_feature_size_is_refused(tmp_path):
    """(N, L, 0) features hold no bytes, so N × L would size the masks from bare numbers."""
    def flat(d):
        for split in d.values():  # bool masks of N × 10⁹ (GBs) from a file of a few MB
            split["vision"] = np.zeros((len(split["vision"]), 10 ** 9, 0), np.float32)
            del split["vision_lengths"]
    with pytest.raises(DataError, match=r"bad\.pkl: split 'train' key 'vision': expected shape \(N, L, d\) "
                                        r"with d ≥ 1, found \(4, 1000000000, 0\)"):
        load_mmsa(_broken(tmp_path, flat))


def test_empty_splits_allocate_nothing_from_their_lengths(tmp_path, capsys):
    """With N = 0 a length L costs no memory in the file: masks must not be sized by L alone."""
    long = 10 ** 12
    data = {s: {"text": np.zeros((0, 4, 6), np.float32), "audio": np.zeros((0, long, 3), np.float32),
                "vision": np.zeros((0, long, 2)), "audio_lengths": np.zeros(0),
                "regression_labels": np.zeros(0, np.float32)} for s in ("train", "valid", "test")}
    path = write(data, tmp_path / "empty.pkl")
    out = load_mmsa(path)
    assert out["test"]["audio_mask"].shape == (0, long) and out["test"]["vision_mask"].shape == (0, long)
    from prlf_fast.cli import main
    assert main(["data", "inspect", path]) == 0
    assert "split valid: 0 samples" in capsys.readouterr().out
