"""Thin build driver: configures and builds CMakeLists.txt (Ninja) into ``prlf_fast._C``.

Environment knobs (see README):
  PRLF_FAST_SKIP_EXT=1       pure-Python install, no extension
  PRLF_FAST_CUDA=0|1         force CUDA sources off/on (default: on iff torch has CUDA and nvcc matches)
  PRLF_FAST_CUDA_ARCHS=...   CUDA architectures in CMake syntax ("80-real;90"); default, as PyTorch
                             extensions do: TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX"), else the visible
                             GPUs, else 80-real;90 (prlf_fast/_cuda_arch.py)
  PRLF_FAST_BUILD_TYPE=Release
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _load_cuda_arch():
    """prlf_fast/_cuda_arch.py, loaded by path: the package itself is not importable yet."""
    spec = importlib.util.spec_from_file_location("_prlf_cuda_arch", ROOT / "prlf_fast" / "_cuda_arch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _visible_capabilities(torch):
    return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []


def _nvcc_version(nvcc):
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _cuda_plan(torch):
    """Decide whether to build CUDA sources: torch must have CUDA and nvcc's major must match."""
    forced = os.environ.get("PRLF_FAST_CUDA")
    torch_cuda = torch.version.cuda
    nvcc = shutil.which("nvcc") or (
        os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None
    )
    nvcc_ver = _nvcc_version(nvcc) if nvcc and os.path.exists(nvcc) else None
    if forced == "0":
        return False, nvcc, nvcc_ver, "disabled by PRLF_FAST_CUDA=0"
    if not torch_cuda:
        if forced == "1":
            raise RuntimeError("PRLF_FAST_CUDA=1 but this torch has no CUDA (torch.version.cuda is None)")
        return False, nvcc, nvcc_ver, "torch has no CUDA"
    if nvcc_ver is None:
        if forced == "1":
            raise RuntimeError("PRLF_FAST_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
        return False, nvcc, nvcc_ver, "nvcc not found"
    if nvcc_ver.split(".")[0] != torch_cuda.split(".")[0] and forced != "1":
        return False, nvcc, nvcc_ver, f"nvcc {nvcc_ver} does not match torch CUDA {torch_cuda}"
    return True, nvcc, nvcc_ver, "torch has CUDA and nvcc matches"


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11
        import torch

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        with_cuda, nvcc, nvcc_ver, why = _cuda_plan(torch)
        archs, archs_why = _load_cuda_arch().default_archs(os.environ, _visible_capabilities(torch)) \
            if with_cuda else (None, None)
        build_type = os.environ.get("PRLF_FAST_BUILD_TYPE", "Release")
        py_ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
        args = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path};{pybind11.get_cmake_dir()}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DPRLF_OUTPUT_DIR={out_dir}",
            f"-DPRLF_OUTPUT_NAME={Path(self.get_ext_filename(ext.name)).name}",
            f"-DPRLF_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
            f"-DPRLF_CXX11_ABI={abi}",
            f"-DPRLF_TORCH_VERSION={torch.__version__}",
            f"-DPRLF_TORCH_CUDA={torch.version.cuda or ''}",
            f"-DPRLF_NVCC_VERSION={nvcc_ver or ''}",
            f"-DPRLF_PYTHON_VERSION={py_ver}",
        ]
        if with_cuda:
            args += [f"-DCMAKE_CUDA_ARCHITECTURES={archs}", f"-DCMAKE_CUDA_COMPILER={nvcc}"]
        print(f"prlf_fast: building extension (CUDA: {with_cuda}, {why}"
              + (f"; architectures {archs} from {archs_why})" if with_cuda else ")"), flush=True)
        subprocess.run(args, check=True)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "--parallel", jobs], check=True)
        info = {
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda_built": with_cuda,
            "cuda_reason": why,
            "nvcc": nvcc_ver,
            "cuda_archs": archs,
            "python": py_ver,
            "cxx11_abi": bool(abi),
            "build_type": build_type,
        }
        # The package compares this with the running torch before it loads the .so.
        for target in {out_dir / "_build_info.json", ROOT / "prlf_fast" / "_build_info.json"}:
            if target.parent.is_dir():
                target.write_text(json.dumps(info, indent=2) + "\n")


skip_ext = os.environ.get("PRLF_FAST_SKIP_EXT") == "1"
setup(
    ext_modules=[] if skip_ext else [CMakeExtension("prlf_fast._C")],
    cmdclass={} if skip_ext else {"build_ext": CMakeBuild},
)
