"""One ProgInteract iteration (docs/design.md §4.3), fused: S1 = S + g ⊙ (CrossAttn(LN_s(S), LN_a(A)) Wo + bo),
S2 = S1 + FFN(LN_f(S1)), with nn.Dropout on both branches in training.

Schema   streams (B, 2, T, d), anchor (B, T, d), gates (B, 2) in one dtype; ``weights`` in the order
         of ``WEIGHT_NAMES`` (nn.Linear layout), the projections in one dtype (the activations'
         or a narrower one, as under autocast); d divisible by n_heads.
Implementations
  reference  prlf_fast.reference.interact_iteration (plain PyTorch functions; the masked attention
             inside runs as the backend picks it)
  triton     kernels/interact.py, registered here as ``prlf_fast_triton::interact_iteration_fwd``
             and ``_bwd`` (autograd) and ``interact_stack_fwd`` (all N iterations in one launch,
             inference); ``triton_op`` bodies are also the fake impls, so their checks are the
             ops' only input checks
Selection  ``select`` below, from the inputs' device, dtype and ``kernel_limits`` (the sizes the
           kernels' tiling is built for: ``kernels.interact.untuned``); ``python -m prlf_fast.info`` prints
           it with the reasons.
Tests      tests/test_triton_interact.py, tests/test_model_triton.py, tests/test_op_contracts.py
Benchmark  bench/test_bench_interact.py
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional

import torch
from torch.library import triton_op

from prlf_fast import reference
from prlf_fast.ops import registry
from prlf_fast.ops.attention import masked_attention
from prlf_fast.ops.registry import Choice

# The fused weights, in this order (nn.Linear layout: weight (out, in)).
WEIGHT_NAMES = ("ln_stream.weight", "ln_stream.bias", "ln_anchor.weight", "ln_anchor.bias",
                "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
                "out.weight", "out.bias", "ln_ffn.weight", "ln_ffn.bias",
                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
PROJECTION_INDICES = (4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17)   # the nn.Linear weights and biases
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def kernel_limits(streams) -> tuple:
    """``(cannot, slow)`` of the fused kernels for streams (B, 2, T, d): they launch for any
    size; ``kernels.interact.untuned`` says where their tiling is slow. No reasons where Triton is
    not installed or ``streams`` is not 4-d (the checks say why)."""
    if streams.dim() != 4 or not registry.triton_importable():
        return registry.NO_LIMITS
    from prlf_fast.kernels import interact as kernel

    return None, kernel.untuned(streams.shape[2], streams.shape[3])


def select(backend: str, device: torch.device, dtype: torch.dtype, limits: tuple) -> Choice:
    if backend == "reference":
        return Choice("interact_iteration", "reference", {"triton": "backend 'reference'"})
    no_triton = registry.triton_unavailable(device)
    if backend == "triton":
        if no_triton or limits[0]:
            raise registry.refuse("interact_iteration", device, no_triton or limits[0])
        return Choice("interact_iteration", "triton", {"reference": "backend 'triton'"})
    if no_triton is None and dtype not in TRITON_DTYPES:
        no_triton = f"the kernel takes float32, float16 or bfloat16, not {dtype}"
    no_triton = no_triton or limits[1]
    if no_triton is None and device.type == "cuda":
        return Choice("interact_iteration", "triton", {"reference": "17 launches forward, 34 backward"})
    return Choice("interact_iteration", "reference",
                  {"triton": no_triton or "the interpreter is for tests: eager is faster on the CPU"})


registry.register("interact_iteration", select)


def _check(streams, anchor, gates, weights, n_heads, stacked: bool):
    """The ops' input checks (run eagerly and on fake tensors); ValueError."""
    name = "interact_stack" if stacked else "interact_iteration"
    torch._check_value(streams.dim() == 4 and streams.shape[1] == 2 and anchor.dim() == 3 and gates.dim() == 2
                       and anchor.shape == (streams.shape[0], streams.shape[2], streams.shape[3])
                       and gates.shape == (streams.shape[0], 2),
                       lambda: f"{name}: expected streams (B, 2, T, d), anchor (B, T, d), gates (B, 2); "
                               f"got {tuple(streams.shape)}, {tuple(anchor.shape)}, {tuple(gates.shape)}")
    torch._check_value(len(weights) == len(WEIGHT_NAMES),
                       lambda: f"{name}: expected {len(WEIGHT_NAMES)} weights ({', '.join(WEIGHT_NAMES)}); "
                               f"got {len(weights)}")
    torch._check_value(streams.shape[3] % n_heads == 0,
                       lambda: f"{name}: d={streams.shape[3]} is not divisible by n_heads={n_heads}")
    torch._check_value(streams.dtype in TRITON_DTYPES,
                       lambda: f"{name}: the kernel takes float32, float16 or bfloat16, not {streams.dtype}")
    for group, tensors in (("streams, anchor and gates", (streams, anchor, gates)),
                           ("the projection weights and biases", [weights[i] for i in PROJECTION_INDICES])):
        dtypes = {t.dtype for t in tensors}
        torch._check_value(len(dtypes) == 1,
                           lambda: f"{name}: {group} must share one dtype; got {sorted(map(str, dtypes))}")
    if stacked:
        torch._check_value(all(w.shape[0] == weights[0].shape[0] for w in weights),
                           lambda: f"{name}: the stacked weights disagree on the number of iterations: "
                                   f"{[tuple(w.shape) for w in weights]}")


@triton_op("prlf_fast_triton::interact_iteration_fwd", mutates_args=())
def interact_iteration_fwd(streams: torch.Tensor, anchor: torch.Tensor, gates: torch.Tensor,
                           weights: list[torch.Tensor], keep_attn: Optional[torch.Tensor],
                           keep_ffn: Optional[torch.Tensor], keep_scale: float, n_heads: int,
                           eps: float) -> torch.Tensor:
    """Updated streams (B, 2, T, d) after one iteration; keep masks uint8 (B, 2, T, d) or None."""
    _check(streams, anchor, gates, weights, n_heads, stacked=False)
    from prlf_fast.kernels import interact

    return interact.forward(streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps, 1)


@triton_op("prlf_fast_triton::interact_stack_fwd", mutates_args=())
def interact_stack_fwd(streams: torch.Tensor, anchor: torch.Tensor, gates: torch.Tensor,
                       stacked_weights: list[torch.Tensor], n_heads: int, eps: float) -> torch.Tensor:
    """Streams after all N iterations in one launch (inference: no dropout, no autograd)."""
    _check(streams, anchor, gates, stacked_weights, n_heads, stacked=True)
    from prlf_fast.kernels import interact

    return interact.forward(streams, anchor, gates, stacked_weights, None, None, 1.0, n_heads, eps,
                            stacked_weights[0].shape[0])


@triton_op("prlf_fast_triton::interact_iteration_bwd", mutates_args=())
def interact_iteration_bwd(grad_out: torch.Tensor, streams: torch.Tensor, anchor: torch.Tensor,
                           gates: torch.Tensor, weights: list[torch.Tensor], keep_attn: Optional[torch.Tensor],
                           keep_ffn: Optional[torch.Tensor], keep_scale: float, n_heads: int,
                           eps: float) -> list[torch.Tensor]:
    """The gradients listed by ``kernels.interact.backward``; the inputs are the forward's."""
    from prlf_fast.kernels import interact

    return interact.backward(grad_out, streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale,
                             n_heads, eps)


def _setup_context(ctx, inputs, output):
    streams, anchor, gates, weights, keep_attn, keep_ffn, keep_scale, n_heads, eps = inputs
    ctx.save_for_backward(streams, anchor, gates, keep_attn, keep_ffn, *weights)
    ctx.keep_scale, ctx.n_heads, ctx.eps = keep_scale, n_heads, eps


def _backward(ctx, grad_out):
    streams, anchor, gates, keep_attn, keep_ffn, *weights = ctx.saved_tensors
    d = streams.shape[-1]
    ds, da, dg, d_vec, d_wq, d_wkv, d_wo, d_w1, d_w2 = interact_iteration_bwd(
        grad_out, streams, anchor, gates, weights, keep_attn, keep_ffn, ctx.keep_scale, ctx.n_heads, ctx.eps)
    d_bq, d_bk, d_bv, d_bo, d_b2, d_lsw, d_lsb, d_law, d_lab, d_lfw, d_lfb = d_vec[: 11 * d].split(d)
    d_wk, d_wv = d_wkv.split(d)
    d_weights = [d_lsw, d_lsb, d_law, d_lab, d_wq, d_bq, d_wk, d_bk, d_wv, d_bv, d_wo, d_bo,
                 d_lfw, d_lfb, d_w1, d_vec[11 * d:], d_w2, d_b2]
    d_weights = [g.to(w.dtype) for g, w in zip(d_weights, weights)]
    return ds, da, dg, d_weights, None, None, None, None, None


interact_iteration_fwd.register_autograd(_backward, setup_context=_setup_context)
registry.opaque_when_interpreted(interact_iteration_fwd, interact_stack_fwd, interact_iteration_bwd)


def draw_keep_masks(streams, p: float):
    """Dropout keep masks (uint8, 1 = keep with probability 1 − p) for the attention branch and the
    FFN branch, drawn from torch's generator for ``streams``' device."""
    return tuple(torch.empty(streams.shape, dtype=torch.uint8, device=streams.device).bernoulli_(1.0 - p)
                 for _ in range(2))


def fused_iteration(streams, anchor, gates, weights: Sequence[torch.Tensor], n_heads: int, eps: float = 1e-5,
                    dropout: float = 0.0):
    """One ProgInteract iteration through the Triton kernels, differentiable: streams (B, 2, T, d),
    anchor (B, T, d), gates (B, 2), ``weights`` in the order of ``WEIGHT_NAMES``, all on one
    device (the module docstring's dtype rules; the LayerNorm affines may be any float dtype).
    ``dropout``: probability of nn.Dropout on each residual branch's output (the attention
    branch before the gate, the FFN branch); pass 0 in eval mode. ValueError on bad inputs."""
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"interact_iteration: dropout={dropout} must be in [0, 1]")
    keep_attn, keep_ffn = draw_keep_masks(streams, dropout) if dropout > 0 else (None, None)
    keep_scale = 1.0 / (1.0 - dropout) if dropout < 1 else 0.0
    return interact_iteration_fwd(streams.contiguous(), anchor.contiguous(), gates.contiguous(),
                                  [w.contiguous() for w in weights], keep_attn, keep_ffn, keep_scale, n_heads, eps)


def fused_stack(streams, anchor, gates, stacked_weights: Sequence[torch.Tensor], n_heads: int,
                eps: float = 1e-5):
    """All N ProgInteract iterations in one persistent launch, for inference (no dropout, not
    differentiable): ``stacked_weights[i]`` stacks ``WEIGHT_NAMES[i]`` of the N iterations along a
    new leading axis. Same inputs and dtype rules as ``fused_iteration`` otherwise."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (streams, anchor, gates, *stacked_weights)):
        raise ValueError("interact_stack is not differentiable: call it under torch.no_grad() or "
                         "torch.inference_mode(), or use fused_iteration per iteration")
    return interact_stack_fwd(streams.contiguous(), anchor.contiguous(), gates.contiguous(),
                              [w.contiguous() for w in stacked_weights], n_heads, eps)


def autocast_weights(weights: Sequence[torch.Tensor], device_type: str) -> list:
    """``weights`` with the projections in the autocast dtype under autocast, as nn.Linear would."""
    if not torch.is_autocast_enabled(device_type):
        return list(weights)
    low = torch.get_autocast_dtype(device_type)
    return [w.to(low) if i in PROJECTION_INDICES else w for i, w in enumerate(weights)]


def interact_iteration(streams, anchor, gates, weights: Sequence[torch.Tensor], n_heads: int, eps: float = 1e-5,
                       dropout: float = 0.0, training: bool = False, backend: str = "fast"):
    """One ProgInteract iteration under ``backend`` (module docstring), differentiable: the fused
    Triton iteration (``fused_iteration``), or ``reference.interact_iteration`` with this
    backend's masked attention. Dropout ``dropout`` on both branches when ``training``."""
    if registry.implementation("interact_iteration", backend, streams.device, streams.dtype,
                               kernel_limits(streams)) == "triton":
        return fused_iteration(streams, anchor, gates.to(streams.dtype), autocast_weights(weights, streams.device.type),
                               n_heads, eps, dropout=dropout if training else 0.0)
    return reference.interact_iteration(streams, anchor, gates, weights, n_heads, eps, dropout, training,
                                        functools.partial(masked_attention, backend=backend))


def runs_persistent(backend: str, streams, anchor, gates, layer_weights: Sequence, dropout: float,
                    training: bool) -> bool:
    """Whether ``interact_stack`` runs all iterations in one launch: the fused path, for inference
    (no active dropout, no gradient), outside torch.compile."""
    if not layer_weights or torch.compiler.is_compiling():
        return False
    if registry.implementation("interact_iteration", backend, streams.device, streams.dtype,
                               kernel_limits(streams)) != "triton":
        return False
    if training and dropout > 0:
        return False
    tensors = (streams, anchor, gates, *(w for ws in layer_weights for w in ws))
    return not (torch.is_grad_enabled() and any(x.requires_grad for x in tensors))


def interact_stack(streams, anchor, gates, layer_weights: Sequence, n_heads: int, eps: float = 1e-5,
                   dropout: float = 0.0, training: bool = False, backend: str = "fast", stacked=None):
    """All N = len(``layer_weights``) iterations (each a ``WEIGHT_NAMES`` list) under ``backend``:
    one persistent launch (``fused_stack``) where ``runs_persistent``, with ``stacked()`` (default:
    stacking ``layer_weights`` now) giving the stacked weights; else ``interact_iteration`` per
    iteration."""
    if runs_persistent(backend, streams, anchor, gates, layer_weights, dropout, training):
        weights = stacked() if stacked is not None else stack_weights(layer_weights, streams.device.type)
        return fused_stack(streams, anchor, gates.to(streams.dtype), weights, n_heads, eps)
    for weights in layer_weights:
        streams = interact_iteration(streams, anchor, gates, weights, n_heads, eps, dropout, training, backend)
    return streams


def stack_weights(layer_weights: Sequence, device_type: str) -> list:
    """Each weight stacked over the iterations, the projections in the autocast dtype under
    autocast (``fused_stack``'s layout); detached."""
    with torch.no_grad():
        return autocast_weights([torch.stack(ws) for ws in zip(*layer_weights)], device_type)
