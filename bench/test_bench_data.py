"""Data path: batched training corruption of a MOSEI-shaped batch against LNLN's per-sample numpy
loop (bench/lnln_baseline.py), and loading the converted cache against loading the pickle.

Compare ratios within one run (``python bench/summarize.py``): impl ``baseline``/``pickle`` is 1×.
"""
import pickle
import warnings

import numpy as np
import pytest
import torch
from conftest import devices, synced
from lnln_baseline import lnln_corrupt_batch

from prlf_fast import Batch
from prlf_fast.config import MODALITIES, PRESETS
from prlf_fast.data import convert, epoch_generator, load_mmsa, synthesize, train_corrupt, train_rates

BATCH = 64
LOAD_SIZES = (300, 60, 60)  # MOSI-shaped, ~90 MB of float32


def mosei_batch(batch_size, seed=0):
    """MOSEI shapes with prefix-valid masks and token ids, as numpy arrays and as a Batch."""
    cfg = PRESETS["mosei"]
    rng = np.random.default_rng(seed)
    arrays, lengths = {}, {}
    for m in MODALITIES:
        length, dim = cfg[f"{m}_len"], cfg[f"{m}_dim"]
        lengths[m] = rng.integers(3, length + 1, batch_size)
        valid = np.arange(length)[None] < lengths[m][:, None]
        arrays[m] = rng.standard_normal((batch_size, length, dim), dtype=np.float32) * valid[..., None]
    arrays["text_ids"] = rng.integers(1000, 29000, (batch_size, cfg["text_len"])).astype(np.float32)
    arrays["lengths"] = lengths
    masks = {f"{m}_mask": torch.from_numpy(np.arange(cfg[f"{m}_len"])[None] < lengths[m][:, None])
             for m in MODALITIES}
    batch = Batch(**{m: torch.from_numpy(arrays[m]) for m in MODALITIES}, **masks,
                  text_ids=torch.from_numpy(arrays["text_ids"]).long())
    return arrays, batch


@pytest.mark.parametrize("impl", ["baseline", "batched", "batched-inplace"])
@pytest.mark.parametrize("device", devices())
def test_train_corrupt_mosei_batch(benchmark, impl, device):
    """``batched-inplace`` overwrites the batch (as a trainer may with ``Split.batch``'s fresh
    batches); ``batched`` allocates new feature tensors."""
    if impl == "baseline" and device != "cpu":
        pytest.skip("the numpy baseline runs on the CPU only")
    arrays, batch = mosei_batch(BATCH)
    benchmark.extra_info.update(batch=BATCH, preset="mosei", impl=impl)
    if impl == "baseline":
        rng = np.random.default_rng(0)
        rates = train_rates(BATCH, epoch_generator(0, 0)).numpy()
        out = benchmark(lnln_corrupt_batch, arrays, rates, rng)
        assert out["audio"].shape == batch.audio.shape
    else:
        batch = batch.to(device)
        g = epoch_generator(0, 0, device)
        inplace = impl == "batched-inplace"
        out = benchmark(synced(lambda: train_corrupt(batch, g, inplace=inplace), device))
        assert out.audio.shape == batch.audio.shape


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_data")
    pkl = root / "mosi.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(synthesize("mosi", *LOAD_SIZES, seed=0), f, protocol=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        convert(pkl, root / "cache")
    return {"pickle": str(pkl), "cache": str(root / "cache")}


@pytest.mark.parametrize("what", ["load", "load+read"])
@pytest.mark.parametrize("impl", ["pickle", "cache"])
def test_load_mmsa(benchmark, data_files, impl, what):
    """``load+read`` also reads every feature value once (the cache maps pages lazily)."""
    touch = what == "load+read"
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            splits = load_mmsa(data_files[impl])
        if touch:
            for tensors in splits.values():
                for m in MODALITIES:
                    tensors[m].sum()
        return splits

    benchmark.extra_info.update(impl=impl, sizes=LOAD_SIZES)
    splits = benchmark(run)
    assert splits["train"]["text"].shape[0] == LOAD_SIZES[0]
