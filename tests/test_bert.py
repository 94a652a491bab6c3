"""The ``bert`` text encoder on a tiny randomly initialised BERT saved to a temporary directory."""
import pytest
import torch

from conftest import random_batch, tiny_config
from prlf_fast import PRLF
from prlf_fast.errors import PRLFError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_bert")
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=12, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=16,
                                  max_position_embeddings=32)
    torch.manual_seed(0)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    return str(path)


def bert_batch(cfg, batch_size, seed=0):
    batch = random_batch(cfg, batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    batch.text_ids = torch.randint(101, 120, (batch_size, cfg.text_len), generator=g).float()
    return batch


def test_bert_encoder_trains_and_ignores_invalid_tokens(bert_dir):
    cfg = tiny_config(text_encoder="bert", bert_path=bert_dir, dropout=0.0)
    model = PRLF(cfg, backend="reference")
    assert model.encoders["text"].in_proj.in_features == 12
    batch = bert_batch(cfg, 4)
    out = model(batch)
    model.loss(out, batch)["total"].backward()
    grad = model.encoders["text"].bert.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    # Changing the ids at invalid positions changes nothing.
    model.eval()
    changed = bert_batch(cfg, 4)
    changed.text_ids = torch.where(batch.text_mask, batch.text_ids, torch.full_like(batch.text_ids, 103))
    with torch.no_grad():
        torch.testing.assert_close(model(changed).prediction, model(batch).prediction)


def test_bert_encoder_sample_without_text_is_finite(bert_dir):
    cfg = tiny_config(text_encoder="bert", bert_path=bert_dir)
    model = PRLF(cfg).eval()
    batch = bert_batch(cfg, 3)
    batch.text_mask[1] = False
    with torch.no_grad():
        out = model(batch)
    assert torch.isfinite(out.prediction).all()
    assert not out.present[1, 0] and out.dominant[1] != 0


def test_bert_state_dict_roundtrip(bert_dir):
    cfg = tiny_config(text_encoder="bert", bert_path=bert_dir)
    a, b = PRLF(cfg).eval(), PRLF(cfg).eval()
    b.load_state_dict(a.state_dict())
    batch = bert_batch(cfg, 2)
    with torch.no_grad():
        torch.testing.assert_close(a(batch).prediction, b(batch).prediction)


def test_bert_missing_directory_is_a_clear_error(tmp_path):
    cfg = tiny_config(text_encoder="bert", bert_path=str(tmp_path / "nope"))
    with pytest.raises(PRLFError, match="not a Hugging Face model directory"):
        PRLF(cfg)
