"""What a sweep directory holds on disk, read as untrusted input: ``SWEEP/sweep.json`` (the grid
and one record per invocation) and each cell's committed ``results.json``. Every read follows no
symlink, refuses special files and is bounded (``prlf_fast.io.files``), and the content is
schema-checked before use: a damaged ``sweep.json`` is one PRLFError line naming the file and
field; a damaged ``results.json`` makes its cell unfinished, with a note naming the file.
"""
from __future__ import annotations

import json
import os
import stat

from prlf_fast.errors import PRLFError
from prlf_fast.io.atomic import LOCK, locked
from prlf_fast.io.files import MiB, read_text
from prlf_fast.io.rundir import REPORT, RESULTS
from prlf_fast.metrics import metric_names
from prlf_fast.study.spec import PRESETS, SWEEP_FILE, SweepSpec, is_int, is_number, show

STATE_LIMIT = 64 * MiB    # sweep.json: the grid and the invocations' records
RESULTS_LIMIT = 16 * MiB  # a cell's results.json (a few hundred KB at most)
# Fields of an invocation record (launch.Sweep._run) that the report reads, and their types.
INVOCATION = {"started": str, "command": str, "executor": str, "parallel": int, "threads_per_cell": int,
              "device": str, "cells": dict, "provenance": dict}


def lock(sweep_dir: str):
    """The sweep directory's lock (``SWEEP/.lock``), held by whoever writes into it."""
    return locked(os.path.join(sweep_dir, LOCK), f"the sweep {sweep_dir}")


def _load_json(directory: str, name: str, limit: int):
    """``directory/name`` parsed as JSON (FileNotFoundError when absent); PRLFError otherwise."""
    path = os.path.join(directory, name)
    try:
        text = read_text(directory, name, limit)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PRLFError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise PRLFError(f"{path} is not JSON this reader accepts (nested too deeply)") from None
    except ValueError as exc:
        raise PRLFError(f"{path} is not JSON ({str(exc)[:80]})") from None


def _check_invocation(record, where: str) -> None:
    if not isinstance(record, dict):
        raise PRLFError(f"{where}: expected an object, found {show(record)}")
    for key, kind in INVOCATION.items():
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and not is_int(value)):
            raise PRLFError(f"{where}.{key}: expected {kind.__name__}, found {show(value)}")
    wall = record.get("wall_seconds")
    if wall is not None and not is_number(wall):
        raise PRLFError(f"{where}.wall_seconds: expected a number or null, found {show(wall)}")
    for key, cell in record["cells"].items():
        if not (isinstance(cell, dict) and isinstance(cell.get("status"), str)):
            raise PRLFError(f"{where}.cells.{key}: expected an object with a string 'status', found {show(cell)}")
        seconds = cell.get("seconds")
        if seconds is not None and not is_number(seconds):
            raise PRLFError(f"{where}.cells.{key}.seconds: expected a number or null, found {show(seconds)}")


def read_state(sweep_dir: str) -> tuple[SweepSpec, list] | None:
    """The grid and the invocation records of ``SWEEP/sweep.json``, schema-checked; None when
    the directory holds none. Raises one PRLFError line naming the file and field."""
    path = os.path.join(sweep_dir, SWEEP_FILE)
    try:
        state = _load_json(sweep_dir, SWEEP_FILE, STATE_LIMIT)
    except FileNotFoundError:
        return None
    if not (isinstance(state, dict) and set(state) == {"spec", "invocations"}):
        raise PRLFError(f"{path} was not written by prlf-fast sweep: expected an object with 'spec' and "
                        f"'invocations', found {show(state)}")
    invocations = state["invocations"]
    if not isinstance(invocations, list):
        raise PRLFError(f"{path}: invocations: expected a list, found {show(invocations)}")
    for i, record in enumerate(invocations):
        _check_invocation(record, f"{path}: invocations[{i}]")
    return SweepSpec.from_dict(state["spec"], path), invocations


def _metrics(value, where: str, names) -> None:
    if not (isinstance(value, dict) and all(is_number(value.get(n)) for n in names)):
        raise PRLFError(f"{where}: expected the metrics {', '.join(names)} as numbers")


def _check_results(results) -> None:
    """Raise PRLFError naming the first field of ``results`` that the aggregation cannot use."""
    if not isinstance(results, dict):
        raise PRLFError(f"expected an object, found {show(results)}")
    dataset = results.get("dataset")
    if dataset not in PRESETS:
        raise PRLFError(f"dataset: expected one of {', '.join(PRESETS)}, found {show(dataset)}")
    names = metric_names(dataset)
    intra, inter = results.get("intra"), results.get("inter")
    if not (isinstance(intra, dict) and isinstance(intra.get("average"), dict)
            and isinstance(intra.get("per_rate"), list) and intra["per_rate"]):
        raise PRLFError("intra: expected 'average' and a non-empty 'per_rate'")
    _metrics(intra["average"].get("mean"), "intra.average.mean", names)
    for i, r in enumerate(intra["per_rate"]):
        if not (isinstance(r, dict) and is_number(r.get("rate"))):
            raise PRLFError(f"intra.per_rate[{i}]: expected an object with a numeric 'rate'")
        _metrics(r.get("mean"), f"intra.per_rate[{i}].mean", names)
    if not (isinstance(inter, dict) and isinstance(inter.get("average"), dict)
            and isinstance(inter.get("records"), list)):
        raise PRLFError("inter: expected 'average' and 'records'")
    _metrics(inter["average"].get("mean"), "inter.average.mean", names)
    for i, r in enumerate(inter["records"]):
        if not (isinstance(r, dict) and isinstance(r.get("config"), str) and "/" not in r["config"]):
            raise PRLFError(f"inter.records[{i}]: expected an object with a string 'config'")
        _metrics(r.get("metrics"), f"inter.records[{i}].metrics", names)
    if not any(r["config"] == "complete" for r in inter["records"]):
        raise PRLFError("inter.records: no 'complete' record")


def read_results(run_dir: str) -> tuple[dict | None, str | None]:
    """``(results, None)`` when ``run_dir`` holds committed results (``report.md`` and a
    readable, schema-checked ``results.json``); ``(None, None)`` when it holds none yet;
    ``(None, note)`` when they are damaged (the note names the file and field)."""
    try:
        committed = stat.S_ISREG(os.lstat(os.path.join(run_dir, REPORT)).st_mode)
        results = _load_json(run_dir, RESULTS, RESULTS_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except PRLFError as exc:
        return None, str(exc)
    if not committed:
        return None, f"{os.path.join(run_dir, REPORT)} is not a regular file"
    try:
        _check_results(results)
    except PRLFError as exc:
        return None, f"{os.path.join(run_dir, RESULTS)}: {exc}"
    return results, None


def is_finished(run_dir: str) -> bool:
    """Whether the cell ``run_dir`` holds committed, readable results: its own outcome (nothing
    of submitit's files is consulted)."""
    return read_results(run_dir)[0] is not None
