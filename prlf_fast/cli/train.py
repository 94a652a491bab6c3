"""``prlf-fast train``: train PRLF, select on validation, then run the robustness evaluation."""
from __future__ import annotations

import argparse
import os

from prlf_fast.config import BACKEND_CHOICES, PRESETS, TRAIN_OPTIONS


def missing_rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"missing rate {value} is not in [0, 1)")
    return value


def add_device_options(p) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_backend_option(p)
    p.add_argument("--rates", type=missing_rate, nargs="+", metavar="R",
                   help="intra-modality missing rates to evaluate (default 0.0 0.1 … 0.9)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="mask seeds to evaluate (default 0 1 2)")
    add_threads_option(p)


def add_backend_option(p) -> None:
    p.add_argument("--backend", default="fast", choices=BACKEND_CHOICES, help="model implementation (default: fast)")


def add_threads_option(p) -> None:
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of this process (default: OMP_NUM_THREADS, else the CPUs it may "
                        "use: its affinity mask capped by its cgroup CPU quota); when several runs "
                        "share the machine, cores / runs")


def register(sub) -> None:
    p = sub.add_parser("train", help="train PRLF, select on validation, evaluate robustness",
                       description=__doc__.replace("``", ""))
    p.add_argument("--dataset", choices=sorted(PRESETS), help="preset (default mosi)")
    p.add_argument("--data", help="MMSA pickle or converted cache directory "
                                  "(default: the embedded synthetic MOSI-shaped set)")
    p.add_argument("--synthetic", metavar="TRAIN,VALID,TEST",
                   help="sizes of the synthetic set used without --data")
    p.add_argument("--out", help="run directory (default runs/<dataset>-seed<S>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-eval", dest="evaluate", action="store_false",
                   help="skip the robustness evaluation after training")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write the per-epoch scalars as TensorBoard event files in DIR/tensorboard")
    g = p.add_argument_group("training (defaults per preset; a resumed run keeps its own)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="global batch size (split across ranks)")
    g.add_argument("--lr", type=float, help="peak learning rate of AdamW")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup", type=float, help="fraction of steps spent warming up")
    g.add_argument("--grad-clip", type=float, help="max gradient norm (0: off)")
    g.add_argument("--seed", type=int)
    g.add_argument("--no-train-missing", dest="train_missing", action="store_const", const=False,
                   help="train on complete data (no intra-modality training protocol)")
    g.add_argument("--modality-dropout", type=float, help="probability of dropping a whole modality")
    g.add_argument("--modality-dropout-scheme", choices=("independent", "subset"),
                   help="independent (each modality with that probability; default) or subset (a sample "
                        "keeps a random non-empty subset of its modalities)")
    g.add_argument("--select-rate", type=float, help="validation missing rate for selection (0.5)")
    g.add_argument("--select-seed", type=int, help="mask seed of the validation evaluation")
    g.add_argument("--select-metric", help="validation metric to select on (MAE: lower is better)")
    g.add_argument("--patience", type=int, help="early stopping patience in epochs (0: off)")
    g.add_argument("--no-amp", dest="amp", action="store_const", const=False, help="no bf16 autocast on CUDA")
    g.add_argument("--eval-batch-size", type=int)
    m = p.add_argument_group("model")
    m.add_argument("--set", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a PRLFConfig field, e.g. --set d_model=64 (repeatable)")
    m.add_argument("--text-encoder", choices=("features", "bert"))
    m.add_argument("--bert-path", help="local Hugging Face BERT directory (text encoder 'bert')")
    add_device_options(p)
    p.set_defaults(func=run)


def run_spec(args) -> "RunSpec":
    """The run the options describe (only what was given explicitly; the rest is defaults)."""
    from prlf_fast.train.spec import RunSpec, parse_pairs

    model = parse_pairs(args.model_set, "--set")
    if args.text_encoder:
        model["text_encoder"] = args.text_encoder
    if args.bert_path:
        model["bert_path"] = os.path.abspath(args.bert_path)
    return RunSpec(dataset=args.dataset, data=args.data, synthetic=synthetic_sizes(args.synthetic),
                   train={k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None},
                   model=model, rates=args.rates, mask_seeds=args.seeds)


def synthetic_sizes(text: str | None) -> tuple | None:
    """``TRAIN,VALID,TEST`` as integers (``RunSpec`` checks their count and sign)."""
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--synthetic {text!r}: expected three positive sizes TRAIN,VALID,TEST") from None


def run(args) -> int:
    from prlf_fast.threads import apply_threads
    from prlf_fast.train.spec import start

    apply_threads(args.threads)
    out = args.out or os.path.join("runs", f"{args.dataset or 'mosi'}-seed{args.seed or 1}")
    config, state = start(run_spec(args), out, args.device, args.backend, args.resume, evaluate=args.evaluate,
                  tensorboard=args.tensorboard)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {out} (best epoch {state['best_epoch']}, "
              f"validation {config['train']['select_metric']} {state['best_score']:.4f})")
    return 0
