"""Provenance of a run: what produced it, with which software, on which machine, when.

``collect`` gives the dict stored under ``provenance`` in ``config.json`` (at training start)
and ``results.json`` (at evaluation start); ``line`` renders it as the one line of report.md.
No torch import at module level: the CLI records the command line through ``set_command``.
The thread count and OpenMP wait policy it records are set by ``prlf_fast.threads``.
"""
from __future__ import annotations

import functools
import os
import platform
import shlex
import subprocess
import sys
import time

_COMMAND: list | None = None


def set_command(argv) -> None:
    """Record the command line (``prlf-fast`` plus its arguments) that this process runs."""
    global _COMMAND
    _COMMAND = ["prlf-fast", *map(str, argv)]


def command_line() -> str:
    """The recorded ``prlf-fast …`` command, else this process's own ``sys.argv``."""
    return shlex.join(_COMMAND if _COMMAND is not None else sys.argv)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """``HEAD`` of the checkout the package is imported from (``+dirty`` when it has changes);
    None when it is not a git checkout (an installed wheel) or git is unavailable."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def collect(device="cpu", started: float | None = None) -> dict:
    """The provenance dict: command, versions, commit, device, threads (and ``cpu_threads``:
    their source, the CPU budget, the OpenMP wait policy; ``threads.record``), the allocator's
    settings (``malloc``: ``malloc.record``), host and start time
    (``started``: a ``time.time()``, default now; written as UTC ISO 8601)."""
    import torch

    import prlf_fast
    from prlf_fast import malloc, threads

    started = time.time() if started is None else started
    return {
        "command": command_line(),
        "prlf_fast": prlf_fast.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_threads": threads.record(),
        "malloc": malloc.record(),
        "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }


def line(p: dict) -> str:
    """One readable line of a provenance dict (for report.md)."""
    commit = p.get("git_commit")
    parts = [f"`{p['command']}`", f"prlf_fast {p['prlf_fast']}" + (f" ({commit[:12]}"
             + ("+dirty" if commit.endswith("+dirty") else "") + ")" if commit else ""),
             f"torch {p['torch']}", f"CUDA {p['cuda'] or 'none'}", f"Triton {p['triton'] or 'none'}",
             f"{p['device']} ({p['device_name']})", f"{p['threads']} threads", f"host {p['host']}",
             f"started {p['started']}"]
    return ", ".join(parts)

