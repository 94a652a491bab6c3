"""The PRLF model: our formulation of docs/design.md §4."""
from prlf_fast.model.amre import AMRE, Reliability
from prlf_fast.model.encoder import ModalityEncoder
from prlf_fast.model.interact import InteractLayer, ProgInteract
from prlf_fast.model.layers import EncoderLayer, FeedForward, MultiHeadAttention
from prlf_fast.model.prlf import PRLF, PRLFOutput, PredictionHead, recognition_class

__all__ = [
    "AMRE", "Reliability", "ModalityEncoder", "InteractLayer", "ProgInteract", "EncoderLayer",
    "FeedForward", "MultiHeadAttention", "PRLF", "PRLFOutput", "PredictionHead", "recognition_class",
]
