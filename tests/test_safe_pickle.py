"""The restricted unpickler, fault class by fault class: type confusion, allocation from a number,
unbounded nesting, numpy's historical module paths, aliasing between splits (issue 11 §1).
Cases that crashed the process run in a subprocess, so a regression fails only that test."""
import copy
import os
import pickle
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from hostile_pickles import (array_interface_dict, call, deep_list, deep_tuple, glob, nested, ops,
                             splice, tiny_mmsa, top_entry)
from prlf_fast.cli import main
from prlf_fast.data import DataError, NonFiniteWarning, UnsafePickleError, load_mmsa, prepare_mmsa
from prlf_fast.data import loader
from prlf_fast.data.safe_pickle import BUDGET_FACTOR, BUDGET_FLOOR, MAX_NESTING, safe_load

NDARRAY = glob("numpy", "ndarray")
RECONSTRUCT = glob("numpy.core.multiarray", "_reconstruct")


def write(tmp_path, blob: bytes, name="hostile.pkl") -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


def assert_refused(tmp_path, blob: bytes, error, match: str) -> None:
    """Loading ``blob`` raises ``error`` matching ``match``, with the file named in the message."""
    path = write(tmp_path, blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        with pytest.raises(error, match=match) as info:
            load_mmsa(path)
    assert path in str(info.value)


# Runs the CLI and prints the process's own peak RSS (VmHWM, kB) last on stdout. The rusage of a
# child (wait4) would not do: on Linux it includes the parent's RSS at fork, which is large in a
# long test session.
_CLI_WITH_PEAK = """import sys
from prlf_fast.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as f:
        print(next(line.split()[1] for line in f if line.startswith("VmHWM")), flush=True)
sys.exit(code)
"""


def isolated_cli(*argv):
    """Run ``prlf-fast ARGV`` in a child process: (exit status, stderr, its peak RSS in MiB)."""
    proc = subprocess.run([sys.executable, "-c", _CLI_WITH_PEAK, *argv], capture_output=True, text=True)
    return proc.returncode, proc.stderr, int(proc.stdout.split()[-1]) / 1024


def assert_one_line(err: str, path: str, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prlf-fast: error: "), err[-2000:]
    assert path in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def storages(splits):
    """Data pointers of every returned tensor's storage, per split."""
    return {s: {t.untyped_storage().data_ptr() for t in v.values() if t.numel()} for s, v in splits.items()}


def load_quiet(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        return load_mmsa(path)


# --- 1. type confusion -------------------------------------------------------------------------

@pytest.mark.slow
def test_array_interface_object_is_refused_not_dereferenced(tmp_path):
    """An OrderedDict given an instance ``__array_interface__`` at 0x1000 made numpy read (and
    the sanitiser write) that address; it segfaulted."""
    path = write(tmp_path, splice(tiny_mmsa(), train__audio=array_interface_dict(0x1000)))
    status, err, _ = isolated_cli("data", "convert", path, str(tmp_path / "c"))
    assert status == 2, (status, err[-2000:])
    assert_one_line(err, path, "state")
    assert not (tmp_path / "c").exists()


STATE = ops({"x": 1})
BUILT_ARRAY = ops(np.zeros(2, np.float32))


@pytest.mark.parametrize("target", [
    glob("collections", "OrderedDict") + b")R" + STATE + b"b",  # the OrderedDict becomes a dict
    b"]" + STATE + b"b",
    call("builtins", "set") + STATE + b"b",
    ops(bytearray(b"ab")) + STATE + b"b",
    ops(np.float32(1)) + STATE + b"b",
    NDARRAY + STATE + b"b",
    # a second BUILD on an array or dtype numpy's reconstructor made and already built
    BUILT_ARRAY + ops((1, (2,), np.dtype("f4"), False, b"\0" * 8)) + b"b",
    ops(np.dtype("f4")) + ops((3, ">", None, None, None, -1, -1, 0)) + b"b",
    # slot state (setattr on the array) instead of numpy's state tuple
    RECONSTRUCT + b"(" + NDARRAY + ops((0,)) + ops(b"b") + b"tR" + ops((None, {"shape": (2,)})) + b"b",
    # state after the array was used (placed into a tuple)
    RECONSTRUCT + b"(" + NDARRAY + ops((0,)) + ops(b"b") + b"tR" + b"2\x850"
    + ops((1, (2,), np.dtype("f4"), False, b"\0" * 8)) + b"b",
    # the protocol-5 reconstructor's arrays take no state
    pickle.dumps(np.zeros(2), protocol=5)[11:-1] + ops((1, (1,), np.dtype("f8"), False, b"\0" * 8)) + b"b",
], ids=["ordered_dict", "list", "set", "bytearray", "scalar", "class", "array_twice", "dtype_twice",
        "slots", "used_array", "frombuffer_array"])
def test_state_only_on_fresh_numpy_arrays_and_dtypes(tmp_path, target):
    assert_refused(tmp_path, splice(tiny_mmsa(), train__id=target), UnsafePickleError, "state")


def test_ordered_dicts_become_plain_dicts(tmp_path):
    import collections
    data = collections.OrderedDict((s, collections.OrderedDict(v)) for s, v in tiny_mmsa().items())
    path = write(tmp_path, pickle.dumps(data, protocol=2))
    raw = safe_load(path)
    assert type(raw) is dict and all(type(v) is dict for v in raw.values())
    assert list(raw) == ["train", "valid", "test"] and list(raw["train"]) == list(data["train"])
    assert load_quiet(path)["valid"]["text"].shape == (2, 4, 6)


class _ArrayLike:
    """An object numpy would convert through ``__array_interface__`` / ``__array__``."""
    touched = False

    @property
    def __array_interface__(self):
        _ArrayLike.touched = True
        return np.zeros(3, np.float32).__array_interface__

    def __array__(self, dtype=None, copy=None):
        _ArrayLike.touched = True
        return np.zeros(3, np.float32)


@pytest.mark.parametrize("value", [_ArrayLike(), [_ArrayLike()], {"a": 1}, "1.0", [[1.0], [2.0, 3.0]],
                                   np.array([1 + 2j, 3j])],
                         ids=["array_like", "list_of_array_like", "dict", "str", "ragged", "complex"])
def test_only_arrays_and_plain_numbers_reach_numpy(value):
    data = tiny_mmsa()
    data["valid"]["audio_lengths"] = value
    _ArrayLike.touched = False
    with pytest.raises(DataError, match=r"mem: split 'valid' key 'audio_lengths'"):
        prepare_mmsa(data, source="mem")
    assert not _ArrayLike.touched


@pytest.mark.parametrize("protocol", range(6))
def test_admitted_values_load_as_themselves(tmp_path, protocol):
    import collections
    extra = [{1, 2}, frozenset({"a", (1, "b")}), complex(1, 2), bytearray(b"ab"), b"xy", "\u00e9\u4e2d",
             (None, True, False, 2 ** 70, -1.5), collections.OrderedDict(b=1, a=2), np.float32(0.25),
             np.str_("ab"), np.int64(-3), np.array([[1, 2]], dtype=">i2"), np.array(["x", "yz"]),
             np.array([b"q"]), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
             np.array([None, [1], "s"], dtype=object)]
    blob = pickle.dumps({"extra": extra}, protocol=protocol)
    raw = safe_load(write(tmp_path, blob))["extra"]
    assert len(raw) == len(extra)
    for got, want in zip(raw, pickle.loads(blob)["extra"]):  # what numpy itself makes of them
        assert type(got) is (dict if isinstance(want, dict) else type(want))
        if isinstance(want, np.ndarray):
            assert got.dtype == want.dtype and got.flags.f_contiguous == want.flags.f_contiguous
            assert got.tolist() == want.tolist()
        else:
            assert got == want


@pytest.mark.parametrize("blob", [b"]2a", b"}\x94K\x00h\x00s", b"\x8f\x94(h\x00\x90"],
                         ids=["list", "dict", "set"])
def test_no_container_holds_itself(tmp_path, blob):
    """DUP or GET of a container, then inserting it into itself: refused (no cycles)."""
    assert_refused(tmp_path, b"\x80\x04" + blob + b".", UnsafePickleError, "into itself")


def test_keys_hash_in_constant_time(tmp_path):
    """One big tuple, stored once, used as a key 200k times: each SETITEM would hash it again."""
    big = b"(" + b"N" * 100_000 + b"t\x94"  # MARK, 100k None, TUPLE, MEMOIZE (as 0)
    assert_refused(tmp_path, b"\x80\x04}" + big + b"0" + b"h\x00Ns" * 200_000 + b".", UnsafePickleError, "key")


# --- 2. allocation from a number and the budget ----------------------------------------------------

def _long(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


@pytest.mark.parametrize("blob, message", [
    (b"\x80\x02" + call("builtins", "bytearray", b"J" + struct.pack("<i", 1_500_000_000)) + b".", "number"),
    (b"\x80\x02" + call("builtins", "bytearray", _long(2 ** 40)) + b".", "number"),
    (b"\x80\x02" + call("numpy", "ndarray", ops((10 ** 6, 10 ** 6))) + b".", "number"),
    (b"\x80\x02" + call("numpy.core.multiarray", "_reconstruct", NDARRAY, ops((10 ** 6, 10 ** 6)), ops(b"b"))
     + b".", "number"),
    (b"\x80\x03" + RECONSTRUCT + b"(" + NDARRAY + ops((0,)) + ops(b"b") + b"tR"
     + ops((1, (10 ** 6, 10 ** 6), np.dtype("f4"), False, b"")) + b"b.", "holds 0 bytes"),
    (b"\x80\x03" + RECONSTRUCT + b"(" + NDARRAY + ops((0,)) + ops(b"b") + b"tR"
     + ops((1, (10 ** 6, 10 ** 6), np.dtype("O"), False, [None])) + b"b.", "holds 1 items"),
    (b"\x80\x03" + call("numpy.core.numeric", "_frombuffer", ops(b"\0" * 8), ops(np.dtype("f4")),
                        ops((10 ** 6, 10 ** 6)), ops("C")) + b".", "holds 8 bytes"),
    (b"\x80\x03}r\xff\xff\xff\xff.", "missing split"),  # a memo index is no allocation size
    (b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 62) + b".", "truncated"),
    (b"\x80\x04\x96" + struct.pack("<Q", 2 ** 40) + b".", "truncated"),
    (b"\x80\x04\x95" + struct.pack("<Q", 2 ** 50) + b"N.", "truncated"),
], ids=["bytearray_1.5e9", "bytearray_2^40", "ndarray_call", "reconstruct_shape", "build_shape",
        "build_object_shape", "frombuffer_shape", "memo_index", "bytes_length",
        "bytearray_length", "frame_length"])
def test_allocation_from_a_number_is_refused(tmp_path, blob, message):
    assert_refused(tmp_path, blob, DataError, message)


@pytest.mark.slow
def test_bytearray_from_a_number_touches_no_memory(tmp_path):
    """The 84-byte file that made the loader touch 1.7 GB: refused, one line, exit 2, small RSS."""
    blob = b"\x80\x02" + call("builtins", "bytearray", b"J" + struct.pack("<i", 1_500_000_000)) + b"."
    path = write(tmp_path, blob)
    status, err, peak_mib = isolated_cli("data", "inspect", path)
    assert status == 2
    assert_one_line(err, path, "number")
    assert peak_mib < 1000, peak_mib


def test_budget_bounds_what_a_small_file_allocates(tmp_path):
    """Each byte of this file (EMPTY_SET) costs ~224 bytes of memory, far above the budget."""
    n = 200_000
    assert 224 * n > BUDGET_FACTOR * (n + 5) + BUDGET_FLOOR
    assert_refused(tmp_path, b"\x80\x04(" + b"\x8f" * n + b"l.", DataError,
                   rf"memory budget of \d+ MiB \({BUDGET_FACTOR}× the file's size")


# --- 3. nesting --------------------------------------------------------------------------------

@pytest.mark.slow
def test_deep_tuple_key_does_not_crash(tmp_path):
    """A dict key that is a tuple nested 10⁶ deep segfaulted while hashing."""
    blob = top_entry(pickle.dumps(tiny_mmsa(), protocol=3), deep_tuple(10 ** 6), b"N")
    path = write(tmp_path, blob)
    status, err, _ = isolated_cli("data", "inspect", path)
    assert status == 2, (status, err[-2000:])
    assert_one_line(err, path, f"nested deeper than {MAX_NESTING}")


@pytest.mark.parametrize("value", [
    deep_list(10 ** 4),
    nested(b"}K\x00", b"s", 10 ** 4),  # dicts as values
    nested(b"(", b"t", 10 ** 4),  # protocol-0 tuples (MARK ... TUPLE)
    nested(b"(", b"l", 10 ** 4),  # protocol-0 lists
    b"(" * 10 ** 4 + b"N" + b"0" * 10 ** 4,  # marks alone (POP_MARK... as POPs of empty stacks)
], ids=["lists", "dicts", "mark_tuples", "mark_lists", "marks"])
def test_deep_nesting_is_refused_naming_the_file(tmp_path, value):
    assert_refused(tmp_path, splice(tiny_mmsa(), train__audio_lengths=value), DataError,
                   f"nested deeper than {MAX_NESTING}")


def test_lists_nested_a_million_deep(tmp_path):
    """numpy raised a bare ValueError naming no file. A million empty lists also exceed the
    memory budget (each costs 64 bytes for one byte of file), which may be what reports it."""
    assert_refused(tmp_path, splice(tiny_mmsa(), train__audio_lengths=deep_list(10 ** 6)), DataError,
                   f"nested deeper than {MAX_NESTING}|memory budget")


def test_nesting_bound_is_exact(tmp_path):
    """The top-level dict is level 1: a value nested ``MAX_NESTING - 1`` deep under it loads."""
    base = pickle.dumps(tiny_mmsa(), protocol=3)
    ok = write(tmp_path, top_entry(base, ops("extra"), deep_list(MAX_NESTING - 1)), "ok.pkl")
    assert load_quiet(ok)["train"]["text"].shape == (3, 4, 6)
    raw = safe_load(ok)["extra"]
    for _ in range(MAX_NESTING - 2):
        (raw,) = raw
    assert raw == []
    deep = write(tmp_path, top_entry(base, ops("extra"), deep_list(MAX_NESTING)), "deep.pkl")
    with pytest.raises(DataError, match=rf"deep\.pkl: .*nested deeper than {MAX_NESTING}"):
        load_mmsa(deep)


def test_inspect_shows_keys_that_are_not_strings(tmp_path, capsys):
    data = tiny_mmsa()
    data["train"][("a", 1.5, None)] = np.zeros(2)
    data["train"][7] = "x"
    path = write(tmp_path, pickle.dumps(data, protocol=4))
    assert main(["data", "inspect", path]) == 0
    out = capsys.readouterr().out
    assert "('a', 1.5, None)" in out and "\n  7 " in out and "str" in out
    deep = write(tmp_path, top_entry(pickle.dumps(tiny_mmsa(), protocol=3), deep_tuple(5000), b"N"), "deep.pkl")
    assert main(["data", "inspect", deep]) == 2
    assert_one_line(capsys.readouterr().err, deep, "nested deeper")


# --- 4. numpy's historical module paths -------------------------------------------------------------

def test_numpy_116_module_paths_load(tmp_path):
    """NumPy 1.16 named ``numpy.core._multiarray_umath._reconstruct`` and ``.scalar``."""
    data = tiny_mmsa()
    data["scale"] = np.float64(0.5)
    blob = pickle.dumps(data, protocol=2)
    for name in (b"_reconstruct", b"scalar"):
        new = blob.replace(b"numpy._core.multiarray\n" + name, b"numpy.core._multiarray_umath\n" + name)
        assert new != blob
        blob = new
    path = write(tmp_path, blob)
    raw = safe_load(path)
    assert raw["scale"] == 0.5 and type(raw["scale"]) is np.float64
    np.testing.assert_array_equal(load_quiet(path)["test"]["text"].numpy(), data["test"]["text"])


def test_python2_pickles_load(tmp_path):
    """Python 2 wrote str data (SHORT_BINSTRING), ``__builtin__`` and ``OrderedDict([[k, v]])``."""
    data = np.arange(3, dtype=np.float32).tobytes()
    array = (b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87Rq\x03"
             b"(K\x01K\x03\x85cnumpy\ndtype\nq\x04U\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xff"
             b"J\xff\xff\xff\xffK\x00tb\x89U\x0c" + data + b"tb")
    blob = (b"\x80\x02}(U\x01a" + array + b"U\x01occollections\nOrderedDict\n](](U\x01kK\x01ee\x85R"
            b"U\x01sc__builtin__\nset\n](K\x01e\x85Ru.")
    raw = safe_load(write(tmp_path, blob))
    np.testing.assert_array_equal(raw["a"], np.arange(3, dtype=np.float32))
    assert raw["o"] == {"k": 1} and type(raw["o"]) is dict and raw["s"] == {1}


def test_modules_outside_numpy_are_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "prlf_probe_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nndarray = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    had_f2py = "numpy.f2py" in sys.modules
    for module, name in [("prlf_probe_module", "ndarray"), ("numpy.f2py", "main"),
                         ("numpy.prlf_probe_module", "ndarray"), ("numpy", "load"),
                         ("numpy.core.multiarray", "normalize_axis_index"), ("numpy", "ndarray.__new__")]:
        blob = b"\x80\x04" + glob(module, name) + b")R."
        path = write(tmp_path, blob)
        with pytest.raises(UnsafePickleError, match=rf"refused global '{module}\.{name}'"):
            load_mmsa(path)
    assert not marker.exists() and "prlf_probe_module" not in sys.modules
    assert had_f2py or "numpy.f2py" not in sys.modules


def test_numpy_objects_under_any_numpy_path(tmp_path):
    """A numpy object is admitted by what it is, wherever numpy itself defines or re-exports it."""
    blob = pickle.dumps(np.arange(3.0), protocol=2)
    for old, new in [(b"numpy\nndarray", b"numpy._core.numeric\nndarray"),
                     (b"numpy._core.multiarray\n_reconstruct", b"numpy.core._multiarray_umath\n_reconstruct")]:
        assert old in blob
        blob = blob.replace(old, new)
    np.testing.assert_array_equal(safe_load(write(tmp_path, blob)), np.arange(3.0))


# --- 5. aliasing ----------------------------------------------------------------------------------

def load_warning(tmp_path, data):
    """load_mmsa of ``data`` pickled: (splits, the one NonFiniteWarning's message)."""
    path = write(tmp_path, pickle.dumps(data, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = load_mmsa(path)
    (message,) = [str(w.message) for w in caught if issubclass(w.category, NonFiniteWarning)]
    return out, message


def test_valid_and_test_the_same_dict(tmp_path):
    data = tiny_mmsa(sizes=(3, 2, 2))
    data["test"] = data["valid"]
    out, message = load_warning(tmp_path, data)
    assert "valid/audio: 1" in message and "test/audio: 1" in message and "replaced 3 " in message
    for key, value in out["valid"].items():
        assert torch.equal(value, out["test"][key])
    assert not storages(out)["valid"] & storages(out)["test"]


def test_array_shared_by_two_splits(tmp_path):
    data = tiny_mmsa(sizes=(3, 2, 3))
    data["test"]["audio"] = data["train"]["audio"]  # float32, one −inf
    data["test"]["text"] = data["train"]["text"]  # float32, finite: shared without copy, once
    out, message = load_warning(tmp_path, data)
    assert "train/audio: 1" in message and "test/audio: 1" in message and "replaced 3 " in message
    expected = np.nan_to_num(data["train"]["audio"], neginf=0)
    for split in ("train", "test"):
        np.testing.assert_array_equal(out[split]["audio"].numpy(), expected)
        np.testing.assert_array_equal(out[split]["text"].numpy(), data["train"]["text"])
    s = storages(out)
    assert not s["train"] & s["test"] and not s["train"] & s["valid"] and not s["valid"] & s["test"]


def test_loader_leaves_the_unpickled_objects_untouched(tmp_path, monkeypatch):
    path = write(tmp_path, pickle.dumps(tiny_mmsa(), protocol=4))
    seen = []

    def keep(p):
        seen.append(safe_load(p))
        seen.append(copy.deepcopy(seen[0]))
        return seen[0]

    monkeypatch.setattr(loader, "safe_load", keep)
    load_quiet(path)
    raw, before = seen
    assert raw.keys() == before.keys()
    for split in before:
        assert raw[split].keys() == before[split].keys()
        for key, value in before[split].items():
            np.testing.assert_array_equal(raw[split][key], value)
    assert np.isneginf(raw["train"]["audio"]).sum() == 1

    data = tiny_mmsa()
    snapshot = copy.deepcopy(data)
    splits, _ = prepare_mmsa(data, copy=False)
    for split in snapshot:
        for key, value in snapshot[split].items():
            np.testing.assert_array_equal(data[split][key], value)
    assert not storages(splits)["train"] & storages(splits)["test"]


# --- every hostile file through the CLI: one line, exit 2 ----------------------------------------

HOSTILE = {
    "bytearray": b"\x80\x02" + call("builtins", "bytearray", _long(2 ** 40)) + b".",
    "state_on_dict": splice(tiny_mmsa(), train__audio=glob("collections", "OrderedDict") + b")R" + STATE + b"b"),
    "deep_lists": splice(tiny_mmsa(), train__audio_lengths=deep_list(10 ** 5)),
    "budget": b"\x80\x04(" + b"\x8f" * 200_000 + b"l.",
    "numpy_global": b"\x80\x04" + glob("numpy", "load") + b")R.",
}


@pytest.mark.parametrize("command", ["inspect", "convert", "train"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_cli_hostile_files_one_line_exit_2(tmp_path, capsys, command, case):
    path = write(tmp_path, HOSTILE[case])
    argv = {"inspect": ["data", "inspect", path],
            "convert": ["data", "convert", path, str(tmp_path / "cache")],
            "train": ["train", "--data", path, "--out", str(tmp_path / "run"), "--epochs", "1"]}[command]
    assert main(argv) == 2
    assert_one_line(capsys.readouterr().err, path)
    assert not (tmp_path / "cache").exists()


def test_numeric_lists_with_shared_references_are_refused():
    """A list referenced many times expands exponentially in numpy (2.6 kB of pickle → a 61 MB
    array, 25 kB → 64 GB), past the load's budget, which sees each reference as 8 bytes."""
    from prlf_fast.data.mmsa import _plain_numbers

    row = [0.0, 1.0]
    assert _plain_numbers([[0.0, 1.0], [0.0, 1.0]])
    assert not _plain_numbers([row, row])
    assert not _plain_numbers([[row], [row]])


def test_sample_texts_are_strings_within_the_budget(tmp_path):
    """ids/raw_text go to texts.<id>.json: only strings, and no more characters than the load's
    budget (many references to one long string would be written out once each)."""
    from prlf_fast.data.ids import sample_texts

    path = write(tmp_path, b"x" * 100)
    assert sample_texts({"test": {"id": np.array(["a", b"b"], dtype=object)}}, path) == {"test": {"id": ["a", "b"]}}
    with pytest.raises(DataError, match=r"key 'id' holds a list; expected strings"):
        sample_texts({"test": {"id": [["a"] * 3]}}, path)
    long = "y" * (1 << 20)
    with pytest.raises(DataError, match="memory budget"):
        sample_texts({"test": {"raw_text": [long] * 40}}, path)
