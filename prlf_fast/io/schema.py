"""The schema of a run's ``config.json``, checked as a whole when it is read.

Sections: ``model`` (checked by ``PRLFConfig`` itself, so every field it knows is accepted and
missing fields take its defaults), ``train`` (by ``TrainConfig``, plus ``select_metric`` against
the dataset), ``data`` (a file path or the synthetic set's sizes and seed), ``eval`` (rates and
seeds), and the optional ``prlf_fast`` (version string) and ``provenance`` (free-form object).
"""
from __future__ import annotations

from prlf_fast.config import PRESETS, PRLFConfig, TrainConfig
from prlf_fast.errors import PRLFError

SECTIONS = ("model", "train", "data", "eval")
OPTIONAL = {"prlf_fast": str, "provenance": dict}
SYNTHETIC_KEYS = ("n_train", "n_valid", "n_test", "seed")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _model(section) -> tuple[PRLFConfig | None, list]:
    try:
        cfg = PRLFConfig.from_dict(section)
    except (TypeError, ValueError) as exc:
        return None, [f"model: {exc}"]
    if cfg.dataset not in PRESETS:
        return None, [f"model.dataset: {cfg.dataset!r} is not one of {', '.join(sorted(PRESETS))}"]
    return cfg, []


def _train(section, model: PRLFConfig | None) -> list:
    try:
        train = TrainConfig.from_dict(section)
    except (TypeError, ValueError) as exc:
        return [f"train: {exc}"]
    if model is not None:
        try:
            train.check_metric(model.dataset)
        except PRLFError as exc:
            return [f"train.{exc}"]
    return []


def _data(section) -> list:
    if set(section) != {"path", "synthetic"}:
        return [f"data: expected the keys 'path' and 'synthetic', found {sorted(section)}"]
    path, synthetic = section["path"], section["synthetic"]
    if (path is None) == (synthetic is None):
        return ["data: exactly one of 'path' and 'synthetic' must be set"]
    if path is not None and not (isinstance(path, str) and path):
        return [f"data.path: expected a file or directory path, found {path!r}"]
    if path is not None and not _utf8(path):
        return [f"data.path: {path.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; rename it"]
    if synthetic is not None:
        if not isinstance(synthetic, dict) or set(synthetic) != set(SYNTHETIC_KEYS):
            return [f"data.synthetic: expected an object with {', '.join(SYNTHETIC_KEYS)}, found {synthetic!r}"]
        bad = [f"data.synthetic.{k}: expected a positive integer, found {synthetic[k]!r}"
               for k in SYNTHETIC_KEYS[:3] if not (_is_int(synthetic[k]) and synthetic[k] >= 1)]
        if not _is_int(synthetic["seed"]):
            bad.append(f"data.synthetic.seed: expected an integer, found {synthetic['seed']!r}")
        return bad
    return []


def _eval(section) -> list:
    if set(section) != {"rates", "seeds"}:
        return [f"eval: expected the keys 'rates' and 'seeds', found {sorted(section)}"]
    rates, seeds, bad = section["rates"], section["seeds"], []
    if not (isinstance(rates, list) and rates and all(_is_number(r) and 0 <= r < 1 for r in rates)):
        bad.append(f"eval.rates: expected a non-empty list of missing rates in [0, 1), found {rates!r}")
    if not (isinstance(seeds, list) and seeds and all(_is_int(s) for s in seeds)):
        bad.append(f"eval.seeds: expected a non-empty list of integer mask seeds, found {seeds!r}")
    return bad


def validate_config(config, source: str) -> None:
    """Raise one PRLFError naming every invalid field of the run config ``config`` (read from
    ``source``)."""
    if not isinstance(config, dict):
        raise PRLFError(f"{source}: expected a JSON object with the sections {', '.join(SECTIONS)}, "
                        f"found {type(config).__name__}")
    errors = [f"{k}: missing section" for k in SECTIONS if k not in config]
    errors += [f"{k}: unknown section" for k in config if k not in SECTIONS and k not in OPTIONAL]
    errors += [f"{k}: expected {kind.__name__}, found {config[k]!r}" for k, kind in OPTIONAL.items()
               if k in config and not isinstance(config[k], kind)]
    errors += [f"{k}: expected an object, found {config[k]!r}" for k in SECTIONS
               if k in config and not isinstance(config[k], dict)]
    present = {k: config[k] for k in SECTIONS if isinstance(config.get(k), dict)}
    model = None
    if "model" in present:
        model, problems = _model(present["model"])
        errors += problems
    if "train" in present:
        errors += _train(present["train"], model)
    if "data" in present:
        errors += _data(present["data"])
    if "eval" in present:
        errors += _eval(present["eval"])
    if errors:
        raise PRLFError(f"{source} is not a valid run config: " + "; ".join(errors))
