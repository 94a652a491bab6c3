"""The baseline our batched corruption replaces: LNLN's data path (Haoyu-ha/LNLN, core/dataset.py)
as a per-sample numpy loop, i.e. what a ``Dataset.__getitem__`` + default collate does per batch.

Per sample and modality: the validity vector is built from the length as a Python list (as LNLN
does), U is drawn with numpy, keep = (U > r) · valid, text keeps [CLS] and the last valid token,
feature rows are multiplied by keep, dropped token ids become 100; then each sample becomes torch
tensors and the batch is stacked.
"""
import numpy as np
import torch

MODALITIES = ("text", "audio", "vision")


def lnln_corrupt_batch(arrays: dict, rates: np.ndarray, rng: np.random.Generator) -> dict:
    """``arrays``: numpy ``text``, ``audio``, ``vision`` (B, L, d), ``text_ids`` (B, L) and
    ``lengths`` {modality: (B,)}; ``rates`` (B, 3). Returns stacked torch tensors."""
    samples = []
    for i in range(rates.shape[0]):
        sample = {}
        for j, m in enumerate(MODALITIES):
            x = arrays[m][i]
            length = int(arrays["lengths"][m][i])
            valid = np.array([1] * length + [0] * (x.shape[0] - length))
            keep = (rng.uniform(size=valid.shape) > rates[i, j]) * valid
            if m == "text":
                keep[0] = keep[length - 1] = 1
                ids = arrays["text_ids"][i]
                sample["text_ids"] = torch.Tensor(keep * ids + 100 * (valid - keep))
            sample[m] = torch.Tensor(keep[:, None] * x)
            sample[f"{m}_mask"] = torch.Tensor(keep)
        samples.append(sample)
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
