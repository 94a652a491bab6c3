"""The op layer: one module per op (``prlf_fast/ops/<op>.py``: schema, implementations,
registration, fake impl, the ``select`` that picks an implementation per backend, device and
dtype with the reasons, tests and benchmark), and ``registry`` (backends, ``select``,
``implementation``). The model calls one entry point per op, passing its backend; the op picks
the implementation."""
from prlf_fast.ops import attention, fisher, interact, pooling, registry  # noqa: F401  (registers the ops)
from prlf_fast.ops.attention import masked_attention, multi_head_attention, sdpa_masked_attention
from prlf_fast.ops.fisher import fisher_reliability
from prlf_fast.ops.interact import (
    PROJECTION_INDICES,
    WEIGHT_NAMES,
    fused_iteration,
    fused_stack,
    interact_iteration,
    interact_stack,
    runs_persistent,
    stack_weights,
)
from prlf_fast.ops.pooling import folded_pooling, query_pooling
from prlf_fast.ops.registry import BACKENDS, Choice, implementation, normalize_backend, select

OPS = registry.ops()

__all__ = [
    "BACKENDS", "OPS", "Choice", "implementation", "normalize_backend", "select",
    "masked_attention", "multi_head_attention", "sdpa_masked_attention", "query_pooling", "folded_pooling",
    "fisher_reliability", "interact_iteration", "interact_stack", "fused_iteration", "fused_stack",
    "runs_persistent", "stack_weights", "PROJECTION_INDICES", "WEIGHT_NAMES",
]
