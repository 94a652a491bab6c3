"""Pure-PyTorch reference implementations of every op: what backend "reference" runs, the
fallback of every fast path, and the oracle of every parity test."""
from prlf_fast.reference.attention import masked_attention, multi_head_attention, zero_rows_without_keys
from prlf_fast.reference.fisher import (
    fisher_reliability,
    fisher_reliability_oracle,
    gelu_grad,
    recognition_logits,
)
from prlf_fast.reference.interact import interact_iteration
from prlf_fast.reference.pooling import query_pooling

__all__ = [
    "masked_attention", "multi_head_attention", "zero_rows_without_keys", "query_pooling", "interact_iteration",
    "fisher_reliability", "fisher_reliability_oracle", "gelu_grad", "recognition_logits",
]
