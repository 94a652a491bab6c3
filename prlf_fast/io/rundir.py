"""A run directory: where each file of a run lives, the readable log (``train.log``), and the
session a writer holds on it (lock, recovery of an interrupted commit)."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from prlf_fast.errors import PRLFError
from prlf_fast.io.atomic import LOCK, locked, needs_recovery, output_dir, recover, write_json, write_text
from prlf_fast.io.files import MiB, read_text
from prlf_fast.io.schema import validate_config

CONFIG, METRICS, LOG = "config.json", "metrics.jsonl", "train.log"
LAST, BEST = "last.safetensors", "best.safetensors"
RESULTS, REPORT = "results.json", "report.md"
CONFIG_LIMIT = 16 * MiB


def check_path(path: str, what: str) -> None:
    """Raise a PRLFError when ``path`` (as the OS gave it) cannot be written as UTF-8 text: the
    run's config.json, log and report name it, so such a run could never be read back."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise PRLFError(f"{what} {os.fspath(path).encode('utf-8', 'surrogateescape')!r} is not valid "
                        "UTF-8 in this locale; rename it (prlf-fast keeps paths as UTF-8 text)") from None


class RunDir:
    """Paths of one run; only the writer (rank 0) creates or changes files."""

    def __init__(self, path: str, writer: bool = True, echo: bool = True):
        check_path(path, "run directory")
        self.path, self.writer, self.echo = path, writer, echo
        self._log_lines: list[str] | None = None  # read from train.log on the first line logged

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def check(self, resume: bool) -> None:
        """Raise a PRLFError when the directory does (not) hold a run, against ``resume``."""
        has_run = os.path.exists(self.file(CONFIG))
        if resume and not has_run:
            raise PRLFError(f"--resume: {self.path} holds no run ({CONFIG} is missing)")
        if not resume and has_run:
            raise PRLFError(f"{self.path} already holds a run; continue it with --resume "
                            "or choose another --out")

    @contextlib.contextmanager
    def session(self, resume: bool | None):
        """Hold the directory for writing: create it if needed, lock it (a second writer fails at
        once), check it against ``resume`` (None: no check) and bring it to its last committed
        state (docs/training.md). A directory this call created is removed again when the block
        fails before writing anything into it. Non-writers (ranks > 0) only check."""
        if not self.writer:
            if resume is not None:
                self.check(resume)
            yield
            return
        with output_dir(self.path):
            if resume is not None:
                self.check(resume)
            recover(self.path)
            yield

    def settle(self) -> None:
        """Finish (or discard) a commit that a killed writer left (see ``atomic.Commit``), so a
        reader sees one whole state. Skipped while a live writer holds the directory (it
        finishes its own commit) or when the directory is read-only."""
        if not os.path.isdir(self.path) or not needs_recovery(self.path):
            return
        try:
            with locked(self.file(LOCK), self.path):
                recover(self.path)
        except PRLFError:
            pass

    def read_config(self) -> dict:
        """The run's config.json, checked against the schema (``train.schema``)."""
        self.settle()
        path = self.file(CONFIG)
        try:
            config = json.loads(read_text(self.path, CONFIG, CONFIG_LIMIT))
        except (FileNotFoundError, NotADirectoryError):
            raise PRLFError(f"{self.path} is not a prlf_fast run directory ({CONFIG} is missing)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PRLFError(f"{path} is not readable JSON: {exc}") from exc
        validate_config(config, path)
        return config

    def write_config(self, config: dict) -> None:
        """Write config.json after checking it against the schema (nothing is written when a
        field is invalid, e.g. a data path that is not UTF-8)."""
        validate_config(config, self.file(CONFIG))
        if self.writer:
            write_json(self.file(CONFIG), config)

    def log(self, message: str) -> None:
        """Print a timestamped line to stderr and keep it in train.log (rewritten atomically)."""
        if not self.writer:
            return
        if self._log_lines is None:
            self._log_lines = []
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self._log_lines = read_text(self.path, LOG).splitlines()
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}"
        self._log_lines.append(line)
        if self.echo:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        if os.path.isdir(self.path):
            write_text(self.file(LOG), "\n".join(self._log_lines) + "\n")
