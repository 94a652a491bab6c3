"""Batched AMRE reliability scoring (confidence, Fisher trace), dispatched per device.

The compiled op ``torch.ops.prlf_fast.fisher_reliability`` (csrc/, docs/fisher.md) gets a fake
kernel here, so it traces under torch.compile, and an autograd rule that refuses: the model
uses confidence and Fisher information as constants, so the op has no gradient.
"""
from __future__ import annotations

import torch

from prlf_fast import _extension, reference
from prlf_fast.ops.dispatch import implementation

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_inputs(z, w1, b1, w2, b2) -> None:
    """Raise ValueError unless z (B, M, d), w1 (M, d_h, d), b1 (M, d_h), w2 (M, K, d_h),
    b2 (M, K) share one floating dtype and one device."""
    named = {"z": z, "w1": w1, "b1": b1, "w2": w2, "b2": b2}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"fisher_reliability: {name} must be a tensor, got {type(t).__name__}")
    if z.dim() != 3:
        raise ValueError(f"fisher_reliability: z must be (B, M, d), got shape {tuple(z.shape)}")
    if w1.dim() != 3 or w2.dim() != 3:
        raise ValueError(f"fisher_reliability: w1 must be (M, d_h, d) and w2 (M, K, d_h), got "
                         f"{tuple(w1.shape)} and {tuple(w2.shape)}")
    m, d = z.shape[1], z.shape[2]
    h, k = w1.shape[1], w2.shape[1]
    expected = {"w1": (m, h, d), "b1": (m, h), "w2": (m, k, h), "b2": (m, k)}
    for name, shape in expected.items():
        if tuple(named[name].shape) != shape:
            raise ValueError(
                f"fisher_reliability: {name} must have shape {shape} for z {tuple(z.shape)} "
                f"(B, M, d) and w1 {tuple(w1.shape)} (M, d_h, d), w2 {tuple(w2.shape)} (M, K, d_h); "
                f"got {tuple(named[name].shape)}")
    if min(m, d, h, k) < 1:
        raise ValueError(f"fisher_reliability: M, d, d_h and K must be >= 1, got M={m}, d={d}, "
                         f"d_h={h}, K={k}")
    for name, t in named.items():
        if t.dtype != z.dtype:
            raise ValueError(f"fisher_reliability: {name} has dtype {t.dtype} but z has {z.dtype}; "
                             "all inputs need one dtype")
        if t.device != z.device:
            raise ValueError(f"fisher_reliability: {name} is on {t.device} but z is on {z.device}; "
                             "all inputs need one device")
    if z.dtype not in _DTYPES:
        raise ValueError(f"fisher_reliability: dtype {z.dtype} is not supported; use one of "
                         + ", ".join(str(t) for t in _DTYPES))


def fisher_reliability(z, w1, b1, w2, b2):
    """(confidence, fisher), each (B, M) in z's dtype: DESIGN §4.2 for every sample and modality.

    Uses the compiled op when the extension provides it for the tensors' device, the reference
    closed form otherwise. Not differentiable: call it on detached inputs.
    """
    check_inputs(z, w1, b1, w2, b2)
    if implementation("fisher_reliability", "fast", z.device.type) == "reference":
        return reference.fisher_reliability(z, w1, b1, w2, b2)
    return torch.ops.prlf_fast.fisher_reliability(z, w1, b1, w2, b2)


def _fake(z, w1, b1, w2, b2):
    check_inputs(z, w1, b1, w2, b2)
    return z.new_empty(z.shape[:2]), z.new_empty(z.shape[:2])


def _no_backward(ctx, grad_confidence, grad_fisher):
    raise RuntimeError(
        "prlf_fast::fisher_reliability has no gradient: AMRE uses confidence and Fisher "
        "information as constants. Call it on detached inputs (or under torch.no_grad()).")


if _extension.has_op("fisher_reliability"):
    torch.library.register_fake("prlf_fast::fisher_reliability")(_fake)
    torch.library.register_autograd("prlf_fast::fisher_reliability", _no_backward)
