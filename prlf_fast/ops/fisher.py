"""Batched AMRE reliability scoring (confidence, Fisher trace), dispatched per device."""
from __future__ import annotations

from prlf_fast import reference
from prlf_fast.ops.dispatch import implementation


def fisher_reliability(z, w1, b1, w2, b2):
    """(confidence, fisher), each (B, M): DESIGN §4.2 for every sample and modality in one pass.

    Uses the compiled op when the extension provides it for the tensors' device, the
    reference closed form otherwise.
    """
    if implementation("fisher_reliability", "fast", z.device.type) == "reference":
        return reference.fisher_reliability(z, w1, b1, w2, b2)
    import torch

    return torch.ops.prlf_fast.fisher_reliability(z, w1, b1, w2, b2)
