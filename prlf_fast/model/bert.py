"""The ``bert`` text encoder (docs/design.md §4): a Hugging Face BERT, loaded from a local directory and
fine-tuned on the ``text_bert`` token ids, followed by the same masked query pooling and layers
as every other modality (``ModalityEncoder``)."""
from __future__ import annotations

import os

import torch

from prlf_fast.errors import PRLFError
from prlf_fast.model.encoder import ModalityEncoder


def load_bert(path: str):
    """``BertModel`` from a local directory (no network). Any failure (a pickled
    ``pytorch_model.bin`` that torch's ``weights_only`` refuses, a truncated safetensors file,
    an unreadable config.json, ...) is one PRLFError naming the folder."""
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
    except Exception as exc:  # the loader's errors are of many kinds (pickle, safetensors, json)
        reason = " ".join(str(exc).split())
        raise PRLFError(f"cannot load BERT from {path!r}: {type(exc).__name__}: "
                        f"{reason[:300] + '...' if len(reason) > 300 else reason}") from exc


class BertTextEncoder(ModalityEncoder):
    """Token ids (B, L) and validity (B, L) -> H (B, T, d); ``embed`` runs BERT first (ids
    outside the BERT's vocabulary are a PRLFError)."""

    def __init__(self, cfg):
        bert = load_bert(cfg.bert_path)
        super().__init__("text", bert.config.hidden_size, cfg.text_len, cfg)
        self.bert = bert

    def check_ids(self, ids) -> None:
        """Raise a PRLFError when token ids (any shape) fall outside this BERT's vocabulary."""
        vocab = self.bert.config.vocab_size
        if ids.numel() and not bool(((ids >= 0) & (ids < vocab)).all()):
            raise PRLFError(f"the data's text_bert token ids run from {int(ids.min())} to {int(ids.max())}, "
                            f"outside the vocabulary of the BERT in {self.bert.name_or_path!r} "
                            f"(config.json: vocab_size {vocab}); use the BERT the ids were made with")

    def embed(self, ids, valid):
        if ids is None:
            raise ValueError("text_encoder='bert' needs Batch.text_ids (the data's text_bert ids)")
        self.check_ids(ids)
        # A sample with no valid token still gets a finite BERT pass (its pooled output is 0).
        attention = torch.where(valid.any(dim=-1, keepdim=True), valid, torch.ones_like(valid))
        hidden = self.bert(input_ids=ids.long(), attention_mask=attention.long()).last_hidden_state
        return super().embed(hidden, valid)
