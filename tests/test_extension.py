"""The compiled extension: build metadata, graceful degradation, and opcheck of every op."""
import json
import os
import subprocess
import sys

import pytest
import torch

from prlf_fast import _extension
from prlf_fast.ops import implementation

ext = pytest.mark.skipif(_extension.extension() is None, reason=f"extension unavailable: {_extension.problem()}")


def _fisher_sample():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(5, 3, 7), r(3, 6, 7), r(3, 6), r(3, 4, 6), r(3, 4))


# Sample inputs for each op the extension may register; every registered op must appear here.
OPCHECK_SAMPLES = {
    "fisher_reliability": _fisher_sample,
}


@ext
def test_build_info_matches_running_torch():
    info = _extension.build_info()
    assert info["torch"] == torch.__version__
    assert info["cuda_built"] == bool(torch.version.cuda) or not info["cuda_built"]
    assert info["cxx11_abi"] == bool(torch._C._GLIBCXX_USE_CXX11_ABI)
    assert _extension.registered_ops(), "the extension registers no op"


@ext
@pytest.mark.parametrize("name", sorted(OPCHECK_SAMPLES))
def test_opcheck_every_registered_op(name):
    if name not in _extension.registered_ops():
        pytest.skip(f"prlf_fast::{name} is not registered by this build")
    torch.library.opcheck(getattr(torch.ops.prlf_fast, name).default, OPCHECK_SAMPLES[name]())


@ext
def test_every_registered_op_has_an_opcheck_sample():
    assert set(_extension.registered_ops()) <= set(OPCHECK_SAMPLES)


def test_stale_build_is_refused_with_rebuild_hint(tmp_path):
    stale = tmp_path / "_build_info.json"
    stale.write_text(json.dumps({"torch": "0.0.1", "cuda_built": False}))
    module, info, problem = _extension._load(stale)
    assert module is None and info["torch"] == "0.0.1"
    assert "built for torch 0.0.1" in problem


def test_package_works_and_warns_once_without_the_extension():
    """No usable extension: one warning naming the rebuild command, reference ops, a working model."""
    code = """
import warnings, torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from prlf_fast import PRLF, PRLFConfig
    from prlf_fast.ops import implementation
    assert implementation("fisher_reliability", "fast", "cpu") == "reference"
    assert implementation("fisher_reliability", "fast", "cuda") == "reference"
    import prlf_fast.ops as ops
    c, f = ops.fisher_reliability(torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5),
                                  torch.randn(3, 3, 5), torch.randn(3, 3))
    assert f.shape == (2, 3)
msgs = [str(w.message) for w in caught if "prlf_fast._C" in str(w.message)]
assert len(msgs) == 1, msgs
assert "PRLF_FAST_DISABLE_EXT" in msgs[0] and "pip install --no-build-isolation" in msgs[0]
print("ok")
"""
    env = {**os.environ, "PRLF_FAST_DISABLE_EXT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_info_command_reports_every_op():
    out = subprocess.run([sys.executable, "-m", "prlf_fast.info"], capture_output=True, text=True, check=True)
    for op in ("masked_attention", "interact_iteration", "fisher_reliability"):
        assert op in out.stdout
    assert "torch " + torch.__version__ in out.stdout
    assert implementation("masked_attention", "reference", "cpu") == "reference"
