"""A conversion into a directory that holds a cache commits as a whole: killed at any rename or
removal, the directory loads as the old cache, unchanged, or as the new one, never a mix; the
next conversion removes what the killed one left."""
import json
import os
import pickle

import pytest
import torch

from prlf_fast.data import load_mmsa, synthesize
from prlf_fast.data.loader import convert
from helpers import Killed, kill_at


def write(path, seed):
    with open(path, "wb") as f:
        pickle.dump(synthesize("mosi", 6, 3, 3, seed=seed), f)
    return str(path)


def loaded(cache):
    return {s: {k: v.clone() for k, v in d.items()} for s, d in load_mmsa(cache).items()}


def same(a, b):
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all(torch.equal(a[s][k], b[s][k]) for k in a[s]) for s in a)


def test_a_killed_conversion_leaves_the_old_cache_or_the_new_one(tmp_path):
    a, b = write(tmp_path / "a.pkl", 1), write(tmp_path / "b.pkl", 2)
    reference = tmp_path / "ref"
    convert(b, reference)
    new = loaded(str(reference))
    cache = str(tmp_path / "cache")
    convert(a, cache)
    old = loaded(cache)
    convert(a, str(tmp_path / "count"))
    with pytest.MonkeyPatch.context() as m:
        state = kill_at(m, 0)
        convert(b, str(tmp_path / "count"))
    assert state["n"] >= 9  # three split files, ids, meta.json, four old files removed
    for k in range(1, state["n"] + 1):
        with pytest.MonkeyPatch.context() as m:
            kill_at(m, k)
            with pytest.raises(Killed):
                convert(b, cache)
        now = loaded(cache)
        source = json.load(open(os.path.join(cache, "meta.json")))["source"]
        assert (same(now, old) and source == a) or (same(now, new) and source == b), k
        convert(a, cache)  # the next conversion cleans up and commits again
        assert same(loaded(cache), old)
        meta = json.load(open(os.path.join(cache, "meta.json")))
        named = {"meta.json", meta["texts"], *meta["files"].values()}  # three split files, ids
        assert set(os.listdir(cache)) == named, os.listdir(cache)


def test_a_cache_of_another_version_is_refused_and_converting_over_it_replaces_it(tmp_path):
    cache = tmp_path / "v1"
    convert(write(tmp_path / "a.pkl", 1), str(cache))
    meta = json.loads((cache / "meta.json").read_text())
    os.remove(cache / meta.pop("texts"))  # version 1: fixed split names, no sample ids
    for split, name in meta.pop("files").items():
        os.rename(cache / name, cache / f"{split}.safetensors")
    (cache / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(Exception, match="cache version 1, this prlf_fast reads version 2; convert the pickle again"):
        load_mmsa(str(cache))
    convert(write(tmp_path / "b.pkl", 2), str(cache))  # replaces the version 1 files as a whole
    assert sorted(n.split(".")[0] for n in os.listdir(cache)) == ["meta", "test", "texts", "train", "valid"]


def test_a_meta_naming_foreign_files_is_refused(tmp_path):
    cache = tmp_path / "c"
    convert(write(tmp_path / "a.pkl", 1), str(cache))
    meta = json.loads((cache / "meta.json").read_text())
    meta["files"]["train"] = "../../etc/passwd"
    (cache / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="'files' must name one split file per split"):
        load_mmsa(str(cache))


@pytest.mark.parametrize("k", [3, 4, 5])  # killed before the third split file, the ids, meta.json
def test_a_killed_first_conversion_does_not_block_the_next(tmp_path, capsys, k):
    from prlf_fast.cli import main

    a = write(tmp_path / "a.pkl", 1)
    cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as m:
        kill_at(m, k)  # k − 1 files in place, killed before the next
        with pytest.raises(Killed):
            main(["data", "convert", a, str(cache)])
    assert not (cache / "meta.json").exists() and len(os.listdir(cache)) >= k - 1
    assert main(["data", "convert", a, str(cache)]) == 0, capsys.readouterr().err
    convert(a, str(tmp_path / "ref"))
    assert len(os.listdir(cache)) == 5 and same(loaded(str(cache)), loaded(str(tmp_path / "ref")))  # meta, 3 splits, ids
