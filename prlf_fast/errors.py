"""User-facing errors: the CLI prints their message and exits 2 without a traceback."""
from __future__ import annotations

import signal
import sys
import threading


class PRLFError(Exception):
    """Base of every error caused by bad input (files, shapes, options) rather than a bug."""


# Errors that mean "bad input" or a failing environment (any OSError: a full disk, an I/O
# error; its message names the file), not "bug": one line, exit 2, traceback only with debug.
USER_ERRORS = (PRLFError, OSError, ValueError)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def reported(fn, debug: bool = False) -> int:
    """Run ``fn()`` as a command: its int result is the exit code (None: 0). A user error is
    one line ``prlf-fast: error: ...`` on stderr and 2 (re-raised with ``debug``); SIGTERM stops
    it as SIGINT does (the trainer saves a checkpoint to resume from; any command unwinds,
    leaving no partial output): ``prlf-fast: interrupted`` and 130."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(fn() or 0)
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"prlf-fast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prlf-fast: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
