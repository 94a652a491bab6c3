"""The op layer: one module per op (``prlf_fast/ops/<op>.py``: schema, implementations,
registration, fake impl, the ``select`` that picks an implementation per backend, device and
dtype with the reasons, tests and benchmark), and ``registry`` (backends, ``select``,
``implementation``, ``describe``). The model calls only these entry points."""
from prlf_fast.ops import attention, fisher, interact, pooling, registry  # noqa: F401  (registers the ops)
from prlf_fast.ops.attention import masked_attention, sdpa_masked_attention
from prlf_fast.ops.fisher import fisher_reliability
from prlf_fast.ops.interact import PROJECTION_INDICES, WEIGHT_NAMES, interact_iteration, interact_stack
from prlf_fast.ops.registry import BACKENDS, Choice, describe, implementation, normalize_backend, select

OPS = registry.ops()

__all__ = [
    "BACKENDS", "OPS", "Choice", "describe", "implementation", "normalize_backend", "select",
    "masked_attention", "sdpa_masked_attention", "fisher_reliability", "interact_iteration", "interact_stack",
    "PROJECTION_INDICES", "WEIGHT_NAMES",
]
