"""What every saved benchmark result records about where and how it was measured."""
import functools
import os
import platform
import subprocess

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def environment_info(command: str) -> dict:
    """Machine, device, versions, commit and the command, for every saved result."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        commit = None
    info = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "cpu": cpu_model(),
            "torch": torch.__version__, "python": platform.python_version(), "commit": commit,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(),
            "command": command}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info
