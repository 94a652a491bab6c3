"""``prlf-fast predict``: per-sample predictions of a trained run as CSV (id, label, prediction,
dominant modality; per modality presence, confidence, Fisher information, reliability weight)."""
from __future__ import annotations

from prlf_fast.cli.train import add_backend_option, add_threads_option, missing_rate
from prlf_fast.config import MODALITIES


def modality_list(text: str) -> tuple:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in MODALITIES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"--drop {text!r}: expected distinct names from {', '.join(MODALITIES)}, comma-separated")
    return names


def register(sub) -> None:
    p = sub.add_parser("predict", help="per-sample predictions of a trained run (CSV)",
                       description=__doc__.replace("``", ""))
    p.add_argument("--run", required=True, help="run directory written by prlf-fast train")
    p.add_argument("--data", help="MMSA pickle (labels optional) or converted cache (default: the run's own data)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to predict (test)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--intra", type=missing_rate, metavar="RATE",
                   help="intra-modality missing rate (the evaluation's masks for --mask-seed)")
    g.add_argument("--drop", metavar="MODALITIES", help="drop whole modalities, e.g. text,audio")
    p.add_argument("--mask-seed", type=int, help="mask seed of --intra (default 0)")
    p.add_argument("--out", required=True, help="output CSV file")
    p.add_argument("--batch-size", type=int, help="batch size (default: the run's evaluation batch size)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_backend_option(p)
    add_threads_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from prlf_fast.threads import apply_threads
    from prlf_fast.train.predict import predict_run

    if args.mask_seed is not None and args.intra is None:
        raise ValueError("--mask-seed applies only with --intra RATE")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} must be ≥ 1")
    drop = modality_list(args.drop) if args.drop is not None else ()
    apply_threads(args.threads)
    metrics = predict_run(args.run, args.out, args.data, args.split, args.intra, args.mask_seed or 0, drop,
                          args.device, args.backend, args.batch_size)
    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) if metrics else "no labels, no metrics"
    print(f"wrote {args.out} ({summary})")
    return 0
