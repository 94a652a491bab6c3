"""The PRLF model (docs/design.md §4): encoders → AMRE → ProgInteract → prediction, and its loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prlf_fast.batch import Batch
from prlf_fast.config import ANCHORS, MODALITIES, PRLFConfig
from prlf_fast.model.amre import AMRE
from prlf_fast.model.encoder import ModalityEncoder
from prlf_fast.model.interact import ProgInteract
from prlf_fast.model.reliability import anchor_loss, anchor_predictions
from prlf_fast.ops import normalize_backend
from prlf_fast.profiling import nvtx_range


@dataclass
class PRLFOutput:
    prediction: torch.Tensor   # (B,)
    weights: torch.Tensor      # (B, 3) reliability weights
    dominant: torch.Tensor     # (B,) int64
    confidence: torch.Tensor   # (B, 3)
    fisher: torch.Tensor       # (B, 3)
    logits: torch.Tensor       # (B, 3, K)
    scores: torch.Tensor       # (B, 3) reliability scores (−inf when absent)
    order: torch.Tensor        # (B, 3) dominant, r1, r2
    present: torch.Tensor      # (B, 3) bool
    anchor_mean: torch.Tensor  # (B, d) mean over tokens of the anchor
    stream_mean: torch.Tensor  # (B, 2, d) mean over tokens of the two streams
    # (B, 3) prediction with each modality as the anchor, without gradient: only in training
    # with lambda_anchor > 0 (the anchor loss's targets)
    anchor_predictions: torch.Tensor | None = None


class PredictionHead(nn.Module):
    """ŷ = Linear(d→1)(GELU(Linear(3d→d)(LN(f))))."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(3 * d_model)
        self.fc1 = nn.Linear(3 * d_model, d_model)
        self.fc2 = nn.Linear(d_model, 1)

    def forward(self, f):
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(f)))).squeeze(-1)


def recognition_class(label, neutral_band: float):
    """0 if y < −δ, 2 if y > δ, else 1."""
    return (label > neutral_band).long() * 2 + ((label >= -neutral_band) & (label <= neutral_band)).long()


class PRLF(nn.Module):
    """PRLF with a selectable backend; the parameters and state_dict never depend on it."""

    def __init__(self, config: PRLFConfig, backend: str = "auto"):
        super().__init__()
        self.config = config
        self.backend = backend
        self.encoders = nn.ModuleDict(
            {m: ModalityEncoder(m, config.dims()[m], config.lengths()[m], config) for m in MODALITIES}
        )
        if config.text_encoder == "bert":
            from prlf_fast.model.bert import BertTextEncoder

            self.encoders["text"] = BertTextEncoder(config)
        self.amre = AMRE(config, len(MODALITIES))
        self.interact = ProgInteract(config)
        self.head = PredictionHead(config.d_model)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str):
        self._backend = normalize_backend(value)

    def encode(self, batch: Batch):
        """Per-modality hidden tokens (B, 3, T, d) and presence (B, 3)."""
        hidden, present = [], []
        for m in MODALITIES:
            mask = batch.mask(m)
            inputs = batch.text_ids if m == "text" and self.config.text_encoder == "bert" else batch.features(m)
            with nvtx_range(f"encoder/{m}"):
                hidden.append(self.encoders[m](inputs, mask, backend=self.backend))
            present.append(mask.any(dim=-1))
        return torch.stack(hidden, dim=1), torch.stack(present, dim=1)

    def absent_hidden(self, batch_size: int):
        """(B, 3, T, d): every modality's H for samples where it is absent (see
        ``ModalityEncoder.absent``); in eval mode it stands in for ``encode``'s output of a
        modality dropped from every sample."""
        return torch.stack([self.encoders[m].absent(batch_size, backend=self.backend) for m in MODALITIES], dim=1)

    def forward(self, batch: Batch) -> PRLFOutput:
        hidden, present = self.encode(batch)
        out = self.fuse(hidden, present)
        if self.training and self.config.lambda_anchor > 0:
            with nvtx_range("anchor_predictions"):
                out.anchor_predictions = anchor_predictions(self, hidden.detach(), present)
        return out

    def fuse(self, hidden, present, anchor: str | None = None, scores=None) -> PRLFOutput:
        """AMRE, ProgInteract and the head on encoder outputs: hidden (B, 3, T, d) and present
        (B, 3) bool as ``encode`` returns them. ``anchor`` ("adaptive", "text", "audio" or
        "vision") overrides the config's anchor rule for this call, so that several anchors can
        be compared on one encoding. ``scores`` (B, 3) replaces AMRE's reliability scores (see
        ``AMRE.forward``)."""
        if anchor is not None and anchor not in ANCHORS:
            raise ValueError(f"anchor={anchor!r}; expected one of {ANCHORS}")
        with nvtx_range("amre"):
            rel = self.amre(hidden.mean(dim=2), present, backend=self.backend, anchor=anchor, scores=scores)
        prediction, anchor_mean, stream_mean = self.predict(hidden, rel.weights, rel.order)
        return PRLFOutput(
            prediction=prediction, weights=rel.weights, dominant=rel.order[:, 0],
            confidence=rel.confidence, fisher=rel.fisher, logits=rel.logits, scores=rel.scores,
            order=rel.order, present=present, anchor_mean=anchor_mean, stream_mean=stream_mean,
        )

    def predict(self, hidden, weights, order):
        """ProgInteract and the head for AMRE's ``weights`` (B, 3) and ``order`` (B, 3): prediction
        (B,), the anchor's mean token (B, d) and the streams' (B, 2, d)."""
        with nvtx_range("proginteract"):
            anchor, streams = self.interact(hidden, weights, order, backend=self.backend)
        with nvtx_range("head"):
            anchor_mean, stream_mean = anchor.mean(dim=1), streams.mean(dim=2)
            features = torch.cat([anchor_mean, stream_mean[:, 0], stream_mean[:, 1]], dim=-1)
            return self.head(features), anchor_mean, stream_mean

    def loss(self, output: PRLFOutput, batch: Batch) -> dict:
        """docs/design.md §4.5: L1 task loss + λ_rec · recognition CE + λ_align · (1 − cos) alignment; in
        training with ``lambda_anchor > 0`` also + λ_anchor · the anchor loss (key ``anchor``;
        ``prlf_fast.model.reliability.anchor_loss``)."""
        if batch.label is None:
            raise ValueError("PRLF.loss needs batch.label")
        cfg = self.config
        # The task loss is taken in float32 even when the forward ran under autocast.
        task = (output.prediction.float() - batch.label.float()).abs().mean()
        present = output.present
        cls = recognition_class(batch.label, cfg.neutral_band)
        k = output.logits.shape[-1]
        ce = nn.functional.cross_entropy(
            output.logits.reshape(-1, k).float(), cls[:, None].expand(-1, 3).reshape(-1), reduction="none"
        ).view_as(present)
        rec = _masked_mean(ce, present)
        stream_present = torch.gather(present, 1, output.order[:, 1:])
        cos = nn.functional.cosine_similarity(
            output.stream_mean, output.anchor_mean.detach()[:, None, :].expand_as(output.stream_mean), dim=-1
        )
        align = _masked_mean(1.0 - cos, stream_present)
        total = task + cfg.lambda_rec * rec + cfg.lambda_align * align
        extra = {}
        if output.anchor_predictions is not None:
            extra["anchor"] = anchor_loss(output.scores, output.anchor_predictions, batch.label, cfg.tau,
                                          cfg.anchor_temperature)
            total = total + cfg.lambda_anchor * extra["anchor"]
        if not (cfg.gate_streams and cfg.n_interact > 0):
            # The weights reach no output: keep α, β in the graph with a zero gradient
            # (DistributedDataParallel and the optimizers expect a gradient for every parameter).
            total = total + 0.0 * output.weights.sum()
        return {"total": total, "task": task, "rec": rec, "align": align, **extra}


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask``; 0 (with a gradient path) when nothing is selected."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
