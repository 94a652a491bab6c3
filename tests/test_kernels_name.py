"""The repository's ``kernels/`` folder (installed as ``prlf_fast.kernels``) never stands in for
another distribution's top-level ``kernels`` (Hugging Face's, which transformers imports) when the
repository root is on sys.path, as it is for ``python -m`` and ``python -c`` run there."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import kernels, prlf_fast.kernels, sys; "
         "print(kernels.__file__); print(prlf_fast.kernels.masked_attention.__module__)")


def _run(code, pythonpath):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_another_distributions_kernels_is_imported_not_this_folder(tmp_path):
    other = tmp_path / "site" / "kernels"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("class CUDAProperties: pass\n")
    proc = _run(PROBE + "; from kernels import CUDAProperties", [ROOT, str(tmp_path / "site")])
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split()
    assert first == str(other / "__init__.py") and second == "prlf_fast.kernels.attention"


def test_without_another_kernels_the_import_fails_as_if_the_folder_were_not_there(tmp_path):
    code = ("import sys\n"
            "saved = list(sys.path)\n"
            "sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"   # no installed 'kernels'
            "try:\n    import kernels\nexcept ModuleNotFoundError as exc:\n    print('missing', exc.name)\n"
            "sys.path[:] = saved\n"
            "import prlf_fast.kernels\nprint(prlf_fast.kernels.__name__)\n")
    proc = _run(code, [ROOT])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["missing", "kernels", "prlf_fast.kernels"], proc.stdout
