"""One training step of bench/test_bench_e2e.py (batch 64, AdamW) in this process: its median time,
its minor page faults, and optionally torch.profiler's table and the FLOP count (BENCHMARKS.md,
"The memory allocator, and where the fast step's time goes"). Run each variant in a fresh process,
interleaved:

    python bench/step_profile.py --preset mosei --backend fast --threads 1 --malloc prlf-fast
    python bench/step_profile.py --preset mosei --backend fast --threads 2 --malloc glibc --profile
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mosei", choices=("mosi", "mosei", "sims"))
    p.add_argument("--backend", default="fast", choices=("reference", "fast"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--malloc", default="prlf-fast", choices=("prlf-fast", "glibc"),
                   help="prlf-fast's allocator thresholds (prlf_fast.malloc) or glibc's defaults")
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="print torch.profiler's table of 3 more steps")
    p.add_argument("--flops", action="store_true", help="count the step's FLOPs (torch.utils.flop_counter)")
    p.add_argument("--sgemm", action="store_true", help="this CPU's float32 GEMM rate at 2048³ (the compute floor)")
    ns = p.parse_args(argv)
    from prlf_fast import malloc

    if ns.malloc == "prlf-fast" and not malloc.configure_malloc():
        raise SystemExit("step_profile: the allocator thresholds could not be set (not glibc, or your own setting)")
    import torch
    from test_bench_e2e import TRAIN_BATCH, build, make_batch

    torch.set_num_threads(ns.threads)
    model, forward = build(ns.preset, ns.backend, "cpu", train=True)
    batch = make_batch(model.config, TRAIN_BATCH, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model.loss(forward(batch), batch)["total"].backward()
        opt.step()

    for _ in range(ns.warmup):
        step()
    times, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ns.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / ns.steps
    result = {**vars(ns), "median_s": statistics.median(times), "minor_faults_per_step": faults}
    if ns.flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model.loss(forward(batch), batch)["total"].backward()
        result["gflop_counted"] = counter.get_total_flops() / 1e9   # no formula for CPU SDPA
    if ns.sgemm:
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        seconds = []
        for _ in range(6):
            start = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - start)
        result["sgemm_gflops"] = 2 * 2048**3 / min(seconds[1:]) / 1e9
    print(json.dumps(result))
    if ns.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
