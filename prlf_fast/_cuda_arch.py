"""CUDA architectures: which to build (setup.py loads this file by path, before the package is
installed, so it imports nothing of the package and not torch), and whether a build covers a
device. Architectures use CMake's syntax: "90" = machine code (SASS) and PTX for sm_90,
"90-real" = machine code only, "90-virtual" = PTX only; lists separated by ";" or ",".
"""
from __future__ import annotations

import re

# Without TORCH_CUDA_ARCH_LIST and without a visible GPU: A100-class machine code, and Hopper
# machine code plus its PTX (which newer GPUs JIT-compile).
FALLBACK_ARCHS = "80-real;90"
_NAMED = {"Kepler": "3.5", "Maxwell": "5.0;5.2", "Pascal": "6.0;6.1", "Volta": "7.0", "Turing": "7.5",
          "Ampere": "8.0;8.6", "Ada": "8.9", "Hopper": "9.0", "Blackwell": "10.0;12.0"}


def from_torch_arch_list(text: str) -> str:
    """TORCH_CUDA_ARCH_LIST ("8.0 8.6;9.0+PTX", named generations too) in CMake's syntax
    ("80-real;86-real;90"). ValueError on an entry it cannot read."""
    archs = []
    for entry in re.split(r"[;\s,]+", text.strip()):
        if not entry:
            continue
        ptx = entry.endswith("+PTX")
        base = entry[:-4] if ptx else entry
        for version in _NAMED.get(base, base).split(";"):
            m = re.fullmatch(r"(\d+)\.(\d+)([af]?)", version)
            if not m:
                raise ValueError(f"TORCH_CUDA_ARCH_LIST entry {entry!r} is not like 8.0, 9.0+PTX or Ampere")
            arch = f"{m.group(1)}{m.group(2)}{m.group(3)}"
            archs.append(arch if ptx else f"{arch}-real")
    if not archs:
        raise ValueError("TORCH_CUDA_ARCH_LIST is empty")
    return ";".join(dict.fromkeys(archs))


def default_archs(env: dict, capabilities) -> tuple[str, str]:
    """(CMake architectures, why), as PyTorch extensions choose them: PRLF_FAST_CUDA_ARCHS (CMake
    syntax) if set, else TORCH_CUDA_ARCH_LIST, else the visible GPUs' capabilities (machine code
    for each, PTX for the newest), else ``FALLBACK_ARCHS``."""
    if env.get("PRLF_FAST_CUDA_ARCHS"):
        return env["PRLF_FAST_CUDA_ARCHS"], "PRLF_FAST_CUDA_ARCHS"
    if env.get("TORCH_CUDA_ARCH_LIST"):
        return from_torch_arch_list(env["TORCH_CUDA_ARCH_LIST"]), "TORCH_CUDA_ARCH_LIST"
    caps = sorted(set(tuple(c) for c in capabilities))
    if caps:
        archs = [f"{major}{minor}-real" for major, minor in caps[:-1]] + ["%d%d" % caps[-1]]
        return ";".join(archs), "the visible GPUs"
    return FALLBACK_ARCHS, "no TORCH_CUDA_ARCH_LIST and no visible GPU"


def covers(archs: str, capability) -> bool:
    """Whether a build for ``archs`` runs on a device of compute ``capability`` (major, minor):
    machine code for the same major and a minor ≤ the device's (an "a"/"f" suffixed build only on
    its exact capability), or PTX for a capability ≤ the device's."""
    device = tuple(capability)
    for arch in re.split(r"[;,\s]+", archs.strip()):
        m = re.fullmatch(r"(\d+?)(\d)([af]?)(-real|-virtual)?", arch)
        if not m:
            continue
        built, specific, kind = (int(m.group(1)), int(m.group(2))), m.group(3), m.group(4)
        if kind != "-virtual":
            if built == device if specific else (built[0] == device[0] and built[1] <= device[1]):
                return True
        if kind != "-real" and not specific and built <= device:
            return True
    return False
