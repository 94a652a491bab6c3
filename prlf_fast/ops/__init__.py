"""Op entry points used by the model; each picks its implementation per backend and device."""
from prlf_fast.ops.attention import masked_attention, sdpa_masked_attention
from prlf_fast.ops.dispatch import BACKENDS, OPS, describe, implementation, normalize_backend
from prlf_fast.ops.fisher import fisher_reliability

__all__ = [
    "BACKENDS", "OPS", "describe", "implementation", "normalize_backend",
    "masked_attention", "sdpa_masked_attention", "fisher_reliability",
]
