"""``prlf-fast`` command line. Each module of this package with a ``register(subparsers)``
function contributes one sub-command; errors from bad input exit 2 with one clear line.
Nothing here imports torch at module level: ``main`` sets the OpenMP wait policy first."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from prlf_fast.errors import reported
from prlf_fast.provenance import set_command
from prlf_fast.malloc import configure_malloc
from prlf_fast.threads import configure_openmp

class Parser(argparse.ArgumentParser):
    """An argument error is one line naming the command's help, and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"prlf-fast: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="prlf-fast", description="PRLF sentiment analysis under missing modalities: train, evaluate, data tools.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for command in sub.choices.values():  # --debug also after the sub-command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def printable_streams() -> None:
    """stdout/stderr write any text in any locale: what the encoding cannot show (a path's
    undecodable byte, a non-ASCII help text under LANG=C) becomes a backslash escape."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv=None) -> int:
    """Run one sub-command (``prlf_fast.errors.reported``: one line and exit 2 for bad input,
    SIGTERM as SIGINT, exit 130). Bounds the OpenMP spin-wait before any sub-command imports
    torch (``prlf_fast.threads``)."""
    configure_openmp()
    configure_malloc()
    printable_streams()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    set_command(argv)
    return reported(lambda: args.func(args), args.debug)
