"""``prlf-fast train``: train PRLF, select on validation, then run the robustness evaluation."""
from __future__ import annotations

import argparse
import json
import os

from prlf_fast.config import PRESETS, PRLFConfig
from prlf_fast.errors import PRLFError

# Training defaults per dataset preset; the embedded synthetic set trains for fewer epochs.
TRAIN_PRESETS = {
    "mosi": dict(epochs=30, batch_size=32, lr=5e-4),
    "mosei": dict(epochs=15, batch_size=64, lr=5e-4),
    "sims": dict(epochs=30, batch_size=32, lr=5e-4),
}
SYNTHETIC_EPOCHS = 12
# CLI option -> TrainConfig field, for options that shape the run (saved in config.json).
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup", "grad_clip", "seed",
                 "train_missing", "modality_dropout", "modality_dropout_scheme", "select_rate", "select_seed",
                 "select_metric", "patience", "amp", "eval_batch_size")


def rate_list(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"missing rate {value} is not in [0, 1)")
    return value


def add_device_options(p) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--backend", default="fast", choices=("fast", "auto", "reference", "triton"),
                   help="model implementation (default: fast)")
    p.add_argument("--rates", type=rate_list, nargs="+", metavar="R",
                   help="intra-modality missing rates to evaluate (default 0.0 0.1 … 0.9)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="mask seeds to evaluate (default 0 1 2)")
    add_threads_option(p)


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


def model_overrides(args) -> dict:
    out = {}
    for item in args.model_set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    if args.text_encoder:
        out["text_encoder"] = args.text_encoder
    if args.bert_path:
        out["bert_path"] = os.path.abspath(args.bert_path)
    return out


def synthetic_sizes(text: str | None) -> dict | None:
    from prlf_fast.data.runs import SYNTHETIC_DEFAULT

    if text is None:
        return None
    try:
        n = [int(v) for v in text.split(",")]
    except ValueError:
        n = []
    if len(n) != 3 or min(n) < 1:
        raise ValueError(f"--synthetic {text!r}: expected three positive sizes TRAIN,VALID,TEST")
    return {**SYNTHETIC_DEFAULT, "n_train": n[0], "n_valid": n[1], "n_test": n[2]}


def explicit_train(args) -> dict:
    return {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}


def new_config(args) -> dict:
    from prlf_fast.config import TrainConfig
    from prlf_fast.eval.robustness import DEFAULT_SEEDS
    from prlf_fast.data.runs import data_spec
    from prlf_fast.train.run import run_config

    dataset = args.dataset or "mosi"
    if args.data is not None and args.synthetic is not None:
        raise ValueError("--synthetic only applies without --data")
    model_cfg = PRLFConfig.preset(dataset, **model_overrides(args))
    defaults = dict(TRAIN_PRESETS[dataset])
    if args.data is None:
        defaults["epochs"] = SYNTHETIC_EPOCHS
    train_cfg = TrainConfig(**{**defaults, **explicit_train(args)})
    return run_config(model_cfg, train_cfg, data_spec(args.data, synthetic_sizes(args.synthetic)),
                      args.rates, args.seeds or list(DEFAULT_SEEDS))


def resumed_config(args, saved: dict) -> dict:
    """The saved config; an option given now that contradicts it is an error."""
    conflicts = [f"--{k.replace('_', '-')} {v!r} (run has {saved['train'].get(k)!r})"
                 for k, v in explicit_train(args).items() if saved["train"].get(k) != v]
    conflicts += [f"--set {k}={v!r} (run has {saved['model'].get(k)!r})"
                  for k, v in model_overrides(args).items() if saved["model"].get(k) != v]
    if args.dataset and args.dataset != saved["model"]["dataset"]:
        conflicts.append(f"--dataset {args.dataset} (run has {saved['model']['dataset']})")
    if args.data and os.path.abspath(args.data) != saved["data"]["path"]:
        conflicts.append(f"--data {args.data} (run has {saved['data']['path']})")
    if conflicts:
        raise PRLFError("--resume keeps the run's saved config; these options contradict it: "
                        + "; ".join(conflicts))
    if args.rates or args.seeds:
        saved = {**saved, "eval": {"rates": args.rates or saved["eval"]["rates"],
                                   "seeds": args.seeds or saved["eval"]["seeds"]}}
    return saved


def run(args) -> int:
    from prlf_fast.io.rundir import RunDir
    from prlf_fast.report.tensorboard import check_available
    from prlf_fast.threads import apply_threads
    from prlf_fast.train import distributed
    from prlf_fast.train.run import train

    apply_threads(args.threads)
    if args.tensorboard:
        check_available()
    out = args.out or os.path.join("runs", f"{args.dataset or 'mosi'}-seed{args.seed or 1}")
    run_dir = RunDir(out)
    config = resumed_config(args, run_dir.read_config()) if args.resume else new_config(args)
    device = distributed.device_for(args.device)
    state = train(run_dir, config, device, args.backend, args.resume, evaluate=args.evaluate,
                  tensorboard=args.tensorboard)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {out} (best epoch {state['best_epoch']}, "
              f"validation {config['train']['select_metric']} {state['best_score']:.4f})")
    return 0
