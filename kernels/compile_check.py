"""Compile every Triton kernel variant for CUDA architectures without a GPU (Triton and ptxas for a
``GPUTarget``; no driver), over a matrix of model sizes, and report registers, spills and shared
memory; fail where a variant needs more shared memory than the architecture has per block, or
spills registers in bf16 (the training dtype: a spill there is a slowdown nobody would see
without a GPU). Catches what the interpreter cannot: type and layout errors of the real compiler.

    TRITON_INTERPRET= python -m prlf_fast.kernels.compile_check [--matrix ci|full] [--arch 80 90]
                                                               [--dtype fp32 bf16 autocast]

``--matrix ci`` (what CI runs): the three presets' sizes (d_model 128, 8 heads, 8 tokens, FFN 256:
MOSI, MOSEI and SIMS differ only in input widths and lengths, which the kernels take at run time).
``--matrix full`` adds d_model 64 and 256 (FFN 2·d) and 4 tokens (two samples per program); see
docs/kernels.md for its table.
"""
from __future__ import annotations

import argparse
import itertools
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
N_WEIGHTS, N_ITERATIONS = 18, 3
# Largest shared memory one block may use (opt-in), bytes: A100 (sm_80) 163 KiB, H100/H200 227 KiB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
# Known bf16 spills (bytes, stores + loads) that the check tolerates, and no more, per Triton release
# (register allocation changes between releases): on sm_80 the fused backward at the presets' sizes
# keeps a few registers too many. A release not listed is held to the newest listed one before it
# (the oldest listed, before them all). See docs/kernels.md.
SPILL_BUDGETS = {
    (3, 6): {(80, "_iteration_bwd_kernel", "", "d=128 h=8 T=8"): 24,        # torch 2.11
             (80, "_iteration_bwd_kernel", "dropout", "d=128 h=8 T=8"): 128},
    (3, 7): {(80, "_iteration_bwd_kernel", "", "d=128 h=8 T=8"): 24,
             (80, "_iteration_bwd_kernel", "dropout", "d=128 h=8 T=8"): 16},
    (3, 9): {(80, "_iteration_bwd_kernel", "dropout", "d=128 h=8 T=8"): 128},   # torch 2.15
}
MATRICES = {   # (d_model, heads, tokens)
    "ci": [(128, 8, 8)],
    "full": list(itertools.product((64, 128, 256), (8,), (4, 8))),
}


def _signature(fn, pointers: dict, scalars: dict, constexprs: dict) -> dict:
    """Argument types: upper-case names are pointers (``pointers`` maps a name to its element type,
    default under "*") unless ``scalars`` types them ("i32"/"fp32"); other names are int32."""
    missing = [p.name for p in fn.params if p.is_constexpr and p.name not in constexprs]
    if missing:
        raise ValueError(f"compile_check: no value for constexpr {missing} of {fn.__name__}")
    return {name: "constexpr" if name in constexprs else
            f"*{pointers.get(name, pointers['*'])}" if name.isupper() and name not in scalars else
            scalars.get(name, "i32") for name in fn.arg_names}


def _attention_specs(dt: str, head_dim: int):
    meta = dict(BLOCK_M=attention.BLOCK_M, BLOCK_N=attention.BLOCK_N, BLOCK_D=next_block(head_dim),
                PREC=dot_precision(DTYPES[dt]))
    pointers = {"*": "bf16" if dt == "autocast" else dt, "VALID": "i1", "LSE": "fp32"}
    scalars = {"H": "i32", "scale": "fp32", "scale2": "fp32"}
    return [(kernel, "", pointers, scalars, dict(meta, HAS_MASK=True), 4)
            for kernel in (attention._fwd_kernel, attention._bwd_kernel)]


def _interact_specs(dt: str, d_model: int, heads: int, tokens: int, wide: bool = False):
    streams = torch.empty(64, 2, tokens, d_model, device="meta", dtype=DTYPES[dt])
    weights = [torch.empty(1, device="meta", dtype=DTYPES[dt])] * N_WEIGHTS
    weights[14] = torch.empty(2 * d_model, d_model, device="meta", dtype=DTYPES[dt])   # fc1: FFN 2·d
    meta = dict(interact._launch_config(streams, weights, heads), WIDE=wide)
    warps = meta.pop("num_warps")
    meta["BF"] = min(interact.FFN_CHUNK, next_block(2 * d_model))
    scalars = {n: "i32" for n in ("B", "T", "D", "H", "F")} | {"Dh": "i32", "eps": "fp32", "scale": "fp32"}
    weight_type = "bf16" if dt == "autocast" else dt
    pointers = {"*": weight_type, "KEEP_ATTN": "u8", "KEEP_FFN": "u8", "DG": "fp32", "PART": "fp32"}
    if dt == "autocast":
        pointers.update(dict.fromkeys(ACTIVATIONS, "fp32"))
    fwd = (interact._iteration_fwd_kernel, dict(meta, N_LAYERS=1))
    bwd = (interact._iteration_bwd_kernel, dict(meta, BG=triton.next_power_of_2(2 * meta["SB"])))
    training = [(kernel, "dropout" if dropout else "", pointers, scalars, dict(m, DROPOUT=dropout), warps)
                for dropout in (False, True) for kernel, m in (fwd, bwd)]
    persistent = (fwd[0], f"N={N_ITERATIONS}", pointers, scalars,
                  dict(meta, N_LAYERS=N_ITERATIONS, DROPOUT=False), warps)
    return training + [persistent]


def variants(matrix: str, dtypes):
    """(size label, dtype, spec) of every distinct kernel variant of the matrix: attention depends
    on the head dim and dtype only, and its autocast variant is its bf16 one."""
    seen = set()
    for (d, heads, tokens), dt in itertools.product(MATRICES[matrix], dtypes):
        if dt != "autocast" and (d // heads, dt) not in seen:
            seen.add((d // heads, dt))
            for spec in _attention_specs(dt, d // heads):
                yield f"Dh={d // heads}", dt, spec
        for spec in _interact_specs(dt, d, heads, tokens):
            yield f"d={d} h={heads} T={tokens}", dt, spec


def _ptxas_report(ptx: str, arch: int) -> dict:
    """Registers, spill stores and loads (bytes) of the PTX's kernel, from ``ptxas -v``."""
    import re

    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    suffix = "a" if arch >= 90 else ""
    try:
        out = subprocess.run([get_ptxas(arch).path, "-v", f"--gpu-name=sm_{arch}{suffix}", f.name, "-o", os.devnull],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    number = lambda pattern: int(re.search(pattern, out.stderr).group(1))  # noqa: E731
    return {"registers": number(r"Used (\d+) registers"), "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads")}


def _compile(arch: int, matrix: str, dtypes, index: int) -> dict:
    """Compile variant ``index`` of ``variants(matrix, dtypes)`` for sm_``arch``: its report row."""
    sizes, dt, (fn, variant, pointers, scalars, meta, warps) = list(variants(matrix, dtypes))[index]
    src = ASTSource(fn=fn, signature=_signature(fn, pointers, scalars, meta),
                    constexprs={(fn.arg_names.index(k),): v for k, v in meta.items()})
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=warps))
    row = dict(kernel=fn.__name__, variant=variant, dtype=dt, sizes=sizes, arch=arch, warps=warps,
               shared=kernel.metadata.shared, **_ptxas_report(kernel.asm["ptx"], arch))
    row["problem"] = problem(row)
    return row


def spill_budget(version: str = triton.__version__) -> dict:
    """The ``SPILL_BUDGETS`` entry that holds Triton ``version``."""
    release = tuple(int(part) for part in version.split(".")[:2])
    return SPILL_BUDGETS[max((r for r in SPILL_BUDGETS if r <= release), default=min(SPILL_BUDGETS))]


def problem(row: dict, budget: dict | None = None) -> str | None:
    """Why a compiled variant fails the check: more shared memory than its architecture gives one
    block, or register spills in bf16 beyond ``budget`` (default: the running Triton's
    ``spill_budget()``); None when it passes."""
    problems = []
    arch = row["arch"]
    if row["shared"] > SHARED_LIMIT[arch]:
        problems.append(f"shared memory {row['shared']} B > sm_{arch}'s {SHARED_LIMIT[arch]} B")
    spilled = row["spill_stores"] + row["spill_loads"]
    allowed = (spill_budget() if budget is None else budget).get((arch, row["kernel"], row["variant"], row["sizes"]), 0)
    if row["dtype"] == "bf16" and spilled > allowed:
        problems.append(f"register spills in bf16 ({spilled} B" + (f", budget {allowed} B)" if allowed else ")"))
    return "; ".join(problems) or None


def check(archs, matrix: str, dtypes, jobs: int = 1) -> list[dict]:
    """One row per compiled variant and architecture: kernel, variant, dtype, sizes, warps,
    registers, spills, shared memory, and ``problem`` (None, or why the variant fails the check).
    ``jobs`` processes compile in parallel (Triton and ptxas are single-threaded)."""
    tasks = [(arch, matrix, tuple(dtypes), i) for arch in archs for i in range(len(list(variants(matrix, dtypes))))]
    if jobs <= 1:
        return [_compile(*task) for task in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_compile, *zip(*tasks)))


def format_row(row: dict) -> str:
    return (f"sm_{row['arch']} {row['kernel']:22s} {row['variant']:8s} {row['dtype']:8s} {row['sizes']:16s} "
            f"warps={row['warps']:<2d} registers={row['registers']:<3d} spill_stores={row['spill_stores']:<4d} "
            f"spill_loads={row['spill_loads']:<4d} shared={row['shared']:<6d} "
            + (f"FAIL: {row['problem']}" if row["problem"] else "ok"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", choices=sorted(SHARED_LIMIT), default=sorted(SHARED_LIMIT),
                        help="CUDA compute capabilities")
    parser.add_argument("--matrix", choices=sorted(MATRICES), default="ci")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16", "autocast"],
                        help="autocast: float32 activations with bf16 projections")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiler processes")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET (the kernels were loaded for the interpreter)", file=sys.stderr)
        return 2
    failed = 0
    for row in check(args.arch, args.matrix, args.dtype, args.jobs):
        print(format_row(row), flush=True)
        failed += row["problem"] is not None
    if failed:
        print(f"compile_check: {failed} variant(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
