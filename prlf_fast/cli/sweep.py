"""``prlf-fast sweep``: seeds × variants (× datasets) of ``prlf-fast train`` runs through submitit,
aggregated into SWEEP/summary.json, SWEEP/report.md and plots. Running the same command again
skips finished cells and resumes interrupted ones; ``--report SWEEP`` rebuilds the report."""
from __future__ import annotations

import argparse

from prlf_fast.cli.train import add_backend_option, missing_rate


def _sizes(text: str) -> list:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three positive sizes TRAIN,VALID,TEST")
    return sizes


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a seeds × variants (× datasets) study through submitit",
                       description=__doc__.replace("``", ""),
                       epilog="example: prlf-fast sweep --out sweeps/abl --seeds 1 2 3 --variant full: "
                              "--variant confidence:reliability=confidence --parallel 2")
    p.add_argument("--out", help="sweep directory (default: sweeps/sweep)")
    p.add_argument("--report", metavar="SWEEP", help="only rebuild SWEEP's summary and report from its finished cells")
    g = p.add_argument_group("the grid (a YAML file and/or options; options replace the file's values)")
    g.add_argument("--config", metavar="FILE.yaml", help="sweep file: seeds, variants, datasets, train, set, ...")
    g.add_argument("--seeds", type=int, nargs="+", metavar="S", help="training seeds (default 1)")
    g.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a variant and its PRLFConfig overrides and training settings, e.g. "
                        "nofisher:reliability=confidence or p01:modality_dropout=0.1 (repeatable; default full:)")
    g.add_argument("--dataset", action="append", default=[], metavar="[NAME=]PRESET[:PATH]",
                   help="a dataset: preset and MMSA pickle or cache (repeatable; default: the "
                        "synthetic MOSI-shaped set)")
    g.add_argument("--synthetic", type=_sizes, metavar="TRAIN,VALID,TEST", help="sizes of synthetic datasets")
    g.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="a training setting of every cell, e.g. epochs=5 (repeatable)")
    g.add_argument("--set", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
                   help="a PRLFConfig override of every variant (repeatable)")
    g.add_argument("--rates", type=missing_rate, nargs="+", metavar="R", help="evaluation missing rates")
    g.add_argument("--mask-seeds", type=int, nargs="+", metavar="S", help="evaluation mask seeds (default 0 1 2)")
    g.add_argument("--reference", help="variant the others are compared with (default full, else the first)")
    r = p.add_argument_group("how cells run")
    r.add_argument("--executor", choices=("local", "slurm"), default="local")
    r.add_argument("--parallel", type=int, metavar="K",
                   help="local: cells at once (default: GPUs × --per-gpu, or 1 on CPU)")
    r.add_argument("--per-gpu", type=int, default=1, metavar="K", help="local: cells sharing one GPU")
    r.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads per cell (default: cores / cells at once; Slurm: --cpus)")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_backend_option(r)
    r.add_argument("--tensorboard", action="store_true", help="TensorBoard event files in every cell")
    r.add_argument("--no-wait", dest="wait", action="store_false",
                   help="slurm: submit and return (build the report later with --report)")
    s = p.add_argument_group("slurm")
    s.add_argument("--partition")
    s.add_argument("--time", type=int, default=240, metavar="MIN", help="time limit per cell (minutes)")
    s.add_argument("--gpus", type=int, metavar="N",
                   help="GPUs per cell (default: 1 with --device cuda, none with cpu or auto)")
    s.add_argument("--cpus", type=int, default=4, help="CPUs per cell")
    s.add_argument("--array-parallelism", type=int, default=64, metavar="N", help="array tasks at once")
    s.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option, e.g. account=abc or constraint=a100 (repeatable)")
    p.set_defaults(func=run)


def _report(sweep_dir: str) -> tuple[dict, str]:
    """Summarize the sweep and write its summary, report and plots as one commit (call it
    holding the sweep's lock); each cell left out for damaged results is one note line on
    stderr. Returns the summary and the report's path."""
    import sys

    from prlf_fast.report.sweep import write_sweep_report
    from prlf_fast.study.aggregate import summarize

    summary = summarize(sweep_dir)
    for cell in summary["cells"]:
        if cell.get("note"):
            print(f"prlf-fast: note: {cell['note']}; the cell counts as unfinished", file=sys.stderr)
    return summary, write_sweep_report(sweep_dir, summary)


def run(args) -> int:
    import os

    from prlf_fast.errors import PRLFError
    from prlf_fast.study.record import lock, read_state
    from prlf_fast.study.spec import SweepSpec, parse_pairs

    if args.report:
        if read_state(args.report) is None:
            raise PRLFError(f"{args.report} holds no sweep (sweep.json is missing)")
        with lock(args.report):
            _, report = _report(args.report)
        print(f"wrote {report} and {args.report}/summary.json")
        return 0
    from prlf_fast.study.launch import Runtime, Sweep  # submitit: not needed for --report

    out = args.out or os.path.join("sweeps", "sweep")
    grid = (args.config, args.seeds, args.variant, args.dataset, args.synthetic, args.train, args.model_set,
            args.rates, args.mask_seeds, args.reference)
    saved = read_state(out)
    if saved is not None and not any(grid):  # `prlf-fast sweep --out SWEEP` continues it
        spec = saved[0]
    else:
        spec = SweepSpec.from_args(args.config, args.seeds, args.variant, args.dataset, args.train, args.model_set,
                                   args.rates, args.mask_seeds, args.reference, args.synthetic)
    if args.executor == "local" and (args.partition or args.slurm_option):
        raise PRLFError("--partition and --slurm-option apply to --executor slurm")
    rt = Runtime(executor=args.executor, parallel=args.parallel, per_gpu=args.per_gpu, threads=args.threads,
                 device=args.device, backend=args.backend, tensorboard=args.tensorboard, wait=args.wait,
                 partition=args.partition, time_min=args.time, gpus=args.gpus, cpus=args.cpus,
                 array_parallelism=args.array_parallelism, slurm_options=parse_pairs(args.slurm_option, "--slurm-option"))
    if args.tensorboard:
        from prlf_fast.report.tensorboard import check_available

        check_available()
    written = []
    wait = args.executor == "local" or args.wait
    record = Sweep(spec, out, rt).run(then=(lambda: written.extend(_report(out))) if wait else None)
    failed = [k for k, c in record["cells"].items() if c.get("status") == "failed"]
    if not wait:
        print(f"submitted; when the jobs end: prlf-fast sweep --report {out}")
        return 0
    summary, report = written
    print(f"wrote {report} and {out}/summary.json ({sum(c['finished'] for c in summary['cells'])} of "
          f"{len(summary['cells'])} cells finished; wall time {record['wall_seconds']:.0f} s)")
    if failed:
        raise PRLFError(f"{len(failed)} cell(s) failed: {', '.join(failed)}; their logs are listed above; "
                        "run the same command again to retry them")
    return 0
