"""AMRE reliability scoring (docs/design.md §4.2): confidence max_k p_k and the Fisher-information trace F
for every sample and modality in one pass. Not differentiable (AMRE uses both as constants).

Schema   ``prlf_fast::fisher_reliability(Tensor z, Tensor w1, Tensor b1, Tensor w2, Tensor b2)
         -> (Tensor confidence, Tensor fisher)``, declared in csrc/ops.cpp: z (B, M, d),
         w1 (M, d_h, d), b1 (M, d_h), w2 (M, K, d_h), b2 (M, K), one floating dtype and device;
         outputs (B, M) in z's dtype.
Implementations
  reference  prlf_fast.reference.fisher_reliability (closed form in torch ops)
  extension  the compiled op: csrc/cpu/fisher_cpu.cpp (threaded) and csrc/cuda/fisher_cuda.cu;
             their input checks are csrc/fisher_checks.h (TORCH_CHECK_VALUE: ValueError)
Registration  the C++ op registers with TORCH_LIBRARY; here its fake impl (``_fake``: the same
             checks with torch._check_value) and an autograd rule that refuses.
Selection  ``select`` below, from the inputs' device, dtype and ``kernel_limits`` (the CUDA
           kernel's limits on K and M);
           ``python -m prlf_fast.info`` prints it with the reasons.
Tests      tests/test_fisher_op.py, tests/test_extension.py, tests/test_op_contracts.py
Benchmark  bench/test_bench_fisher.py
"""
from __future__ import annotations

import torch

from prlf_fast import _cuda_arch, _extension, reference
from prlf_fast.ops import registry
from prlf_fast.ops.registry import Choice

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def kernel_limits(z, w2) -> tuple:
    """``(cannot, slow)`` of the compiled op for z (B, M, d) and w2 (M, K, d_h): on CUDA,
    ``cuda_limits``; the CPU kernel takes any size. No reasons for inputs of other ranks (the
    op's checks say why)."""
    if z.device.type != "cuda" or z.dim() != 3 or w2.dim() != 3:
        return registry.NO_LIMITS
    return cuda_limits(z.shape[1], w2.shape[1])


def cuda_limits(modalities, classes) -> tuple:
    """``kernel_limits`` of the CUDA kernel for M ``modalities`` and K ``classes``: its limits
    (csrc/cuda/fisher_limits.h), as the build info reports them."""
    info = _extension.build_info() or {}
    if classes > info.get("cuda_max_classes", classes):
        return f"K = {classes} classes > the CUDA kernel's {info['cuda_max_classes']}", None
    if modalities > info.get("cuda_max_modalities", modalities):
        return f"M = {modalities} modalities > the CUDA kernel's {info['cuda_max_modalities']}", None
    return registry.NO_LIMITS


def select(backend: str, device: torch.device, dtype: torch.dtype, limits: tuple) -> Choice:
    """The compiled op wherever the extension has it for ``device`` and the inputs' ``limits`` allow (every
    backend except "reference": there is no Triton version); else the reference, with the reason.
    A CUDA device whose compute capability the built kernels do not cover gets the reference and
    one warning (instead of "no kernel image is available" at the first call)."""
    if backend == "reference":
        return Choice("fisher_reliability", "reference", {"extension": "backend 'reference'"})
    if not _extension.has_op("fisher_reliability"):
        return Choice("fisher_reliability", "reference",
                      {"extension": f"prlf_fast._C unavailable ({_extension.problem()})"
                       if _extension.problem() else "prlf_fast._C does not register the op"})
    if device.type == "cuda":
        if not _extension.has_cuda_kernels():
            return Choice("fisher_reliability", "reference",
                          {"extension": "built without CUDA kernels "
                                        f"({(_extension.build_info() or {}).get('cuda_reason', 'no CUDA')})"})
        if torch.cuda.is_available():
            archs = str(_extension.build_info().get("cuda_archs") or "")
            capability = registry.cuda_capability(device)
            if not _cuda_arch.covers(archs, capability):
                reason = (f"its CUDA kernels were built for {archs}, which does not cover this GPU's "
                          f"sm_{capability[0]}{capability[1]}")
                registry.warn_once(("fisher_reliability", archs, capability),
                                   f"prlf_fast::fisher_reliability: {reason}; using the reference instead. "
                                   f"Rebuild with TORCH_CUDA_ARCH_LIST={capability[0]}.{capability[1]} "
                                   f"{_extension.REBUILD}")
                return Choice("fisher_reliability", "reference", {"extension": reason})
        if limits[0]:
            return Choice("fisher_reliability", "reference", {"extension": limits[0]})
    return Choice("fisher_reliability", "extension", {"reference": "slower"})


registry.register("fisher_reliability", select)


def fisher_reliability(z, w1, b1, w2, b2, backend: str = "fast"):
    """(confidence, fisher), each (B, M) in z's dtype (module docstring), by ``backend``'s choice
    for z's device. ValueError on bad inputs. Call it on detached inputs."""
    if registry.implementation("fisher_reliability", backend, z.device, z.dtype, kernel_limits(z, w2)) == "extension":
        return torch.ops.prlf_fast.fisher_reliability(z, w1, b1, w2, b2)
    _check(z, w1, b1, w2, b2)   # the reference would not say what is wrong
    return reference.fisher_reliability(z, w1, b1, w2, b2)


def _check(z, w1, b1, w2, b2):
    """Python side of csrc/fisher_checks.h: the fake impl's checks (and the reference fallback's)."""
    named = {"z": z, "w1": w1, "b1": b1, "w2": w2, "b2": b2}
    torch._check_value(z.dim() == 3, lambda: f"fisher_reliability: z must be (B, M, d), got shape {tuple(z.shape)}")
    torch._check_value(w1.dim() == 3 and w2.dim() == 3,
                       lambda: f"fisher_reliability: w1 must be (M, d_h, d) and w2 (M, K, d_h), got "
                               f"{tuple(w1.shape)} and {tuple(w2.shape)}")
    m, d, h, k = z.shape[1], z.shape[2], w1.shape[1], w2.shape[1]
    for name, shape in {"w1": (m, h, d), "b1": (m, h), "w2": (m, k, h), "b2": (m, k)}.items():
        torch._check_value(tuple(named[name].shape) == shape,
                           lambda: f"fisher_reliability: {name} must have shape {shape} for z (B, M, d) = "
                                   f"{tuple(z.shape)}, w1 (M, d_h, d) and w2 (M, K, d_h); "
                                   f"got {tuple(named[name].shape)}")
    torch._check_value(min(m, d, h, k) >= 1,
                       lambda: f"fisher_reliability: M, d, d_h and K must be >= 1, got M={m}, d={d}, d_h={h}, K={k}")
    for name, t in named.items():
        torch._check_value(t.dtype == z.dtype, lambda: f"fisher_reliability: {name} has dtype {t.dtype} but z has "
                                                       f"{z.dtype}; all inputs need one dtype")
        torch._check_value(t.device == z.device, lambda: f"fisher_reliability: {name} is on {t.device} but z is on "
                                                         f"{z.device}; all inputs need one device")
    torch._check_value(z.dtype in DTYPES, lambda: f"fisher_reliability: dtype {z.dtype} is not supported; use one "
                                                  "of float16, bfloat16, float32, float64")


def _fake(z, w1, b1, w2, b2):
    _check(z, w1, b1, w2, b2)
    return z.new_empty(z.shape[:2]), z.new_empty(z.shape[:2])


def _no_backward(ctx, grad_confidence, grad_fisher):
    raise RuntimeError(
        "prlf_fast::fisher_reliability has no gradient: AMRE uses confidence and Fisher "
        "information as constants. Call it on detached inputs (or under torch.no_grad()).")


if _extension.has_op("fisher_reliability"):
    torch.library.register_fake("prlf_fast::fisher_reliability")(_fake)
    torch.library.register_autograd("prlf_fast::fisher_reliability", _no_backward)
