"""Split: whole-split tensors gathered into Batches by index."""
import pytest
import torch

from prlf_fast import Batch
from prlf_fast.data import Split, prepare_mmsa, synthesize


@pytest.fixture(scope="module")
def mmsa():
    splits, _ = prepare_mmsa(synthesize("mosi", 23, 5, 5, seed=0))
    return splits


def test_from_mmsa_fields(mmsa):
    split = Split.from_mmsa(mmsa["train"])
    assert len(split) == 23 and split.device.type == "cpu"
    assert split.text is mmsa["train"]["text"]  # no copy on the same device
    assert split.text_ids.dtype == torch.int64 and split.text_ids.shape == (23, 50)
    assert (split.text_ids[:, 0] == 101).all()
    assert torch.equal(split.label, mmsa["train"]["regression_labels"])
    no_bert = {k: v for k, v in mmsa["train"].items() if k != "text_bert"}
    assert Split.from_mmsa(no_bert).text_ids is None
    assert Split.from_mmsa(mmsa["train"], pin_memory=True).label.shape == (23,)


def test_batch_gathers_rows(mmsa):
    split = Split.from_mmsa(mmsa["train"])
    idx = torch.tensor([5, 0, 22, 5])
    batch = split.batch(idx)
    assert isinstance(batch, Batch) and batch.size == 4
    for name in ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "label", "text_ids"):
        assert torch.equal(getattr(batch, name), getattr(split, name)[idx])


def test_iter_batches_covers_each_sample_once_in_order(mmsa):
    split = Split.from_mmsa(mmsa["train"])
    seen = [idx for idx, _ in split.iter_batches(5)]
    assert [len(i) for i in seen] == [5] * 4 + [3]
    assert torch.equal(torch.cat(seen), torch.arange(23))


def test_split_rejects_inconsistent_tensors(mmsa):
    parts = dict(mmsa["train"])
    parts["audio_mask"] = parts["audio_mask"][:, :10]
    with pytest.raises(ValueError, match="audio_mask"):
        Split.from_mmsa(parts)
