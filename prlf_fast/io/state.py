"""Schemas of a checkpoint's metadata (``io.checkpoint``): the trainer's position, the optimizer's
and the scheduler's state, and the tensor names. Each ``check_*`` raises one PRLFError naming
the entry and field; nothing reaches ``load_state_dict`` that these did not accept (a scheduler
dict can only hold the keys, types and lengths of the live scheduler's own, so it cannot set
other attributes)."""
from __future__ import annotations

import math
import re

import torch

from prlf_fast.errors import PRLFError

ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
RNG_KEYS = ("torch", "cuda", "mask")
RESUME_KEYS = ("epoch", "batch", "step", "best_score", "best_epoch", "stale", "stopped_early")
_OPTIM_NAME = re.compile(r"^(0|[1-9][0-9]{0,8})/([A-Za-z_]+)$")


def check_int(v, low: int = 0) -> bool:
    """Whether ``v`` is an int (not a bool) ≥ ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


_int = check_int


def _number(v, finite: bool = True) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (math.isfinite(v) or not finite))


def _fail(where: str, field: str, value, expected: str):
    text = repr(value)
    raise PRLFError(f"{where}{'.' + field if field else ''}: expected {expected}, found "
                    f"{text if len(text) <= 60 else text[:57] + '...'}")


def check_trainer(d, where: str) -> None:
    """The ``trainer`` entry: a resumable position (``RESUME_KEYS`` and ``partial``) or the
    selection record of best.safetensors (``epoch``, ``step``, ``select``)."""
    if not isinstance(d, dict):
        _fail(where, "", d, "an object")
    fields = {
        "epoch": (_int, "an integer ≥ 0"), "batch": (_int, "an integer ≥ 0"),
        "step": (_int, "an integer ≥ 0"), "stale": (_int, "an integer ≥ 0"),
        "best_score": (lambda v: v is None or _number(v, finite=False), "a number or null"),
        "best_epoch": (lambda v: v is None or _int(v, 1), "an integer ≥ 1 or null"),
        "stopped_early": (lambda v: isinstance(v, bool), "true or false"),
        "partial": (_partial, 'null or {"sums": {name: number} or null, "count": integer ≥ 0}'),
        "select": (_select, '{"metric": str, "rate": number in [0, 1), "score": number, "best": bool}'),
    }
    for key, value in d.items():
        if key not in fields:
            _fail(where, key, value, f"no such field (known: {', '.join(fields)})")
        ok, expected = fields[key]
        if not ok(value):
            _fail(where, key, value, expected)


def _partial(v) -> bool:
    if v is None:
        return True
    if not (isinstance(v, dict) and set(v) == {"sums", "count"} and _int(v["count"])):
        return False
    sums = v["sums"]
    return sums is None or (isinstance(sums, dict) and all(isinstance(k, str) and _number(x)
                                                             for k, x in sums.items()))


def _select(v) -> bool:
    return (isinstance(v, dict) and set(v) == {"metric", "rate", "score", "best"}
            and isinstance(v["metric"], str) and _number(v["rate"]) and 0 <= v["rate"] < 1
            and _number(v["score"], finite=False) and isinstance(v["best"], bool))


def check_position(d: dict, epochs: int, steps_per_epoch: int, where: str) -> None:
    """The resumable position against this run: every field present, epoch ≤ ``epochs``, batch
    ≤ ``steps_per_epoch``, best epoch ≤ epoch."""
    missing = [k for k in RESUME_KEYS if k not in d]
    if missing:
        raise PRLFError(f"{where}: missing field(s) {', '.join(missing)}")
    if d["epoch"] > epochs:
        _fail(where, "epoch", d["epoch"], f"at most the run's {epochs} epochs")
    if d["batch"] > steps_per_epoch:
        _fail(where, "batch", d["batch"], f"at most the {steps_per_epoch} steps of an epoch")
    if d["best_epoch"] is not None and d["best_epoch"] > d["epoch"] + 1:
        _fail(where, "best_epoch", d["best_epoch"], f"at most epoch {d['epoch'] + 1}")


def check_like(saved, live, where: str, exact=("params", "lr_lambdas", "_lr_lambdas")) -> None:
    """``saved`` (JSON) has the shape of ``live`` (a fresh ``state_dict()``): the same keys, list
    lengths and kinds of value; numbers finite and ≥ 0; keys in ``exact`` equal to live's."""
    if isinstance(live, dict):
        if not isinstance(saved, dict):
            _fail(where, "", saved, "an object")
        if set(saved) != set(live):
            extra, missing = sorted(set(saved) - set(live)), sorted(set(live) - set(saved))
            raise PRLFError(f"{where}: " + "; ".join(
                ([f"unknown key(s) {', '.join(map(str, extra))}"] if extra else [])
                + ([f"missing key(s) {', '.join(map(str, missing))}"] if missing else [])))
        for k, v in live.items():
            value = saved[k]
            if k in exact and value != v:
                _fail(where, str(k), value, repr(v))
            check_like(value, v, f"{where}.{k}", exact)
    elif isinstance(live, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(live):
            _fail(where, "", saved, f"a list of {len(live)}")
        for i, (a, b) in enumerate(zip(saved, live)):
            check_like(a, b, f"{where}[{i}]", exact)
    elif isinstance(live, bool) or live is None or isinstance(live, str):
        if type(saved) is not type(live):
            _fail(where, "", saved, type(live).__name__ if live is not None else "null")
    elif isinstance(live, (int, float)):
        if not (_number(saved) and saved >= 0 and (isinstance(live, float) or isinstance(saved, int))):
            _fail(where, "", saved, f"a finite {'number' if isinstance(live, float) else 'integer'} ≥ 0")
    else:
        _fail(where, "", saved, f"a value like {live!r}")


def check_tensor_names(tensors: dict, where: str) -> None:
    """Only ``model/…``, ``optim/<param>/<key>`` (AdamW's keys) and ``rng/<torch|cuda|mask>``."""
    for name in tensors:
        kind, _, rest = name.partition("/")
        ok = ((kind == "model" and rest) or (kind == "rng" and rest in RNG_KEYS)
              or (kind == "optim" and (m := _OPTIM_NAME.match(rest)) and m.group(2) in ADAM_KEYS))
        if not ok:
            raise PRLFError(f"{where}: unexpected tensor {name!r} (expected model/…, "
                            f"optim/<param>/<{'|'.join(ADAM_KEYS)}> or rng/<{'|'.join(RNG_KEYS)}>)")


def check_optimizer(saved, tensors: dict, optimizer, where: str) -> None:
    """The ``optimizer`` entry and its ``optim/…`` tensors against the live AdamW ``optimizer``."""
    if not (isinstance(saved, dict) and set(saved) == {"param_groups", "state"}
            and isinstance(saved["state"], dict)):
        _fail(where, "", saved, 'an object {"param_groups": [...], "state": {...}}')
    check_like(saved["param_groups"], optimizer.state_dict()["param_groups"], f"{where}.param_groups")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for pid, values in saved["state"].items():
        if not (pid.isdigit() and int(pid) < len(params) and isinstance(values, dict)
                and all(k in ADAM_KEYS and _number(v) and v >= 0 for k, v in values.items())):
            _fail(where, f"state.{pid}", values, f"a parameter index < {len(params)} with AdamW's "
                                                 "numeric state")
    for name, t in tensors.items():
        pid, key = name.split("/", 1)
        if int(pid) >= len(params) or not t.is_floating_point():
            _fail(where, name, f"{t.dtype} tensor", f"a floating tensor of a parameter index < {len(params)}")
        want = () if key == "step" else tuple(params[int(pid)].shape)
        if tuple(t.shape) != want and not (key == "step" and t.numel() == 1):
            _fail(where, name, tuple(t.shape), f"shape {want}")
        if not bool(torch.isfinite(t).all()) or (key in ("step", "exp_avg_sq", "max_exp_avg_sq")
                                                 and bool((t < 0).any())):
            _fail(where, name, "non-finite or negative values", "finite values (≥ 0 for step and squares)")


def check_rng(rng: dict, expected: dict, where: str) -> None:
    """RNG states: each a uint8 tensor of the shape of the live generator's state in ``expected``."""
    for name, t in rng.items():
        if name in expected and (t.dtype != torch.uint8 or t.shape != expected[name].shape):
            _fail(where, f"rng/{name}", f"{t.dtype} {tuple(t.shape)}",
                  f"torch.uint8 {tuple(expected[name].shape)}")
