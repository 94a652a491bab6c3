"""``prlf-fast --help``, every sub-command's ``--help`` and argument errors import no heavy module
(torch, numpy, matplotlib, safetensors): checked in a fresh interpreter, so modules that an
earlier test imported cannot hide an import."""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "numpy", "matplotlib", "safetensors", "triton")

# Runs in a fresh interpreter: walks the parser (so sub-commands added later are covered too),
# calls main() with --help and with an unknown option for each command path, and reports the
# heavy modules loaded after each call, with the exit code.
PROBE = r"""
import argparse, contextlib, io, json, sys
HEAVY = %r
from prlf_fast.cli import build_parser, main

def paths(parser, prefix=()):
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from paths(sub, prefix + (name,))

report = []
for path in list(paths(build_parser())):
    for extra in (["--help"], ["--no-such-option"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*path, *extra])
            except SystemExit as exc:
                code = exc.code
        report.append({"argv": [*path, *extra], "code": code, "stdout": out.getvalue(),
                       "heavy": [m for m in HEAVY if m in sys.modules]})
print(json.dumps(report))
""" % (HEAVY,)


@pytest.fixture(scope="module")
def probe():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_command_is_probed(probe):
    commands = {tuple(r["argv"][:-1]) for r in probe}
    for expected in [(), ("train",), ("eval",), ("info",), ("data",), ("data", "inspect")]:
        assert expected in commands


def test_help_imports_no_heavy_module(probe):
    for r in probe:
        if r["argv"][-1] == "--help":
            assert r["code"] == 0 and "usage: prlf-fast" in r["stdout"], r
            assert r["heavy"] == [], f"prlf-fast {' '.join(r['argv'])} imported {r['heavy']}"


def test_argument_errors_import_no_heavy_module(probe):
    for r in probe:
        if r["argv"][-1] == "--no-such-option":
            assert r["code"] == 2, r
            assert r["heavy"] == [], f"prlf-fast {' '.join(r['argv'])} imported {r['heavy']}"


def test_public_names_are_imported_on_first_use():
    code = ("import sys, prlf_fast; assert 'torch' not in sys.modules, 'import prlf_fast imported torch'\n"
            "from prlf_fast import PRLF, PRLFConfig, Batch, PRLFOutput, MODALITIES, PRESETS\n"
            "import prlf_fast.model, prlf_fast.batch\n"
            "assert PRLF is prlf_fast.model.PRLF and Batch is prlf_fast.batch.Batch\n"
            "assert {'PRLF', 'Batch', '__version__'} <= set(dir(prlf_fast))\n"
            "try:\n    prlf_fast.no_such_name\nexcept AttributeError as e:\n    assert 'no_such_name' in str(e)\n"
            "else:\n    raise AssertionError('no AttributeError')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
