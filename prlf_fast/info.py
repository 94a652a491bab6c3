"""``python -m prlf_fast.info`` (``prlf-fast info``): the build, the environment, and each op's
implementation; exit status 1, with the reason on stderr, when the build's CUDA kernels do not cover
a visible GPU (their op would run its reference instead, silently but for one warning)."""
from __future__ import annotations

import platform
import sys

import torch

import prlf_fast
from prlf_fast import _cuda_arch, _extension
from prlf_fast.ops import OPS, registry, select
from prlf_fast.ops.registry import triton_importable, triton_runs_on


def report() -> str:
    lines = [f"prlf_fast {prlf_fast.__version__}",
             f"python {platform.python_version()}  torch {torch.__version__}  "
             f"torch CUDA {torch.version.cuda or 'none'}  "
             f"CUDA devices {torch.cuda.device_count() if torch.cuda.is_available() else 0}"]
    if triton_importable():
        import triton

        lines.append(f"triton {triton.__version__} (runs on CPU: {triton_runs_on('cpu')}, "
                     f"TRITON_INTERPRET=1 enables it)")
    else:
        lines.append("triton: not installed")
    info, problem = _extension.build_info(), _extension.problem()
    if problem:
        lines.append(f"extension prlf_fast._C: unavailable ({problem}); rebuild: {_extension.REBUILD}")
    else:
        lines.append("extension prlf_fast._C: loaded")
        for key in ("torch", "torch_cuda", "cuda_built", "cuda_archs", "nvcc", "python", "cxx11_abi"):
            lines.append(f"  {key:<11} {info.get(key)!r}")
        lines.append(f"  cpu         {_extension.extension().cpu_features()}")
        lines.append(f"  ops         {', '.join(_extension.registered_ops()) or 'none'}")
    lines.append("")
    lines.append("Each op's implementation per backend and device (float32), and why not the others:")
    for op in OPS:
        lines.append(f"{op}")
        for backend in ("reference", "fast", "triton"):
            for dev in ("cpu", "cuda"):
                try:
                    cell = select(op, backend, dev).explain()
                except RuntimeError as exc:
                    cell = f"unavailable: {exc}"
                lines.append(f"  {backend:<10}{dev:<6}{cell}")
    return "\n".join(lines)


def problems() -> list[str]:
    """One line per visible GPU that the loaded extension's CUDA kernels do not cover (their
    ``cuda_archs``, as built), with the rebuild command; none without CUDA kernels or a GPU."""
    info = _extension.build_info()
    if _extension.extension() is None or not info.get("cuda_built") or not torch.cuda.is_available():
        return []
    archs = str(info.get("cuda_archs") or "")
    lines = []
    for index in range(torch.cuda.device_count()):
        major, minor = registry.cuda_capability(torch.device("cuda", index))
        if not _cuda_arch.covers(archs, (major, minor)):
            lines.append(f"the extension's CUDA kernels were built for {archs!r}, which does not cover cuda:{index} "
                         f"(sm_{major}{minor}); rebuild with TORCH_CUDA_ARCH_LIST={major}.{minor} {_extension.REBUILD}")
    return lines


def main() -> int:
    print(report())
    found = problems()
    for line in found:
        print(f"prlf_fast.info: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
