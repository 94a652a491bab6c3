"""Configuration: ``PRLFConfig`` (the model and the dataset presets) and ``TrainConfig`` (the
optimisation and selection settings of a run), with the field checks they share. Imports
neither torch nor numpy, so ``prlf-fast --help`` and checking a saved config stay cheap (docs/design.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from prlf_fast.errors import PRLFError

MODALITIES = ("text", "audio", "vision")

PRESETS = {
    "mosi": dict(text_dim=768, text_len=50, audio_dim=5, audio_len=375, vision_dim=20,
                 vision_len=500, neutral_band=0.5, label_range=3.0),
    "mosei": dict(text_dim=768, text_len=50, audio_dim=74, audio_len=500, vision_dim=35,
                  vision_len=500, neutral_band=0.5, label_range=3.0),
    "sims": dict(text_dim=768, text_len=39, audio_dim=33, audio_len=400, vision_dim=709,
                 vision_len=55, neutral_band=0.1, label_range=1.0),
}
TEXT_ENCODERS = ("features", "bert")
# Op backends (prlf_fast.ops.registry), and what --backend takes: "auto" is an alias of "fast".
BACKENDS = ("reference", "fast", "triton")
BACKEND_CHOICES = ("fast", "auto", "reference", "triton")
# Ablation switches (docs/design.md §4.6): how AMRE forms the reliability score, and the anchor rule.
RELIABILITY_MODES = ("amre", "confidence", "fisher", "uniform")
ANCHORS = ("adaptive", *MODALITIES)
# How AMRE's score is parameterised (docs/model.md, "AMRE variants"): α, β shared or per
# modality (with a bias), the Fisher trace over the head's parameters or its biases only.
RELIABILITY_PARAMS = ("shared", "modality")
FISHER_PARAMS = ("head", "bias")


def check_types(obj, what: str) -> None:
    """Raise ValueError naming every field of dataclass ``obj`` whose value is not of its
    default's type (an int is a float; a bool is neither; a ``None`` default admits a string)."""
    bad = []
    for f in dataclasses.fields(obj):
        value, default = getattr(obj, f.name), f.default
        if default is None:
            ok, expected = value is None or isinstance(value, str), "a path or None"
        elif isinstance(default, bool):
            ok, expected = isinstance(value, bool), "bool"
        elif isinstance(default, (int, float)):
            kinds = (int, float) if isinstance(default, float) else int
            ok = isinstance(value, kinds) and not isinstance(value, bool)
            expected = "a number" if isinstance(default, float) else "int"
        else:
            ok, expected = isinstance(value, type(default)), type(default).__name__
        if not ok:
            bad.append(f"{f.name}={value!r}: expected {expected}")
    if bad:
        raise ValueError(f"invalid {what}(s): " + "; ".join(bad))


def check_finite(obj, what: str) -> None:
    """Raise ValueError naming every float field of dataclass ``obj`` that is NaN or infinite."""
    bad = [f"{f.name}={getattr(obj, f.name)!r}: expected a finite number" for f in dataclasses.fields(obj)
           if isinstance(getattr(obj, f.name), float) and not math.isfinite(getattr(obj, f.name))]
    if bad:
        raise ValueError(f"invalid {what}(s): " + "; ".join(bad))


def check_ranges(obj, checks: dict, what: str) -> None:
    """Raise ValueError naming every field whose check in ``{field: (ok, allowed range)}`` fails."""
    bad = [f"{k}={getattr(obj, k)!r} {why}" for k, (ok, why) in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid {what}(s): " + "; ".join(bad))


def from_dict(cls, d: dict, what: str):
    """``cls(**d)`` for dataclass ``cls``, refusing keys that are not its fields."""
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what}(s): {', '.join(unknown)}")
    return cls(**d)


@dataclass
class PRLFConfig:
    """Hyper-parameters of our formulation of PRLF. Defaults are docs/design.md §4's (MOSI shapes)."""

    dataset: str = "mosi"
    text_dim: int = 768
    audio_dim: int = 5
    vision_dim: int = 20
    text_len: int = 50
    audio_len: int = 375
    vision_len: int = 500
    label_range: float = 3.0
    d_model: int = 128
    n_tokens: int = 8
    n_heads: int = 8
    n_encoder_layers: int = 2
    n_interact: int = 3
    ffn_dim: int = 256
    recog_hidden: int = 128
    n_classes: int = 3
    neutral_band: float = 0.5
    dropout: float = 0.1
    tau: float = 1.0
    lambda_rec: float = 0.1
    lambda_align: float = 0.1
    text_encoder: str = "features"
    bert_path: str | None = None
    reliability: str = "amre"
    anchor: str = "adaptive"
    gate_streams: bool = True
    reliability_params: str = "shared"
    fisher_params: str = "head"
    lambda_anchor: float = 0.0
    anchor_temperature: float = 0.1
    score_lr_scale: float = 1.0

    def __post_init__(self):
        check_types(self, "model setting")
        check_finite(self, "model setting")
        choices = {"text_encoder": TEXT_ENCODERS, "reliability": RELIABILITY_MODES, "anchor": ANCHORS,
                   "reliability_params": RELIABILITY_PARAMS, "fisher_params": FISHER_PARAMS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        sizes = ("text_dim", "audio_dim", "vision_dim", "text_len", "audio_len", "vision_len", "d_model",
                 "n_tokens", "n_heads", "n_encoder_layers", "ffn_dim", "recog_hidden")
        checks = {name: (getattr(self, name) >= 1, "must be ≥ 1") for name in sizes}
        checks.update({
            "n_interact": (self.n_interact >= 0, "must be ≥ 0 (0: no ProgInteract)"),
            "n_classes": (self.n_classes >= 2, "must be ≥ 2"),
            "label_range": (self.label_range > 0, "must be > 0"),
            "neutral_band": (0 <= self.neutral_band < self.label_range, "must be in [0, label_range)"),
            "dropout": (0 <= self.dropout < 1, "is a probability in [0, 1)"),
            "tau": (self.tau > 0, "must be > 0"),
            "lambda_rec": (self.lambda_rec >= 0, "must be ≥ 0"),
            "lambda_align": (self.lambda_align >= 0, "must be ≥ 0"),
            "lambda_anchor": (self.lambda_anchor >= 0, "must be ≥ 0"),
            "anchor_temperature": (self.anchor_temperature > 0, "must be > 0"),
            "score_lr_scale": (self.score_lr_scale > 0, "must be > 0"),
        })
        check_ranges(self, checks, "model setting")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.text_encoder == "bert" and not self.bert_path:
            raise ValueError("text_encoder='bert' needs bert_path (a local Hugging Face BERT directory)")
        if self.bert_path is not None:
            try:
                self.bert_path.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"bert_path={self.bert_path!r} is not valid UTF-8; rename it") from None

    @classmethod
    def preset(cls, name: str, **overrides) -> "PRLFConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        settable = [f.name for f in dataclasses.fields(cls) if f.name != "dataset"]
        unknown = sorted(set(overrides) - set(settable))
        if unknown:
            raise ValueError(f"unknown model setting(s) {', '.join(unknown)}; expected some of {', '.join(settable)}")
        return cls(dataset=name, **{**PRESETS[name], **overrides})

    def dims(self) -> dict:
        return {m: getattr(self, f"{m}_dim") for m in MODALITIES}

    def lengths(self) -> dict:
        return {m: getattr(self, f"{m}_len") for m in MODALITIES}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PRLFConfig":
        return from_dict(cls, d, "PRLFConfig field")


LOWER_IS_BETTER = ("MAE",)
# Whole-modality dropout in training: "independent" drops each present modality with probability
# p (a sample keeps one); "subset" gives a sample, with probability p, a uniformly drawn non-empty
# subset of its present modalities (MMIN/MoMKE style). docs/training.md.
MODALITY_DROPOUT_SCHEMES = ("independent", "subset")


@dataclass
class TrainConfig:
    """Optimisation and selection settings of one run (saved in config.json)."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.1          # fraction of all steps spent warming up linearly
    grad_clip: float = 1.0       # max gradient norm; 0 disables clipping
    seed: int = 1
    train_missing: bool = True   # intra-modality training protocol (docs/design.md §3)
    modality_dropout: float = 0.0
    modality_dropout_scheme: str = "independent"   # or "subset" (MODALITY_DROPOUT_SCHEMES)
    select_rate: float = 0.5     # validation missing rate used for model selection
    select_seed: int = 0         # mask seed of the validation evaluation
    select_metric: str = "MAE"
    patience: int = 0            # epochs without improvement before stopping; 0 = never
    amp: bool = True             # bf16 autocast on CUDA
    eval_batch_size: int = 256

    def __post_init__(self):
        check_types(self, "training setting")
        check_finite(self, "training setting")
        checks = {
            "epochs": (self.epochs >= 1, "must be ≥ 1"),
            "batch_size": (self.batch_size >= 1, "must be ≥ 1"),
            "lr": (self.lr > 0, "must be > 0"),
            "weight_decay": (self.weight_decay >= 0, "must be ≥ 0"),
            "warmup": (0 <= self.warmup < 1, "is a fraction of all steps, in [0, 1)"),
            "grad_clip": (self.grad_clip >= 0, "must be ≥ 0 (0 turns clipping off)"),
            "modality_dropout": (0 <= self.modality_dropout < 1 or (
                self.modality_dropout == 1 and self.modality_dropout_scheme == "subset"),
                                 "is a probability in [0, 1): at 1 every sample would keep one "
                                 "modality chosen at random and none would train with its modalities "
                                 "together (the 'subset' scheme admits 1)"),
            "modality_dropout_scheme": (self.modality_dropout_scheme in MODALITY_DROPOUT_SCHEMES,
                                        f"is one of {', '.join(MODALITY_DROPOUT_SCHEMES)}"),
            "select_rate": (0 <= self.select_rate < 1, "is a missing rate in [0, 1)"),
            "patience": (self.patience >= 0, "must be ≥ 0 (0 turns early stopping off)"),
            "eval_batch_size": (self.eval_batch_size >= 1, "must be ≥ 1"),
        }
        check_ranges(self, checks, "training setting")

    def check_metric(self, dataset: str) -> None:
        from prlf_fast.metrics import metric_names  # numpy: not for ``prlf-fast --help``

        if self.select_metric not in metric_names(dataset):
            raise PRLFError(f"select_metric {self.select_metric!r} is not a {dataset} metric; "
                            f"expected one of {', '.join(metric_names(dataset))}")

    def better(self, new: float, old: float | None) -> bool:
        """Whether validation score ``new`` improves on the best so far (None: no epoch yet).

        NaN (a metric undefined on the validation predictions, e.g. Corr of a constant
        prediction) never improves on an earlier epoch, and any number improves on NaN."""
        if old is None:
            return True
        if math.isnan(new) or math.isnan(old):
            return not math.isnan(new)
        return new < old if self.select_metric in LOWER_IS_BETTER else new > old

    @classmethod
    def preset(cls, dataset: str, synthetic: bool = False, **settings) -> "TrainConfig":
        """``dataset``'s training defaults (``TRAIN_PRESETS``; ``SYNTHETIC_EPOCHS`` on a synthetic
        set) with ``settings`` over them; an unknown setting is a ValueError naming it."""
        if dataset not in TRAIN_PRESETS:
            raise ValueError(f"unknown preset {dataset!r}; expected one of {sorted(TRAIN_PRESETS)}")
        defaults = {**TRAIN_PRESETS[dataset], **({"epochs": SYNTHETIC_EPOCHS} if synthetic else {})}
        return from_dict(cls, {**defaults, **settings}, "training setting")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_dict(cls, d, "training setting")


# Training defaults per dataset preset; a synthetic set trains for fewer epochs.
TRAIN_PRESETS = {
    "mosi": dict(epochs=30, batch_size=32, lr=5e-4),
    "mosei": dict(epochs=15, batch_size=64, lr=5e-4),
    "sims": dict(epochs=30, batch_size=32, lr=5e-4),
}
SYNTHETIC_EPOCHS = 12
# The training settings a run may be given: TrainConfig's fields.
TRAIN_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig))
