"""``prlf-fast eval``: re-run the robustness evaluation (intra and inter protocols) of a saved run."""
from __future__ import annotations

from prlf_fast.cli.train import add_device_options


def register(sub) -> None:
    p = sub.add_parser("eval", help="re-run the robustness evaluation of a saved run",
                       description=__doc__.replace("``", ""))
    p.add_argument("--run", required=True, help="run directory written by prlf-fast train")
    p.add_argument("--data", help="data to evaluate on (default: the run's own data)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's)")
    p.add_argument("--out", help="directory for results.json, report.md and plots/ (default: the run "
                                 "directory, whose previous results are replaced)")
    p.add_argument("--force", action="store_true", help="replace the results already in another --out")
    p.add_argument("--permutations", type=int, nargs="?", const=100, default=0, metavar="K",
                   help="also the reliability permutation test with K permutations (default K 100; about "
                        "K/8 times the evaluation's time: docs/protocols.md)")
    p.add_argument("--permutation-seed", type=int, default=0, metavar="S", help="seed of the permutations")
    add_device_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from prlf_fast.threads import apply_threads
    from prlf_fast.train import distributed
    from prlf_fast.train.run import evaluate_run

    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} must be ≥ 1")
    if args.permutations < 0:
        raise ValueError(f"--permutations {args.permutations} must be ≥ 0")
    apply_threads(args.threads)
    results = evaluate_run(args.run, args.data, args.rates, args.seeds, distributed.device_for(args.device),
                           args.backend, args.batch_size, out=args.out, force=args.force,
                           permutations=args.permutations, permutation_seed=args.permutation_seed)
    print(f"wrote {args.out or args.run}/results.json, report.md and plots/ "
          f"(intra average MAE {results['intra']['average']['mean']['MAE']:.4f})")
    return 0
