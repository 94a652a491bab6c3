"""Pure-PyTorch reference implementations of every op: what backend "reference" runs, the
fallback of every fast path, and the oracle of every parity test."""
from prlf_fast.reference.attention import masked_attention
from prlf_fast.reference.fisher import (
    fisher_reliability,
    fisher_reliability_oracle,
    gelu_grad,
    recognition_logits,
)

__all__ = [
    "masked_attention", "fisher_reliability", "fisher_reliability_oracle", "gelu_grad",
    "recognition_logits",
]
