"""What a sweep is: seeds × variants × datasets plus the settings every cell shares.

A ``SweepSpec`` comes from the command line or a small YAML file, is saved in ``SWEEP/sweep.json``
and turns each cell into the ``RunSpec`` of an ordinary ``prlf-fast train`` run whose directory
is ``SWEEP/cells/<dataset>/<variant>/seed<S>``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re

from prlf_fast.config import PRESETS, TRAIN_OPTIONS
from prlf_fast.errors import PRLFError
from prlf_fast.io.files import MiB, read_text
from prlf_fast.train.spec import RunSpec, parse_pairs

SWEEP_FILE = "sweep.json"
CELLS, DATA = "cells", "data"
# Training settings a sweep may fix for every cell (the seed is the grid's).
TRAIN_KEYS = tuple(k for k in TRAIN_OPTIONS if k != "seed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_YAML_KEYS = {"seeds", "variants", "datasets", "train", "set", "rates", "mask_seeds", "reference", "synthetic"}
_DATASET_KEYS = {"preset", "data", "synthetic"}
YAML_LIMIT, YAML_DEPTH = MiB, 32  # a sweep file's size (bytes) and nesting
SEED_RANGE = (-(2 ** 63), 2 ** 63)  # what torch.manual_seed takes


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def show(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile value may be huge)."""
    text = repr(value) if not isinstance(value, (dict, list)) or len(value) < 100 else f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "…"


def _seed(v) -> bool:
    return is_int(v) and SEED_RANGE[0] <= v < SEED_RANGE[1]


_SCALAR = (str, int, float, bool, type(None))


def _setting(value) -> bool:
    """A value a ``--set``/``--train`` setting may take: a scalar or a flat list of scalars."""
    return isinstance(value, _SCALAR) or (isinstance(value, list) and all(isinstance(v, _SCALAR) for v in value))


def _check_settings(field: str, settings) -> None:
    if not isinstance(settings, dict):
        raise PRLFError(f"{field}: expected a mapping of settings, found {show(settings)}")
    for key, value in settings.items():
        if not isinstance(key, str) or not _setting(value):
            raise PRLFError(f"{field}.{key}: expected a setting name and a number, string, boolean or "
                            f"list of them, found {show(value)}")


def _check_list(field: str, values, ok, what: str, optional: bool = False) -> None:
    if optional and values is None:
        return
    if not (isinstance(values, list) and values and all(ok(v) for v in values)):
        raise PRLFError(f"{field}: expected a non-empty list of {what}, found {show(values)}")


def _mapping(doc: dict, key: str, where: str) -> dict:
    """``doc[key]`` as a mapping ({} when absent or null)."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PRLFError(f"{where}{key}: expected a mapping, found {show(value)}")
    return value


def _check_fields(obj, fields: set, where: str) -> None:
    """``obj`` is a mapping with exactly the keys ``fields``."""
    if not isinstance(obj, dict):
        raise PRLFError(f"{where}: expected an object, found {show(obj)}")
    missing, unknown = sorted(fields - set(obj)), sorted(map(str, set(obj) - fields))
    if missing or unknown:
        raise PRLFError(f"{where}: " + "; ".join(([f"missing field(s) {', '.join(missing)}"] if missing else [])
                                                 + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])))


@contextlib.contextmanager
def _named(where: str):
    """Prefix a PRLFError raised in the block with ``where`` (the file it came from)."""
    try:
        yield
    except PRLFError as exc:
        raise PRLFError(f"{where}{exc}") from None


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise PRLFError(f"{kind} name {name!r}: use letters, digits and . _ + - (it names a directory)")
    return name


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:KEY=VALUE,KEY=VALUE`` (``NAME:`` or ``NAME`` = no override) → (name, overrides)."""
    name, _, rest = text.partition(":")
    pairs = [p for p in rest.split(",") if p.strip()]
    return _check_name("variant", name.strip()), parse_pairs(pairs, f"--variant {text!r}:")


@dataclasses.dataclass
class Dataset:
    """One dataset of the grid: a preset and its data (a pickle, a cache directory, or ``None``:
    the synthetic set of that preset's shapes with ``synthetic`` sizes or the embedded default)."""

    name: str
    preset: str
    data: str | None = None
    synthetic: list | None = None

    def __post_init__(self):
        _check_name("dataset", self.name)
        where = f"datasets.{self.name}"
        if self.preset not in PRESETS:
            raise PRLFError(f"{where}.preset: expected one of {', '.join(PRESETS)}, found {show(self.preset)}")
        if self.data is not None and not (isinstance(self.data, str) and self.data):
            raise PRLFError(f"{where}.data: expected a file or directory path, found {show(self.data)}")
        if self.synthetic is not None and len(self.synthetic if isinstance(self.synthetic, list) else ()) != 3:
            raise PRLFError(f"{where}.synthetic: expected three sizes TRAIN, VALID, TEST, found {show(self.synthetic)}")
        _check_list(f"{where}.synthetic", self.synthetic, lambda n: is_int(n) and n >= 1, "positive integers", True)

    @classmethod
    def parse(cls, text: str) -> "Dataset":
        """``[NAME=]PRESET[:PATH]``; NAME defaults to the preset (no PATH) or the file's stem."""
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = "", text
        preset, _, path = rest.partition(":")
        if not name:
            name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0] if path else preset
        return cls(name.strip(), preset.strip(), os.path.abspath(path) if path else None)


@dataclasses.dataclass
class SweepSpec:
    """The grid and the settings shared by every cell (see ``from_args``)."""

    seeds: list
    variants: dict            # name -> PRLFConfig overrides and training settings (TRAIN_KEYS)
    datasets: list            # of Dataset
    train: dict = dataclasses.field(default_factory=dict)   # TrainConfig settings (not seed)
    model: dict = dataclasses.field(default_factory=dict)   # PRLFConfig overrides of every variant
    rates: list | None = None
    mask_seeds: list | None = None
    reference: str | None = None

    def __post_init__(self):
        """Check every field's type and the grid (one PRLFError line naming the field)."""
        _check_list("seeds", self.seeds, _seed, f"integer seeds in [{SEED_RANGE[0]}, {SEED_RANGE[1]})")
        if len(set(self.seeds)) != len(self.seeds):
            raise PRLFError(f"seeds {self.seeds}: give at least one, each once")
        if not (isinstance(self.variants, dict) and self.variants):
            raise PRLFError(f"variants: expected a mapping of at least one variant, found {show(self.variants)}")
        for name, overrides in self.variants.items():
            _check_settings(f"variants.{_check_name('variant', name)}", overrides)
        if not (isinstance(self.datasets, list) and all(isinstance(d, Dataset) for d in self.datasets)):
            raise PRLFError(f"datasets: expected a list of datasets, found {show(self.datasets)}")
        names = [d.name for d in self.datasets]
        if not names or len(set(names)) != len(names):
            raise PRLFError(f"datasets {names}: give at least one, each name once")
        _check_settings("train", self.train)
        _check_settings("set", self.model)
        _check_list("rates", self.rates, lambda r: is_number(r) and 0 <= r < 1, "missing rates in [0, 1)", True)
        _check_list("mask_seeds", self.mask_seeds, _seed, f"integer seeds in [{SEED_RANGE[0]}, {SEED_RANGE[1]})", True)
        if self.reference is not None and not isinstance(self.reference, str):
            raise PRLFError(f"reference: expected a variant name, found {show(self.reference)}")
        unknown = sorted(set(self.train) - set(TRAIN_KEYS))
        if unknown:
            raise PRLFError(f"unknown training setting(s) {', '.join(unknown)}; expected some of "
                            f"{', '.join(TRAIN_KEYS)} (the seed is the sweep's --seeds)")
        if self.reference is None:
            self.reference = "full" if "full" in self.variants else next(iter(self.variants))
        if self.reference not in self.variants:
            raise PRLFError(f"reference variant {self.reference!r} is not one of {', '.join(self.variants)}")

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_args(cls, yaml_path=None, seeds=None, variants=(), datasets=(), train=(), model=(),
                  rates=None, mask_seeds=None, reference=None, synthetic=None) -> "SweepSpec":
        """From a YAML file (optional) and command-line values, which replace the file's."""
        doc = load_yaml(yaml_path) if yaml_path else {}
        where = f"{yaml_path}: " if yaml_path else ""
        if variants:
            doc["variants"] = dict(parse_variant(v) for v in variants)
        if datasets:
            doc["datasets"] = {d.name: {"preset": d.preset, "data": d.data} for d in map(Dataset.parse, datasets)}
        for key, value in (("seeds", seeds), ("rates", rates), ("mask_seeds", mask_seeds),
                           ("reference", reference), ("synthetic", synthetic)):
            if value is not None:
                doc[key] = value
        doc["train"] = {**_mapping(doc, "train", where), **parse_pairs(train, "--train")}
        doc["set"] = {**_mapping(doc, "set", where), **parse_pairs(model, "--set")}
        return cls.from_doc(doc, yaml_path)

    @classmethod
    def from_doc(cls, doc: dict, source=None) -> "SweepSpec":
        """From the mapping of a sweep file ``source`` (or of the command line): each key's type
        is checked, and an error names ``source`` and the key."""
        where = f"{source}: " if source else ""
        unknown = sorted(map(str, set(doc) - _YAML_KEYS))
        if unknown:
            raise PRLFError(f"{where}unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_YAML_KEYS))}")
        base = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
        datasets = []
        for name, d in (_mapping(doc, "datasets", where) or {"mosi": {"preset": "mosi"}}).items():
            if not (isinstance(d, dict) and isinstance(d.get("preset"), str) and set(d) <= _DATASET_KEYS):
                raise PRLFError(f"{where}datasets.{name}: expected a mapping with 'preset' (and 'data' or "
                                f"'synthetic'), found {show(d)}")
            data = d.get("data")
            if data is not None and not isinstance(data, str):
                raise PRLFError(f"{where}datasets.{name}.data: expected a path, found {show(data)}")
            with _named(where):
                datasets.append(Dataset(_check_name("dataset", name), d["preset"],
                                        os.path.abspath(os.path.join(base, data)) if data else None,
                                        d.get("synthetic", doc.get("synthetic")) if not data else None))
        variants = _mapping(doc, "variants", where) or {"full": {}}
        variants = {k: {} if v is None else v for k, v in variants.items()}
        with _named(where):
            return cls(seeds=[1] if doc.get("seeds") is None else doc["seeds"], variants=variants, datasets=datasets,
                       train=_mapping(doc, "train", where), model=_mapping(doc, "set", where),
                       rates=doc.get("rates"), mask_seeds=doc.get("mask_seeds"), reference=doc.get("reference"))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "datasets": [dataclasses.asdict(d) for d in self.datasets]}

    @classmethod
    def from_dict(cls, d, source: str = "sweep.json") -> "SweepSpec":
        """From ``to_dict``'s form, as read back from ``source``: exactly the fields of a spec
        and of its datasets, each of the right type (one PRLFError line naming the field)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        dataset_fields = {f.name for f in dataclasses.fields(Dataset)}
        _check_fields(d, fields, f"{source}: spec")
        datasets = d["datasets"]
        if not isinstance(datasets, list):
            raise PRLFError(f"{source}: spec.datasets: expected a list, found {show(datasets)}")
        for i, x in enumerate(datasets):
            _check_fields(x, dataset_fields, f"{source}: spec.datasets[{i}]")
        with _named(f"{source}: spec: "):
            return cls(**{**d, "datasets": [Dataset(**x) for x in datasets]})

    def check_compatible(self, saved: "SweepSpec", sweep_dir: str) -> None:
        """A sweep directory may grow (more seeds, variants, datasets), never change its cells."""
        diffs = [k for k in ("train", "model", "rates", "mask_seeds") if getattr(self, k) != getattr(saved, k)]
        diffs += [f"variant {k}" for k, v in self.variants.items() if k in saved.variants and saved.variants[k] != v]
        old = {d.name: d for d in saved.datasets}
        diffs += [f"dataset {d.name}" for d in self.datasets if d.name in old and old[d.name] != d]
        if diffs:
            raise PRLFError(f"{sweep_dir} holds a sweep with other settings ({', '.join(diffs)}); its cells "
                            "would not match: run it again with its own settings or choose another --out")

    def grown_from(self, saved: "SweepSpec") -> "SweepSpec":
        """This grid together with the saved one (``check_compatible`` first): an invocation that
        names fewer seeds, variants or datasets continues the whole sweep, never shrinks it."""
        names = {d.name for d in saved.datasets}
        return dataclasses.replace(
            self, seeds=[*saved.seeds, *(s for s in self.seeds if s not in saved.seeds)],
            variants={**saved.variants, **self.variants},
            datasets=[*saved.datasets, *(d for d in self.datasets if d.name not in names)])

    # -- cells -------------------------------------------------------------------------------
    def cells(self) -> list:
        """(dataset, variant, seed) for every cell, seeds outermost: a sweep stopped early holds
        the first seeds of every dataset and variant, not all seeds of the first ones."""
        return [(d, v, s) for s in self.seeds for d in self.datasets for v in self.variants]

    def run_spec(self, sweep_dir: str, dataset: Dataset, variant: str, seed: int) -> RunSpec:
        """The run of a cell; its directory is ``cell_dir``. A variant's training settings
        replace the sweep's."""
        overrides = self.variants[variant]
        train = {**self.train, **{k: v for k, v in overrides.items() if k in TRAIN_KEYS}, "seed": seed}
        model = {**self.model, **{k: v for k, v in overrides.items() if k not in TRAIN_KEYS}}
        data = data_path(sweep_dir, dataset) if dataset.data is not None else None
        synthetic = tuple(int(n) for n in dataset.synthetic) if data is None and dataset.synthetic else None
        return RunSpec(dataset=dataset.preset, data=data, synthetic=synthetic, train=train, model=model,
                       rates=self.rates, mask_seeds=self.mask_seeds)


def cell_key(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}/{variant}/seed{seed}"


def cell_dir(sweep_dir: str, dataset: str, variant: str, seed: int) -> str:
    return os.path.join(os.path.abspath(sweep_dir), CELLS, dataset, variant, f"seed{seed}")


def data_path(sweep_dir: str, dataset: Dataset) -> str:
    """Where the cells read ``dataset``: the converted cache of a pickle (one per sweep), or the
    given cache directory itself."""
    if os.path.isdir(dataset.data):
        return dataset.data
    return os.path.join(os.path.abspath(sweep_dir), DATA, dataset.name)


class _Refused(Exception):
    """A YAML construct a sweep file may not use (message, line)."""


def _yaml_loader():
    """PyYAML's safe loader without anchors and aliases (an alias "bomb" expands exponentially)
    and with at most ``YAML_DEPTH`` levels of nesting (deeper would recurse without bound)."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _Refused("YAML anchors and aliases (& and *) are not accepted", line)
            self.depth += 1
            if self.depth > YAML_DEPTH:
                raise _Refused(f"nested more than {YAML_DEPTH} levels deep", line)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def load_yaml(path) -> dict:
    """The mapping of the sweep file ``path``: a regular file (a symlink the user made is
    followed) of at most ``YAML_LIMIT`` bytes, UTF-8, one YAML document of plain scalars,
    sequences and mappings. Every refusal is one PRLFError line naming the file."""
    import yaml

    real = os.path.realpath(path)
    try:
        text = read_text(os.path.dirname(real), os.path.basename(real), YAML_LIMIT)
    except OSError as exc:
        raise PRLFError(f"{path}: cannot read the sweep file ({exc.strerror or exc})") from None
    loader = None
    try:
        loader = _yaml_loader()(text)  # checks the characters already
        doc = loader.get_single_data()
    except _Refused as exc:
        raise PRLFError(f"{path}: line {exc.args[1]}: {exc.args[0]} in a sweep file") from None
    except yaml.YAMLError as exc:
        raise PRLFError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(doc, dict):
        raise PRLFError(f"{path}: expected a mapping with seeds, variants, datasets, ...")
    return doc
