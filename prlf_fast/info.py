"""``python -m prlf_fast.info``: the build, the environment, and each op's implementation."""
from __future__ import annotations

import platform
import sys

import torch

import prlf_fast
from prlf_fast import _extension
from prlf_fast.ops import OPS, select
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


if __name__ == "__main__":
    print(report())
    sys.exit(0)
