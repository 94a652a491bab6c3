"""A run directory: where each file of a run lives, and the readable log (``train.log``)."""
from __future__ import annotations

import json
import os
import sys
import time

from prlf_fast.errors import PRLFError
from prlf_fast.train.atomic import write_json, write_text

CONFIG, METRICS, LOG = "config.json", "metrics.jsonl", "train.log"
LAST, BEST = "last.safetensors", "best.safetensors"
RESULTS, REPORT = "results.json", "report.md"


class RunDir:
    """Paths of one run; only the writer (rank 0) creates or changes files."""

    def __init__(self, path: str, writer: bool = True, echo: bool = True):
        self.path, self.writer, self.echo = path, writer, echo
        self._log_lines: list[str] | None = None  # read from train.log on the first line logged

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def create(self, resume: bool) -> None:
        """Make the directory (or check it holds a run to resume) and check it is writable."""
        has_run = os.path.exists(self.file(CONFIG))
        if resume and not has_run:
            raise PRLFError(f"--resume: {self.path} holds no run ({CONFIG} is missing)")
        if not resume and has_run:
            raise PRLFError(f"{self.path} already holds a run; continue it with --resume "
                            "or choose another --out")
        if not self.writer:
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = self.file(".write-test")
            with open(probe, "w"):
                pass
            os.unlink(probe)
        except OSError as exc:
            raise PRLFError(f"cannot write to the output directory {self.path}: "
                            f"{exc.strerror or exc}") from exc

    def read_config(self) -> dict:
        path = self.file(CONFIG)
        if not os.path.isfile(path):
            raise PRLFError(f"{self.path} is not a prlf_fast run directory ({CONFIG} is missing)")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise PRLFError(f"{path} is not readable JSON: {exc}") from exc
        for key in ("model", "train", "data"):
            if key not in config:
                raise PRLFError(f"{path} has no {key!r} section; it was not written by prlf-fast train")
        return config

    def write_config(self, config: dict) -> None:
        if self.writer:
            write_json(self.file(CONFIG), config)

    def log(self, message: str) -> None:
        """Print a timestamped line to stderr and keep it in train.log (rewritten atomically)."""
        if not self.writer:
            return
        if self._log_lines is None:
            self._log_lines = []
            if os.path.isfile(self.file(LOG)):
                with open(self.file(LOG), encoding="utf-8") as f:
                    self._log_lines = f.read().splitlines()
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}"
        self._log_lines.append(line)
        if self.echo:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        if os.path.isdir(self.path):
            write_text(self.file(LOG), "\n".join(self._log_lines) + "\n")
