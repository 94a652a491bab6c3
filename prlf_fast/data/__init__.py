"""Data: MMSA loading (restricted unpickler, cache), synthetic data, whole-split batching and the
missing-modality protocols. See docs/data.md."""
from prlf_fast.data import missing
from prlf_fast.data.errors import DataError, UnsafePickleError
from prlf_fast.data.loader import convert, load_mmsa
from prlf_fast.data.missing import (
    DEFAULT_RATES,
    INTER_CONFIGS,
    epoch_generator,
    eval_uniforms,
    inter_drop,
    intra_corrupt,
    modality_dropout,
    modality_subsets,
    select_uniforms,
    train_corrupt,
    train_rates,
)
from prlf_fast.data.mmsa import SPLITS, NonFiniteWarning, prepare_mmsa
from prlf_fast.data.split import Split
from prlf_fast.data.synthetic import synthesize

__all__ = [
    "DEFAULT_RATES", "INTER_CONFIGS", "SPLITS", "DataError", "NonFiniteWarning", "Split",
    "UnsafePickleError", "convert", "epoch_generator", "eval_uniforms", "inter_drop",
    "intra_corrupt", "load_mmsa", "missing", "modality_dropout", "modality_subsets",
    "prepare_mmsa",
    "select_uniforms", "synthesize", "train_corrupt", "train_rates",
]
