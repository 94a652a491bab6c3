"""Property-based fuzzing of the MMSA loader (issue 11 §1): valid small MMSA pickles, mutated by
flipped bytes, inserted opcodes (with random arguments), deleted runs and truncation, then
converted to a cache. Every outcome must be a clean load or a ``DataError`` (``UnsafePickleError``
included) naming the file: never a crash, a hang, another exception type, or a write outside the
example's temporary folder.

The default runs a fixed, derandomized set of examples sized for CI. Run longer, with fresh random
examples, by setting ``PRLF_FUZZ_EXAMPLES`` (see docs/data.md)::

    PRLF_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:cacheprovider tests/test_data_fuzz.py
"""
import collections
import os
import pickle
import pickletools
import signal
import sys
import tempfile
import warnings
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hostile_pickles import deep_list, ops, tiny_mmsa, top_entry
from prlf_fast.data import DataError, convert
from prlf_fast.data.safe_pickle import MAX_NESTING

EXAMPLES = int(os.environ.get("PRLF_FUZZ_EXAMPLES", "0")) or 300
HARD_LIMIT_S = 60  # one example running this long is a hang, whatever the machine's load


def _seeds() -> list:
    """Valid pickles in every protocol and in the layouts the loader must handle."""
    data = tiny_mmsa(sizes=(2, 1, 1))
    seeds = [pickle.dumps(data, protocol=p) for p in range(6)]
    ordered = collections.OrderedDict((s, collections.OrderedDict(v)) for s, v in data.items())
    seeds.append(pickle.dumps(ordered, protocol=2))
    old = pickle.dumps(data, protocol=2)  # numpy 1.16's module paths
    seeds.append(old.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core._multiarray_umath\n_reconstruct"))
    seeds.append(pickle.dumps({**data, "test": data["valid"]}, protocol=4))  # aliased splits
    seeds.append(top_entry(pickle.dumps(data, protocol=3), ops("extra"), deep_list(MAX_NESTING - 2)))
    return [pickletools.optimize(s) if i % 2 else s for i, s in enumerate(seeds)]


SEEDS = _seeds()
OPCODES = sorted({op.code.encode("latin1") for op in pickletools.opcodes})


@st.composite
def mutated(draw) -> bytes:
    blob = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip", "insert", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            blob[at:at] = draw(st.sampled_from(OPCODES)) + draw(st.binary(max_size=9))
        elif kind == "delete":
            del blob[at:at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del blob[at:]
    return bytes(blob)


_WRITES = {"watch": None, "seen": [], "hooked": False}


def _audit(event, args):
    """Record every write-mode open, removal or rename while an example runs, with its path."""
    root = _WRITES["watch"]
    if root is None:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2]
        writing = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        paths = [args[0]] if writing else []
    elif event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "shutil.rmtree"):
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        path = os.path.realpath(os.fsdecode(path))
        if os.path.commonpath([path, root]) != root:
            _WRITES["seen"].append((event, path))




def _hook():
    """Install the audit hook once, when first needed (audit hooks stay for the process)."""
    if not _WRITES["hooked"]:
        sys.addaudithook(_audit)
        _WRITES["hooked"] = True


def _hang(signum, frame):
    raise TimeoutError(f"one fuzz example ran over {HARD_LIMIT_S} s")


@settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), database=None,
          derandomize="PRLF_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(blob=mutated())
def test_mutated_pickles_load_or_fail_cleanly(blob):
    _hook()
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.realpath(tmp)
        path = os.path.join(root, "fuzz.pkl")
        with open(path, "wb") as f:
            f.write(blob)
        previous = signal.signal(signal.SIGALRM, _hang)
        signal.alarm(HARD_LIMIT_S)
        _WRITES["watch"], _WRITES["seen"] = root, []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                convert(path, os.path.join(root, "cache"))
        except DataError as exc:
            event(type(exc).__name__)  # shown by --hypothesis-show-statistics
            assert path in str(exc), str(exc)
            assert not os.path.exists(os.path.join(root, "cache", "meta.json"))
        else:
            event("loaded")
            assert os.path.exists(os.path.join(root, "cache", "meta.json"))
        finally:
            _WRITES["watch"] = None
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert not _WRITES["seen"], _WRITES["seen"]


def test_write_watch_sees_writes(tmp_path):
    """The watch the fuzz test relies on reports a write outside the folder, and only that."""
    _hook()
    (tmp_path / "inside").mkdir()
    _WRITES["watch"], _WRITES["seen"] = str(tmp_path / "inside"), []
    try:
        (tmp_path / "inside" / "ok").write_text("x")
        (tmp_path / "outside").write_text("x")
        os.close(os.open(tmp_path / "outside2", os.O_WRONLY | os.O_CREAT))
        (tmp_path / "outside").read_text()
    finally:
        _WRITES["watch"] = None
    assert [p for _, p in _WRITES["seen"]] == [str(tmp_path / "outside"), str(tmp_path / "outside2")]


def test_seeds_load():
    """The unmutated seeds are valid (so mutations start from files that load)."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, blob in enumerate(SEEDS):
            path = os.path.join(tmp, f"seed{i}.pkl")
            with open(path, "wb") as f:
                f.write(blob)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert sum(convert(path, os.path.join(tmp, f"cache{i}")).values()) == 3


@pytest.mark.parametrize("blob", [b"", b"\x80", b".", b"\x80\x05.", b"N.", b"(.", b"NN."])
def test_degenerate_files(tmp_path, blob):
    path = tmp_path / "d.pkl"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=str(path)):
        convert(str(path), tmp_path / "cache")
