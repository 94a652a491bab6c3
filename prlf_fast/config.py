"""Model and data configuration: ``PRLFConfig`` and the dataset presets of DESIGN §2 and §4."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
# Ablation switches (DESIGN §4.6): how AMRE forms the reliability score, and the anchor rule.
RELIABILITY_MODES = ("amre", "confidence", "fisher", "uniform")
ANCHORS = ("adaptive", *MODALITIES)
# AMRE's next version (issue #15; docs/model.md): α, β shared or per modality (with a bias), the
# Fisher trace over the head's parameters or its biases only.
RELIABILITY_PARAMS = ("shared", "modality")
FISHER_PARAMS = ("head", "bias")


@dataclass
class PRLFConfig:
    """Hyper-parameters of our formulation of PRLF. Defaults are DESIGN §4's (MOSI shapes)."""

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
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if default is None:
                ok = value is None or isinstance(value, str)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if not ok:
                expected = "a path or None" if default is None else type(default).__name__
                raise ValueError(f"{f.name}={value!r}: expected {expected}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder={self.text_encoder!r}; expected one of {TEXT_ENCODERS}")
        if self.text_encoder == "bert" and not self.bert_path:
            raise ValueError("text_encoder='bert' needs bert_path (a local Hugging Face BERT directory)")
        for name in ("n_tokens", "n_heads", "n_encoder_layers", "ffn_dim",
                     "recog_hidden", "n_classes", "text_len", "audio_len", "vision_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be ≥ 1")
        if self.n_interact < 0:
            raise ValueError(f"n_interact={self.n_interact} must be ≥ 0 (0: no ProgInteract)")
        if self.reliability not in RELIABILITY_MODES:
            raise ValueError(f"reliability={self.reliability!r}; expected one of {RELIABILITY_MODES}")
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor={self.anchor!r}; expected one of {ANCHORS}")
        if self.tau <= 0:
            raise ValueError(f"tau={self.tau} must be > 0")
        if self.reliability_params not in RELIABILITY_PARAMS:
            raise ValueError(f"reliability_params={self.reliability_params!r}; expected one of {RELIABILITY_PARAMS}")
        if self.fisher_params not in FISHER_PARAMS:
            raise ValueError(f"fisher_params={self.fisher_params!r}; expected one of {FISHER_PARAMS}")
        if self.lambda_anchor < 0:
            raise ValueError(f"lambda_anchor={self.lambda_anchor} must be ≥ 0")
        if self.score_lr_scale <= 0:
            raise ValueError(f"score_lr_scale={self.score_lr_scale} must be > 0")
        if self.anchor_temperature <= 0:
            raise ValueError(f"anchor_temperature={self.anchor_temperature} must be > 0")

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PRLFConfig field(s): {', '.join(unknown)}")
        return cls(**d)
