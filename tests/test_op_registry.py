"""The op registry (prlf_fast/ops/registry.py): every op's choice per backend, device and dtype with
the reasons, the CUDA architectures a build targets (prlf_fast/_cuda_arch.py, as setup.py uses
it), and the fallback when the built CUDA kernels do not cover a GPU, decided on CPU with a faked
capability and build."""
import warnings

import pytest
import torch

from prlf_fast import _cuda_arch, _extension, ops
from prlf_fast.model.interact import InteractLayer
from prlf_fast.ops import registry


def test_every_op_has_a_module_and_a_choice_with_reasons():
    assert set(ops.OPS) == {"masked_attention", "query_pooling", "interact_iteration", "fisher_reliability"}
    for op in ops.OPS:
        for dev in ("cpu", "cuda"):
            choice = ops.select(op, "fast", dev)
            assert choice.op == op and choice.name not in choice.rejected
            assert choice.rejected and all(choice.rejected.values()), choice
            assert ops.implementation(op, "fast", dev) == choice.name
            assert ops.select(op, "reference", dev).name == "reference"


def test_dtype_is_part_of_the_choice():
    cuda = torch.device("cuda")
    assert ops.select("masked_attention", "fast", cuda, torch.bfloat16).name == "triton"
    float64 = ops.select("masked_attention", "fast", cuda, torch.float64)
    assert float64.name == "sdpa" and "float64" in float64.rejected["triton"]
    assert ops.select("interact_iteration", "fast", cuda, torch.float64).name == "reference"


def test_backend_triton_says_why_it_cannot_run(monkeypatch):
    monkeypatch.setattr(registry, "triton_unavailable", lambda device: "triton is not installed")
    with pytest.raises(RuntimeError, match="cannot run masked_attention on cuda tensors: triton is not installed"):
        ops.select("masked_attention", "triton", "cuda")
    choice = ops.select("masked_attention", "fast", "cuda")
    assert choice.name == "sdpa" and choice.rejected["triton"] == "triton is not installed"
    assert ops.select("query_pooling", "fast", "cuda").name == "folded"
    assert ops.select("interact_iteration", "fast", "cuda").name == "reference"


def test_unknown_op_and_backend_are_errors():
    with pytest.raises(ValueError, match="unknown op"):
        ops.select("nope", "fast", "cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        ops.implementation("masked_attention", "fastest", "cpu")


@pytest.mark.parametrize("env, caps, expected", [
    ({"PRLF_FAST_CUDA_ARCHS": "86"}, [(9, 0)], "86"),
    ({"TORCH_CUDA_ARCH_LIST": "8.0;9.0+PTX"}, [(9, 0)], "80-real;90"),
    ({"TORCH_CUDA_ARCH_LIST": "7.5 8.6"}, [], "75-real;86-real"),
    ({"TORCH_CUDA_ARCH_LIST": "Ampere;9.0a"}, [], "80-real;86-real;90a-real"),
    ({}, [(8, 0), (9, 0), (8, 0)], "80-real;90"),
    ({}, [(8, 6)], "86"),
    ({}, [], _cuda_arch.FALLBACK_ARCHS),
])
def test_default_architectures_follow_pytorch_conventions(env, caps, expected):
    assert _cuda_arch.default_archs(env, caps)[0] == expected


def test_unreadable_arch_list_is_an_error():
    with pytest.raises(ValueError, match="TORCH_CUDA_ARCH_LIST entry 'sm_80'"):
        _cuda_arch.from_torch_arch_list("sm_80")


@pytest.mark.parametrize("archs, capability, covered", [
    ("90", (9, 0), True),
    ("90", (8, 0), False),          # an A100 with the old default build: "no kernel image"
    ("90", (10, 0), True),          # PTX, JIT-compiled for newer GPUs
    ("90-real", (10, 0), False),
    ("80-real;90", (8, 6), True),   # machine code runs on the same major, newer minor
    ("86-real", (8, 0), False),
    ("90a-real", (9, 0), True),
    ("90a", (10, 0), False),        # arch-specific code and PTX run on sm_90 only
    ("80-virtual", (9, 0), True),
    ("80,90", (8, 9), True),        # the extension's build info separates with commas
    ("", (9, 0), False),
])
def test_covers(archs, capability, covered):
    assert _cuda_arch.covers(archs, capability) is covered


@pytest.fixture
def fake_cuda_build(monkeypatch):
    """An extension that registers the op with CUDA kernels for sm_90, and a visible GPU whose
    capability the test sets."""
    capability = {"value": (9, 0)}
    monkeypatch.setattr(_extension, "has_op", lambda name: True)
    monkeypatch.setattr(_extension, "has_cuda_kernels", lambda: True)
    monkeypatch.setattr(_extension, "build_info", lambda: {"cuda_built": True, "cuda_archs": "90"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(registry, "cuda_capability", lambda device: capability["value"])
    monkeypatch.setattr(registry, "_warned", set())
    return capability


def test_uncovered_gpu_gets_the_reference_and_one_warning(fake_cuda_build):
    assert ops.implementation("fisher_reliability", "fast", "cuda") == "extension"
    fake_cuda_build["value"] = (8, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choices = [ops.select("fisher_reliability", "fast", "cuda:0") for _ in range(3)]
    assert {c.name for c in choices} == {"reference"}
    assert "does not cover this GPU's sm_80" in choices[0].rejected["extension"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "TORCH_CUDA_ARCH_LIST=8.0" in messages[0], messages


def test_covered_newer_minor_uses_the_extension(fake_cuda_build, monkeypatch):
    monkeypatch.setattr(_extension, "build_info", lambda: {"cuda_built": True, "cuda_archs": "80-real,90"})
    fake_cuda_build["value"] = (8, 6)
    assert ops.select("fisher_reliability", "fast", "cuda").name == "extension"


@pytest.mark.parametrize("archs, capability, status", [
    ("90", (9, 0), 0),
    ("90", (8, 0), 1),
    ("OFF", (9, 0), 1),          # what a build recorded when Torch's CMake had reset the architectures
    ("80-real,90", (8, 6), 0),
])
def test_info_fails_when_the_built_kernels_do_not_cover_a_visible_gpu(fake_cuda_build, monkeypatch, capsys,
                                                                      archs, capability, status):
    from prlf_fast import info
    from prlf_fast.cli import main

    monkeypatch.setattr(_extension, "extension", lambda: object())
    monkeypatch.setattr(_extension, "build_info", lambda: {"cuda_built": True, "cuda_archs": archs})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(info, "report", lambda: "the report")
    fake_cuda_build["value"] = capability
    assert main(["info"]) == status
    out, err = capsys.readouterr()
    assert out == "the report\n"
    if status:
        major, minor = capability
        for index in (0, 1):
            assert (f"built for {archs!r}, which does not cover cuda:{index} (sm_{major}{minor}); "
                    f"rebuild with TORCH_CUDA_ARCH_LIST={major}.{minor}") in err
    else:
        assert err == ""


@pytest.mark.parametrize("triton_version, numpy_version, refused", [
    ("3.6.0", "2.4.1", True),      # torch 2.11's Triton: int() of a 1-element array, which numpy 2.4 refuses
    ("3.6.0", "2.3.5", False),
    ("3.7.1", "2.4.1", False),
    ("3.10.0", "2.4.0", False),
])
def test_the_interpreter_of_triton_3_6_needs_numpy_below_2_4(monkeypatch, triton_version, numpy_version, refused):
    triton = pytest.importorskip("triton")
    import numpy

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(triton, "__version__", triton_version)
    monkeypatch.setattr(numpy, "__version__", numpy_version)
    why = registry.triton_unavailable(torch.device("cpu"))
    assert (why is not None) is refused, why
    if refused:
        assert f"triton {triton_version} needs numpy < 2.4, not {numpy_version}" in why
        assert ops.select("masked_attention", "fast", "cpu").name == "sdpa"


# Selection from the inputs: what their sizes say against the fast kernels (``kernel_limits``), on a
# CUDA device as the selection sees it (the kernels need not run for the decision).
def test_fast_attention_falls_back_to_sdpa_outside_the_kernels_limits():
    from prlf_fast.ops import attention

    cuda = torch.device("cuda")
    fits = attention.head_limits(64, 8, 8, 500, 16)
    assert fits == (None, None) and ops.select("masked_attention", "fast", cuda, torch.bfloat16, fits).name == "triton"
    wide = attention.head_limits(64, 8, 8, 500, 128)        # runs, but spills registers
    choice = ops.select("masked_attention", "fast", cuda, torch.bfloat16, wide)
    assert choice.name == "sdpa" and "head dim 128 > 64" in choice.rejected["triton"]
    assert ops.select("masked_attention", "triton", cuda, torch.bfloat16, wide).name == "triton"   # forced: it runs
    long = attention.head_limits(1, 8, 8, 5_000_000, 16)     # the backward's grid
    choice = ops.select("masked_attention", "fast", cuda, torch.bfloat16, long)
    assert choice.name == "sdpa" and "axis-1 limit (65535)" in choice.rejected["triton"]
    with pytest.raises(RuntimeError, match="cannot run masked_attention on cuda tensors: .*axis-1"):
        ops.select("masked_attention", "triton", cuda, torch.bfloat16, long)
    huge = attention.head_limits(1, 64, 600_000, 8, 64)     # 32-bit offsets within a sample
    assert "2³¹" in huge[0]
    assert attention.head_limits(2**28, 8, 8, 8, 16)[0].startswith("B·H")


def test_pooling_follows_attention_for_the_same_sizes():
    from prlf_fast.ops import pooling

    queries, frames = torch.zeros(8, 1024), torch.zeros(2, 50, 1024)    # 8 heads of 128
    limits = pooling.kernel_limits(queries, frames, 8)
    choice = ops.select("query_pooling", "fast", "cuda", torch.bfloat16, limits)
    assert choice.name == "folded" and "head dim 128" in choice.rejected["triton"]
    assert ops.select("query_pooling", "fast", "cuda", torch.bfloat16,
                      pooling.kernel_limits(queries[:, :128], frames[..., :128], 8)).name == "triton"


@pytest.mark.parametrize("tokens, d_model, reason", [(8, 128, None), (4, 64, None),
                                                     (8, 256, "d_model 256 > 128"), (16, 128, "T = 16 tokens > 8")])
def test_fast_interact_uses_the_fused_kernel_only_for_the_sizes_it_is_built_for(tokens, d_model, reason):
    from prlf_fast.ops import interact

    limits = interact.kernel_limits(torch.zeros(2, 2, tokens, d_model))
    choice = ops.select("interact_iteration", "fast", "cuda", torch.bfloat16, limits)
    if reason is None:
        assert limits == (None, None) and choice.name == "triton"
    else:
        assert choice.name == "reference" and reason in choice.rejected["triton"]
    assert ops.select("interact_iteration", "triton", "cuda", torch.bfloat16, limits).name == "triton"


def test_fisher_on_cuda_falls_back_where_the_kernel_refuses_the_sizes(fake_cuda_build, monkeypatch):
    from prlf_fast.ops import fisher

    monkeypatch.setattr(_extension, "build_info", lambda: {"cuda_built": True, "cuda_archs": "90",
                                                           "cuda_max_classes": 32, "cuda_max_modalities": 65535})
    assert ops.select("fisher_reliability", "fast", "cuda", limits=fisher.cuda_limits(3, 32)).name == "extension"
    for limits, reason in ((fisher.cuda_limits(3, 33), "K = 33 classes > the CUDA kernel's 32"),
                           (fisher.cuda_limits(70000, 2), "M = 70000 modalities > the CUDA kernel's 65535")):
        choice = ops.select("fisher_reliability", "fast", "cuda", limits=limits)
        assert choice.name == "reference" and choice.rejected["extension"] == reason
    assert fisher.kernel_limits(torch.zeros(2, 3, 4), torch.zeros(3, 40, 5)) == (None, None)  # CPU: any size


def test_the_build_info_reports_the_cuda_kernels_limits():
    """csrc/cuda/fisher_limits.h, as the compiled extension reports it (what ``cuda_limits`` reads)."""
    import pathlib
    import re

    if _extension.problem():
        pytest.skip(f"prlf_fast._C unavailable: {_extension.problem()}")
    header = (pathlib.Path(__file__).parents[1] / "csrc/cuda/fisher_limits.h").read_text()
    declared = {name: int(value) for name, value in re.findall(r"constexpr int (k\w+) = (\d+);", header)}
    info = _extension.build_info()
    assert (info["cuda_max_classes"], info["cuda_max_modalities"]) == (declared["kMaxClasses"],
                                                                      declared["kMaxModalities"])


@pytest.mark.parametrize("op", ["masked_attention", "interact_iteration", "query_pooling"])
def test_each_op_passes_its_inputs_sizes_to_the_selection(op, monkeypatch):
    """The op entry points decide from the tensors they get: with the kernels' limits lowered below
    these small inputs, the selection sees the reason (and forced Triton refuses, or still runs)."""
    from prlf_fast.kernels import attention as attention_kernel
    from prlf_fast.kernels import interact as interact_kernel

    seen = []
    select = registry._SELECTORS[op]
    monkeypatch.setitem(registry._SELECTORS, op, lambda *args: seen.append(args[-1]) or select(*args))
    monkeypatch.setattr(attention_kernel, "MAX_HEAD_DIM", 4)
    monkeypatch.setattr(interact_kernel, "MAX_D_MODEL", 8)
    d, heads = 16, 2
    if op == "masked_attention":
        q = torch.randn(2, heads, 3, d // heads)
        ops.masked_attention(q, q, q, None, backend="fast")
        assert "head dim 8 > 4" in seen[-1][1]
    elif op == "query_pooling":
        weights = [torch.randn(d, d), torch.randn(d)] * 4
        ops.query_pooling(torch.randn(4, d), torch.randn(2, 5, d), None, weights, heads, backend="fast")
        assert "head dim 8 > 4" in seen[-1][1]
    else:
        layer = InteractLayer(d, heads, 2 * d, 0.0)
        streams, anchor = torch.randn(2, 2, 3, d), torch.randn(2, 3, d)
        ops.interact_iteration(streams, anchor, torch.rand(2, 2), layer.fused_weights(), heads, backend="fast")
        assert "d_model 16 > 8" in seen[-1][1]
