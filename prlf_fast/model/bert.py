"""The ``bert`` text encoder (DESIGN §4): a Hugging Face BERT, loaded from a local directory and
fine-tuned on the ``text_bert`` token ids, followed by the same masked query pooling and layers
as every other modality (``ModalityEncoder``)."""
from __future__ import annotations

import os

import torch

from prlf_fast.errors import PRLFError
from prlf_fast.model.encoder import ModalityEncoder


def load_bert(path: str):
    """``BertModel`` from a local directory (no network); a clear error when it cannot be."""
    try:
        from transformers import BertModel
    except ImportError as exc:
        raise PRLFError("text_encoder='bert' needs the transformers package: "
                        "pip install 'prlf_fast[bert]'") from exc
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise PRLFError(f"bert_path {path!r} is not a Hugging Face model directory "
                        "(expected a config.json and weights saved with save_pretrained)")
    try:
        return BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise PRLFError(f"cannot load BERT from {path!r}: {exc}") from exc


class BertTextEncoder(ModalityEncoder):
    """Token ids (B, L) and validity (B, L) -> H (B, T, d); ``embed`` runs BERT first."""

    def __init__(self, cfg):
        bert = load_bert(cfg.bert_path)
        super().__init__("text", bert.config.hidden_size, cfg.text_len, cfg)
        self.bert = bert

    def embed(self, ids, valid):
        if ids is None:
            raise ValueError("text_encoder='bert' needs Batch.text_ids (the data's text_bert ids)")
        # A sample with no valid token still gets a finite BERT pass (its pooled output is 0).
        attention = torch.where(valid.any(dim=-1, keepdim=True), valid, torch.ones_like(valid))
        hidden = self.bert(input_ids=ids.long(), attention_mask=attention.long()).last_hidden_state
        return super().embed(hidden, valid)
