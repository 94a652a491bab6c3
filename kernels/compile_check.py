"""Compile every Triton kernel for a CUDA architecture without a GPU, at the model's launch
configuration, and report registers and spills (ptxas -v). Catches what the interpreter cannot:
type and layout errors of the real compiler.

    TRITON_INTERPRET= python -m prlf_fast.kernels.compile_check [--arch 90] [--dtype fp32 bf16]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from prlf_fast.kernels import attention, interact
from prlf_fast.kernels.common import dot_precision, next_block

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "autocast": torch.bfloat16}
ACTIVATIONS = ("S", "A", "G", "OUT", "DS2", "DS", "DA")   # float32 under autocast, weights bf16
# Model sizes (DESIGN §4, MOSEI): d 128, 8 heads, T 8, FFN 256, 3 iterations.
D_MODEL, HEADS, TOKENS, FFN, N_ITERATIONS = 128, 8, 8, 256, 3


def _signature(fn, pointers: dict, scalars: dict, constexprs: dict) -> dict:
    """Argument types: upper-case names are pointers (``pointers`` maps a name to its element type,
    default under "*") unless ``scalars`` types them ("i32"/"fp32"); other names are int32."""
    missing = [p.name for p in fn.params if p.is_constexpr and p.name not in constexprs]
    if missing:
        raise ValueError(f"compile_check: no value for constexpr {missing} of {fn.__name__}")
    return {name: "constexpr" if name in constexprs else
            f"*{pointers.get(name, pointers['*'])}" if name.isupper() and name not in scalars else
            scalars.get(name, "i32") for name in fn.arg_names}


def _attention_specs(dt: str):
    meta = dict(BLOCK_M=attention.BLOCK_M, BLOCK_N=attention.BLOCK_N, BLOCK_D=next_block(D_MODEL // HEADS),
                PREC=dot_precision(DTYPES[dt]))
    pointers = {"*": "bf16" if dt == "autocast" else dt, "VALID": "i1", "LSE": "fp32"}
    scalars = {"H": "i32", "scale": "fp32", "scale2": "fp32"}
    return [(kernel, pointers, scalars, dict(meta, HAS_MASK=True), 4)
            for kernel in (attention._fwd_kernel, attention._bwd_kernel)]


def _interact_specs(dt: str):
    streams = torch.empty(64, 2, TOKENS, D_MODEL, device="meta", dtype=DTYPES[dt])
    weights = [torch.empty(1, device="meta", dtype=DTYPES[dt])] * 18
    meta = interact._launch_config(streams, weights, HEADS)
    warps = meta.pop("num_warps")
    meta["BF"] = min(interact.FFN_CHUNK, next_block(FFN))
    scalars = {n: "i32" for n in ("B", "T", "D", "H", "F")} | {"Dh": "i32", "eps": "fp32", "scale": "fp32"}
    weight_type = "bf16" if dt == "autocast" else dt
    pointers = {"*": weight_type, "KEEP_ATTN": "u8", "KEEP_FFN": "u8", "DG": "fp32", "PART": "fp32"}
    if dt == "autocast":
        pointers.update(dict.fromkeys(ACTIVATIONS, "fp32"))
    fwd = (interact._iteration_fwd_kernel, dict(meta, N_LAYERS=1))
    bwd = (interact._iteration_bwd_kernel, dict(meta, BG=triton.next_power_of_2(2 * meta["SB"])))
    training = [(kernel, pointers, scalars, dict(m, DROPOUT=dropout), warps)
                for dropout in (False, True) for kernel, m in (fwd, bwd)]
    persistent = (fwd[0], pointers, scalars, dict(meta, N_LAYERS=N_ITERATIONS, DROPOUT=False), warps)
    return training + [persistent]


def _ptxas_report(ptx: str, arch: int) -> str:
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    suffix = "a" if arch >= 90 else ""
    out = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}{suffix}", f.name, "-o", os.devnull],
                         capture_output=True, text=True, check=True)
    os.unlink(f.name)
    return " ".join(line.split(":", 1)[-1].strip() for line in out.stderr.splitlines()
                    if "registers" in line or "spill" in line)


def check(arch: int, dtypes) -> list[str]:
    """One line per compiled kernel: name, dtype, warps, ptxas register and spill report."""
    lines = []
    for dt in dtypes:
        for fn, pointers, scalars, meta, warps in _attention_specs(dt) + _interact_specs(dt):
            src = ASTSource(fn=fn, signature=_signature(fn, pointers, scalars, meta),
                            constexprs={(fn.arg_names.index(k),): v for k, v in meta.items()})
            kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=warps))
            layers = meta.get("N_LAYERS", 1)
            variant = "dropout" if meta.get("DROPOUT") else f"N={layers}" if layers > 1 else ""
            lines.append(f"{fn.__name__:22s} {dt:8s} {variant:8s} warps={warps}  "
                         f"{_ptxas_report(kernel.asm['ptx'], arch)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80 or 90")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16", "autocast"],
                        help="autocast: float32 activations with bf16 projections")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET (the kernels were loaded for the interpreter)", file=sys.stderr)
        return 2
    for line in check(args.arch, args.dtype):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
