"""Synthetic MMSA data: layout, tokens, −inf, determinism, learnable signal; the data CLI."""
import numpy as np
import pytest
import torch

from prlf_fast.cli import main
from prlf_fast.config import PRESETS
from prlf_fast.data import load_mmsa, prepare_mmsa, synthesize


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_layout_and_tokens(preset):
    d = synthesize(preset, 20, 4, 4, seed=0)
    cfg = PRESETS[preset]
    t = d["train"]
    assert t["text"].shape == (20, cfg["text_len"], 768)
    assert t["audio"].shape == (20, cfg["audio_len"], cfg["audio_dim"])
    assert t["vision"].shape == (20, cfg["vision_len"], cfg["vision_dim"])
    assert t["text_bert"].shape == (20, 3, cfg["text_len"])
    ids, mask = t["text_bert"][:, 0].astype(int), t["text_bert"][:, 1]
    n = mask.sum(1).astype(int)
    assert (n >= 3).all() and (ids[:, 0] == 101).all() and (ids[np.arange(20), n - 1] == 102).all()
    assert ((ids == 0) == (mask == 0)).all() and (t["text_bert"][:, 2] == 0).all()
    for m in ("audio", "vision"):
        lengths = t[f"{m}_lengths"]
        rows = np.isfinite(t[m]) & (t[m] != 0)
        assert (rows.any(-1).sum(1) == lengths).all()  # zero padding after the length
    assert np.isneginf(np.concatenate([d[s]["audio"].ravel() for s in d])).any()
    assert np.abs(t["regression_labels"]).max() <= cfg["label_range"]
    assert t["id"].dtype == object and isinstance(t["raw_text"][0], str)
    if preset == "sims":
        assert {"regression_labels_T", "regression_labels_A", "regression_labels_V"} <= set(t)


def test_deterministic_in_seed():
    a, b, c = (synthesize("mosi", 5, 2, 2, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(a["test"][k], b["test"][k]) for k in ("text", "audio", "regression_labels"))
    assert not np.array_equal(a["test"]["text"], c["test"]["text"])


def _ridge_corr(splits, m):
    def pooled(s):
        x, mask = s[m].double(), s[f"{m}_mask"]
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.cat([pooled, torch.ones(len(pooled), 1, dtype=pooled.dtype)], 1)
    x, y = pooled(splits["train"]), splits["train"]["regression_labels"].double()
    w = torch.linalg.solve(x.T @ x + 10 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    return float(np.corrcoef(pooled(splits["test"]) @ w, splits["test"]["regression_labels"])[0, 1])


def test_signal_learnable_text_strongest():
    splits, _ = prepare_mmsa(synthesize("mosi", 600, 50, 400, seed=0))
    corr = {m: _ridge_corr(splits, m) for m in ("text", "audio", "vision")}
    assert corr["text"] > 0.75, corr
    assert corr["text"] > corr["audio"] + 0.05 and corr["text"] > corr["vision"] + 0.05, corr
    assert min(corr["audio"], corr["vision"]) > 0.35, corr
    assert (splits["train"]["regression_labels"] == 0).any()  # Non0 metrics have something to drop


def test_cli_synth_inspect_convert(tmp_path, capsys):
    pkl, cache = tmp_path / "s.pkl", tmp_path / "cache"
    assert main(["data", "synth", "--preset", "sims", "--out", str(pkl), "--n-train", "7",
                 "--n-valid", "3", "--n-test", "2", "--seed", "4"]) == 0
    assert main(["data", "inspect", str(pkl), "--preset", "sims"]) == 0
    out = capsys.readouterr().out
    assert "split train: 7 samples" in out and "(7, 400, 33)" in out and "non-finite" in out
    assert "labels  min" in out and "object" in out
    assert main(["data", "convert", str(pkl), str(cache)]) == 0
    assert main(["data", "inspect", str(cache)]) == 0
    assert "split test: 2 samples" in capsys.readouterr().out
    with pytest.warns(UserWarning):
        from_pickle = load_mmsa(str(pkl))
    assert torch.equal(load_mmsa(str(cache))["valid"]["vision"], from_pickle["valid"]["vision"])
    assert main(["data", "inspect", str(pkl), "--preset", "mosi"]) == 2
    assert "preset 'mosi'" in capsys.readouterr().err


def _pooled(split, m):
    x, mask = split[m].double(), split[f"{m}_mask"]
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return torch.cat([pooled, torch.ones(len(pooled), 1, dtype=pooled.dtype)], 1)


def test_varying_reliability_one_reliable_modality_per_sample():
    raw = synthesize("mosi", 900, 6, 600, seed=0, reliability="varying")
    carrier = {s: torch.from_numpy(raw[s]["reliable_modality"]) for s in raw}
    for s, n in (("train", 900), ("valid", 6), ("test", 600)):
        assert torch.bincount(carrier[s], minlength=3).tolist() == [n // 3] * 3
    splits, _ = prepare_mmsa(raw)
    train, test = splits["train"], splits["test"]
    for i, m in enumerate(("text", "audio", "vision")):
        # A ridge probe on modality m, fitted on the samples where m is the reliable one, predicts
        # the label on those samples of the test split and nothing on the others.
        own = carrier["train"] == i
        x, y = _pooled(train, m)[own], train["regression_labels"].double()[own]
        w = torch.linalg.solve(x.T @ x + 10 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
        pred = _pooled(test, m) @ w
        for j in range(3):
            sel = carrier["test"] == j
            corr = float(np.corrcoef(pred[sel], test["regression_labels"][sel])[0, 1])
            assert (corr > 0.7) if j == i else (abs(corr) < 0.25), (m, j, corr)
    # The unreliable modalities are louder: their valid feature rows have a larger norm.
    x, mask = train["vision"], train["vision_mask"]
    norm = (x.norm(dim=-1) * mask).sum(1) / mask.sum(1)
    assert norm[carrier["train"] != 2].mean() > 1.5 * norm[carrier["train"] == 2].mean()


def test_varying_reliability_cli_and_errors(tmp_path, capsys):
    pkl = tmp_path / "v.pkl"
    assert main(["data", "synth", "--preset", "sims", "--out", str(pkl), "--n-train", "6", "--n-valid", "3",
                 "--n-test", "3", "--reliability", "varying"]) == 0
    assert "varying reliability" in capsys.readouterr().out
    fixed = synthesize("sims", 6, 3, 3, seed=0)
    assert "reliable_modality" not in fixed["train"]
    with pytest.raises(ValueError, match="unknown reliability"):
        synthesize("mosi", 2, 2, 2, reliability="sometimes")
