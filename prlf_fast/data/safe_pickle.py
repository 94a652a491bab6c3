"""A restricted unpickler for MMSA files: a pickle machine in Python that runs every opcode itself,
so a file gets exactly what numpy's own pickles hold, built only the way numpy builds it.

- numpy arrays: ``_reconstruct(ndarray, (0,), b'b')`` followed by one BUILD with numpy's state
  ``(1, shape, dtype, fortran, data)`` whose data is exactly as long as shape and dtype say, or
  protocol 5's ``_frombuffer(buffer, dtype, shape, order)`` with the same check; dtypes:
  ``dtype(code, False, True)`` for a plain (non-structured) type plus at most one BUILD with
  numpy's state for that type; numpy scalars: ``scalar(dtype, data)``.
- Python values: None, bools, numbers, str, bytes, lists, tuples, dicts, sets, frozensets,
  ``complex(re, im)``, ``bytearray(data)``, ``_codecs.encode(text, 'latin1')`` (bytes in protocol-2
  files); an ``OrderedDict`` becomes a plain ``dict``.

A numpy name is admitted by the object it resolves to among numpy's already imported modules (any
of numpy's own spellings, e.g. ``numpy.core._multiarray_umath._reconstruct``); nothing is ever
imported. State (BUILD) goes only to arrays and dtypes the reconstructors above made in this load
and not yet used or built; containers are complete before they are placed in another, which makes
the nesting depth known when an object is made: deeper than ``MAX_NESTING`` is refused before
anything hashes or walks it. Everything the load allocates is counted against a budget of
``BUDGET_FACTOR`` × the file's size + ``BUDGET_FLOOR``; no size is ever taken from a bare number.
"""
from __future__ import annotations

import codecs
import os
import re
import struct
import sys
import types

import numpy as np

from prlf_fast.data.errors import DataError, UnsafePickleError

MAX_NESTING = 32  # containers inside containers; the top-level dict is level 1, MMSA files use 3
BUDGET_FACTOR = 16  # memory a load may allocate, per byte of the file ...
BUDGET_FLOOR = 16 << 20  # ... plus this much

_CONTAINERS = (tuple, list, dict, set, frozenset, np.ndarray)
_SCALARS = (str, bytes, int, float, bool, type(None), complex, bytearray)
_DTYPE_CODE = re.compile(r"(b1|[iu][1248]|f(2|4|8|12|16)|c(8|16|24|32)|O[48]|[US][1-9][0-9]{0,8})")
_LATIN1 = ("latin1", "latin-1")
_LIST_SLOT, _DICT_ITEM, _MEMO_ITEM, _OBJECT = 8, 64, 96, 128  # bytes charged (CPython estimates)


class _Corrupt(Exception):
    """Damaged input: becomes ``DataError('FILE: truncated or corrupt pickle (...)')``."""


class _Global:
    """What GLOBAL pushes for an admitted name: a token, usable only through REDUCE/NEWOBJ."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<global {self.name}>"


RECONSTRUCT, SCALAR, FROMBUFFER, NDARRAY, DTYPE = (_Global(n) for n in (
    "numpy._reconstruct", "numpy.scalar", "numpy._frombuffer", "numpy.ndarray", "numpy.dtype"))
SET, FROZENSET, COMPLEX, BYTEARRAY, ORDERED_DICT, ENCODE = (_Global(n) for n in (
    "set", "frozenset", "complex", "bytearray", "collections.OrderedDict", "_codecs.encode"))
_BUILTINS = {("collections", "OrderedDict"): ORDERED_DICT, ("_codecs", "encode"): ENCODE,
             **{(m, g.name): g for m in ("builtins", "__builtin__") for g in (SET, FROZENSET, COMPLEX, BYTEARRAY)}}
# numpy's reconstructors, taken from what numpy's own pickles call (no module path needed)
_reconstruct = np.empty(0).__reduce__()[0]
_scalar = np.float64(0).__reduce__()[0]
_frombuffer = np.empty(0).__reduce_ex__(5)[0]
_NUMPY = ((_reconstruct, RECONSTRUCT), (_scalar, SCALAR), (_frombuffer, FROMBUFFER), (np.ndarray, NDARRAY),
          (np.dtype, DTYPE))


def resolve(module: str, name: str) -> _Global | None:
    """The token for ``module.name``, or None. numpy names are looked up in numpy's modules that are
    already imported (``numpy.core.X`` and ``numpy._core.X`` both tried), never imported."""
    if (module, name) in _BUILTINS:
        return _BUILTINS[(module, name)]
    if module != "numpy" and not module.startswith("numpy."):
        return None
    spellings = [module]
    for old, new in (("numpy.core.", "numpy._core."), ("numpy._core.", "numpy.core.")):
        if module.startswith(old):
            spellings.append(new + module[len(old):])
    for spelling in spellings:
        found = sys.modules.get(spelling)
        obj = vars(found).get(name) if isinstance(found, types.ModuleType) else None
        for admitted, token in _NUMPY:
            if obj is admitted:
                return token
    return None


def _kind(obj) -> str:
    return obj.name if isinstance(obj, _Global) else type(obj).__name__


def _refuse(what: str):
    raise UnsafePickleError(f"{what}; numpy's pickles never do that, so nothing from this file was used")


def _shape(value, what: str) -> tuple:
    """A shape tuple of non-negative ints (each below 2**63); numpy checks the rest."""
    if type(value) is not tuple or len(value) > 32 or not all(type(d) is int and 0 <= d < 1 << 63 for d in value):
        _refuse(f"{what} with shape {_kind(value)} that is not a tuple of non-negative sizes")
    return value


def _size(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _small_key(key) -> bool:
    return type(key) in (str, bytes, float, bool, type(None)) or (type(key) is int and key.bit_length() <= 64)


def _bound(depth: int) -> None:
    if depth > MAX_NESTING:
        raise DataError(f"containers are nested deeper than {MAX_NESTING} levels (MMSA files nest 3 deep)")


def _decode(data: bytes, encoding: str, errors: str = "strict") -> str:
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        raise _Corrupt(f"undecodable text: {exc.reason}") from None


class _Machine:
    """One load. ``stack``/``marks``/``memo`` as in pickle's own machine; ``_depth`` maps the id of
    every container made (all registered when made) to its nesting depth; ``_open`` holds the
    containers that may still be filled and the arrays/dtypes that may still take state."""

    def __init__(self, file, size: int):
        self._file, self._left = file, size
        self._budget, self._used = BUDGET_FACTOR * size + BUDGET_FLOOR, 0
        self.stack, self.marks, self.memo = [], [], {}
        self._depth, self._open, self._dtypes = {}, {}, {}

    # ------------------------------------------------------------------ reading and bookkeeping
    def _charge(self, n: int) -> None:
        self._used += n
        if self._used > self._budget:
            raise DataError(f"loading it needs more than its memory budget of {self._budget >> 20} MiB "
                            f"({BUDGET_FACTOR}× the file's size + {BUDGET_FLOOR >> 20} MiB); numpy "
                            "pickles of MMSA data need about 2×")

    def _length(self, n: int) -> int:
        """A length read from the file: it must fit in what is left of the file."""
        if n < 0 or n > self._left:
            raise _Corrupt(f"a length of {n} bytes runs past the end of the file")
        return n

    def _read(self, n: int) -> bytes:
        data = self._file.read(self._length(n))
        if len(data) != n:
            raise _Corrupt("the file ended early")
        self._left -= n
        return data

    def _readline(self) -> bytes:
        line = self._file.readline()
        self._left -= len(line)
        if not line.endswith(b"\n"):
            raise _Corrupt("the file ended inside a text line")
        self._charge(len(line))
        return line[:-1]

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _push(self, obj, cost: int = 0) -> None:
        self._charge(cost + _LIST_SLOT)
        self.stack.append(obj)

    def _pop(self):
        if not self.stack:
            raise _Corrupt("stack underflow")
        return self.stack.pop()

    def _top(self):
        if not self.stack:
            raise _Corrupt("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list:
        if not self.marks:
            raise _Corrupt("no MARK to pop")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def _use(self, obj) -> int:
        """``obj`` is placed into another object: it is closed for good; returns its depth."""
        if type(obj) in _SCALARS:
            return 0
        self._open.pop(id(obj), None)
        return self._depth.get(id(obj), 0) if isinstance(obj, _CONTAINERS) else 0

    def _made(self, container, depth: int, fillable: bool = False):
        """Register a new container (``depth`` = 1 + its deepest item); ``fillable`` ones may
        still be filled (lists, dicts, sets) or take state (arrays)."""
        _bound(depth)
        self._charge(_DICT_ITEM)
        self._depth[id(container)] = depth
        if fillable:
            self._open[id(container)] = container
        return container

    def _fill(self, kind: type, what: str):
        """The container on top of the stack, if it is still open and of ``kind``."""
        target = self._top()
        if type(target) is not kind or id(target) not in self._open:
            if type(target) is kind:
                _refuse(f"{what} into a {kind.__name__} already placed in another object")
            _refuse(f"{what} into a {_kind(target)}")
        return target

    def _deepen(self, target, items) -> None:
        depth = 1 + max(map(self._use, items), default=0)
        if id(target) not in self._open:  # closed by _use: it was one of the items
            _refuse(f"a {_kind(target)} placed into itself")
        _bound(depth)
        if depth > self._depth[id(target)]:
            self._depth[id(target)] = depth

    @staticmethod
    def _keys(keys) -> None:
        """Dict keys and set items are str, bytes, small numbers, None or short tuples of them:
        each hashes in O(1) (str and bytes cache their hash), so no file can make the load hash one
        big object over and over."""
        for key in keys:
            if type(key) is tuple and len(key) <= 32:
                if all(map(_small_key, key)):
                    continue
            elif _small_key(key):
                continue
            _refuse(f"a dict key or set item that is a {_kind(key)} other than str, bytes, a number "
                    "or a short tuple of them")

    # ------------------------------------------------------------------ the opcodes
    def _handlers(self) -> dict:
        refuse = {b"P": "persistent id", b"Q": "persistent id", b"\x82": "extension code",
                  b"\x83": "extension code", b"\x84": "extension code", b"i": "INST (class instance)",
                  b"o": "OBJ (class instance)", b"\x92": "NEWOBJ_EX", b"\x97": "out-of-band buffer",
                  b"\x98": "out-of-band buffer"}
        h = {code: (lambda what=what: _refuse(f"refused {what}")) for code, what in refuse.items()}
        number = lambda fmt: lambda: self._push(self._unpack(fmt), 32)  # noqa: E731
        h.update({
            b"\x80": self._proto, b"\x95": self._frame,
            b"(": self._mark, b"0": self._pop_or_mark, b"1": lambda: self._pop_mark() and None,
            b"2": lambda: self._push(self._top()),
            b"N": lambda: self._push(None), b"\x88": lambda: self._push(True), b"\x89": lambda: self._push(False),
            b"I": self._int, b"L": self._long, b"F": lambda: self._push(float(self._readline()), 24),
            b"J": number("<i"), b"K": number("<B"), b"M": number("<H"), b"G": number(">d"),
            b"\x8a": lambda: self._long_bytes(self._unpack("<B")),
            b"\x8b": lambda: self._long_bytes(self._unpack("<i")),
            b"S": self._string, b"T": lambda: self._text(self._unpack("<i"), "latin1"),
            b"U": lambda: self._text(self._unpack("<B"), "latin1"),
            b"V": lambda: self._push(_decode(self._readline(), "raw-unicode-escape"), 80),
            b"X": lambda: self._text(self._unpack("<I"), "utf-8"), b"\x8c": self._short_text,
            b"\x8d": lambda: self._text(self._unpack("<Q"), "utf-8"),
            b"B": lambda: self._bytes(self._unpack("<I")), b"C": lambda: self._bytes(self._unpack("<B")),
            b"\x8e": lambda: self._bytes(self._unpack("<Q")), b"\x96": self._bytearray8,
            b")": lambda: self._tuple([]), b"t": lambda: self._tuple(self._pop_mark()),
            b"\x85": lambda: self._tuple_n(1), b"\x86": lambda: self._tuple_n(2), b"\x87": lambda: self._tuple_n(3),
            b"]": lambda: self._new_list([]), b"l": lambda: self._new_list(self._pop_mark()),
            b"}": lambda: self._new_dict([]), b"d": lambda: self._new_dict(self._pop_mark()),
            b"\x8f": lambda: self._new_set([], set), b"\x91": lambda: self._new_set(self._pop_mark(), frozenset),
            b"a": lambda: self._append([self._pop()]), b"e": lambda: self._append(self._pop_mark()),
            b"s": self._setitem, b"u": lambda: self._setitems(self._pop_mark()), b"\x90": self._additems,
            b"g": lambda: self._get(int(self._readline())), b"h": lambda: self._get(self._unpack("<B")),
            b"j": lambda: self._get(self._unpack("<I")),
            b"p": lambda: self._put(int(self._readline())), b"q": lambda: self._put(self._unpack("<B")),
            b"r": lambda: self._put(self._unpack("<I")), b"\x94": self._memoize,
            b"c": self._global, b"\x93": self._stack_global,
            b"R": self._reduce, b"\x81": self._newobj, b"b": self._build,
        })
        return h

    def load(self):
        # a local table of handlers (bound to self): no reference cycle keeps the memo alive
        read, ops = self._file.read, {ord(code): handler for code, handler in self._handlers().items()}
        while True:
            code = read(1)
            if not code:
                raise _Corrupt("the file ended before STOP")
            self._left -= 1
            if code == b".":
                if len(self.stack) != 1 or self.marks:
                    raise _Corrupt("STOP with other than one object left")
                return self.stack[0]
            handler = ops.get(code[0])
            if handler is None:
                raise _Corrupt(f"unknown opcode {code!r}")
            handler()

    def _proto(self):
        if self._unpack("<B") > 5:
            raise _Corrupt("unsupported pickle protocol")

    def _frame(self):
        self._length(self._unpack("<Q"))

    def _mark(self):
        _bound(len(self.marks) + 1)
        self._charge(_OBJECT)
        self.marks.append(self.stack)
        self.stack = []

    def _pop_or_mark(self):
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def _int(self):
        line = self._readline()
        value = {b"00": False, b"01": True}.get(line)  # protocol 0 writes booleans as INT 00/01
        self._push(int(line) if value is None else value, 32)

    def _long(self):
        line = self._readline()
        self._push(int(line[:-1] if line.endswith(b"L") else line), 32)

    def _long_bytes(self, n: int):
        self._push(int.from_bytes(self._read(n), "little", signed=True), 32 + n)

    def _string(self):
        line = self._readline()
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b'"', b"'"):
            raise _Corrupt("STRING opcode argument must be quoted")
        self._push(_decode(codecs.escape_decode(line[1:-1])[0], "latin1"), 80 + len(line))

    def _text(self, n: int, encoding: str):
        text = _decode(self._read(n), encoding, "surrogatepass" if encoding == "utf-8" else "strict")
        self._charge(n + sys.getsizeof(text) + _LIST_SLOT)
        self.stack.append(text)

    def _short_text(self):  # SHORT_BINUNICODE, the commonest opcode of object arrays of str
        self._text(self._read(1)[0], "utf-8")

    def _bytes(self, n: int):
        self._charge(self._length(n))
        self._push(self._read(n), 40 + n)

    def _bytearray8(self):
        n = self._length(self._unpack("<Q"))
        self._charge(n)
        buf = bytearray(n)
        if self._file.readinto(buf) != n:
            raise _Corrupt("the file ended early")
        self._left -= n
        self._push(buf, 64)

    def _tuple(self, items: list):
        self._push(self._made(tuple(items), 1 + max(map(self._use, items), default=0)), 40 + 8 * len(items))

    def _tuple_n(self, n: int):
        if len(self.stack) < n:
            raise _Corrupt("stack underflow")
        items = self.stack[-n:]
        del self.stack[-n:]
        self._tuple(items)

    def _new_list(self, items: list):
        self._push(self._made(items, 1 + max(map(self._use, items), default=0), fillable=True),
                   _OBJECT + _LIST_SLOT * len(items))

    def _new_dict(self, items: list):
        self._push(self._made({}, 1, fillable=True), _OBJECT)
        self._setitems(items)

    def _new_set(self, items: list, kind: type):
        self._charge(2 * _OBJECT + _DICT_ITEM * len(items))
        depth = 1 + max(map(self._use, items), default=0)
        _bound(depth)
        self._keys(items)
        self._push(self._made(kind(items), depth, fillable=kind is set))

    def _append(self, items: list):
        target = self._fill(list, "APPEND")
        self._charge(_LIST_SLOT * len(items))
        self._deepen(target, items)
        target.extend(items)

    def _setitem(self):
        value = self._pop()
        key = self._pop()
        self._setitems([key, value])

    def _setitems(self, items: list):
        if len(items) % 2:
            raise _Corrupt("SETITEMS with an odd number of items")
        target = self._fill(dict, "SETITEM")
        self._charge(_DICT_ITEM * len(items) // 2)
        self._deepen(target, items)
        self._keys(items[::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _additems(self):
        items = self._pop_mark()
        target = self._fill(set, "ADDITEMS")
        self._charge(_DICT_ITEM * len(items))
        self._deepen(target, items)
        self._keys(items)
        target.update(items)

    def _get(self, key: int):
        if key not in self.memo:
            raise _Corrupt(f"memo key {key} was never stored" if key.bit_length() < 64 else "bad memo key")
        self._push(self.memo[key])

    def _put(self, key: int):
        if key < 0:
            raise _Corrupt("negative memo key")
        self._charge(_MEMO_ITEM)
        self.memo[key] = self._top()

    def _memoize(self):
        if not self.stack:
            raise _Corrupt("stack underflow")
        self._charge(_MEMO_ITEM)
        self.memo[len(self.memo)] = self.stack[-1]

    def _global(self):
        module, name = _decode(self._readline(), "utf-8"), _decode(self._readline(), "utf-8")
        self._global_token(module, name)

    def _stack_global(self):
        name, module = self._pop(), self._pop()
        if type(module) is not str or type(name) is not str:
            raise _Corrupt("STACK_GLOBAL needs two strings")
        self._global_token(module, name)

    def _global_token(self, module: str, name: str):
        token = resolve(module, name)
        if token is None:
            shown = f"{module}.{name}"
            raise UnsafePickleError(f"refused global '{shown if len(shown) < 200 else shown[:200] + '...'}'")
        self._push(token)

    def _reduce(self):
        args = self._pop()
        func = self._pop()
        self._push(self._call(func, args))

    def _newobj(self):
        args = self._pop()
        cls = self._pop()
        if cls is not COMPLEX:
            _refuse(f"NEWOBJ of {_kind(cls)}")
        self._push(self._call(cls, args))

    def _call(self, func, args):
        if type(args) is not tuple:
            raise _Corrupt(f"call arguments are a {_kind(args)}, not a tuple")
        if func is NDARRAY:
            _refuse("numpy.ndarray(...) called directly allocates an array from a bare number")
        if not isinstance(func, _Global) or func not in _CALLS:
            _refuse(f"a call of a {_kind(func)}")
        for arg in args:
            self._use(arg)
        return _CALLS[func](self, *args)

    # ------------------------------------------------------------------ the admitted calls
    def _reconstruct(self, subtype=None, shape=None, code=None, *extra):
        if subtype is not NDARRAY or extra:
            _refuse(f"numpy._reconstruct of a {_kind(subtype)} or with {3 + len(extra)} arguments")
        if shape != (0,) or code not in (b"b", "b"):
            _refuse("numpy._reconstruct with a shape other than (0,) allocates an array from a bare number")
        self._charge(_OBJECT)
        return self._made(_reconstruct(np.ndarray, (0,), b"b"), 1, fillable=True)

    def _dtype(self, code=None, align=False, copy=False, *extra):
        if (type(code) is not str or not _DTYPE_CODE.fullmatch(code) or align not in (0, False)
                or copy not in (1, True) or extra):
            _refuse("a numpy.dtype other than a plain numeric, str, bytes or object type")
        dtype = np.dtype(code, False, True)  # copy=True: a new object, never numpy's shared one
        self._charge(_OBJECT + 4 * _OBJECT)
        self._dtypes[id(dtype)] = dtype
        self._open[id(dtype)] = dtype
        return dtype

    def _made_dtype(self, dtype, what: str, numeric: bool = False):
        if self._dtypes.get(id(dtype)) is not dtype:
            _refuse(f"{what} with a {_kind(dtype)} as its dtype")
        if numeric and (dtype.hasobject or dtype.itemsize == 0):
            _refuse(f"{what} of dtype {dtype}")
        return dtype

    def _scalar(self, dtype=None, data=None, *extra):
        self._made_dtype(dtype, "numpy.scalar", numeric=True)
        if extra or type(data) not in (bytes, str) or len(data) != dtype.itemsize:
            _refuse(f"numpy.scalar of {dtype} from {_kind(data)} data of the wrong size")
        self._charge(_OBJECT + dtype.itemsize)
        return _scalar(dtype, data)

    def _frombuffer(self, buf=None, dtype=None, shape=None, order=None, *extra):
        self._made_dtype(dtype, "numpy._frombuffer", numeric=True)
        _shape(shape, "numpy._frombuffer")
        if extra or type(buf) not in (bytes, bytearray) or order not in ("C", "F"):
            _refuse(f"numpy._frombuffer of a {_kind(buf)}")
        need = _size(shape) * dtype.itemsize
        if len(buf) != need:
            raise _Corrupt(f"numpy._frombuffer's buffer holds {len(buf)} bytes, its shape {shape} of {dtype} "
                           f"needs {need}")
        self._charge(_OBJECT)
        return self._made(_frombuffer(buf, dtype, shape, order), 1)

    def _encode(self, text=None, encoding=None, *extra):
        if type(text) is not str or encoding not in _LATIN1 or extra:
            _refuse("_codecs.encode other than of a str to latin1")
        self._charge(40 + len(text))
        return text.encode("latin1")

    def _bytearray(self, data=b"", encoding=None, *extra):
        if type(data) is str and encoding in _LATIN1 and not extra:
            data = data.encode("latin1")
        elif type(data) not in (bytes, bytearray) or encoding is not None or extra:
            _refuse(f"bytearray({_kind(data)}, ...) allocates from a bare number" if type(data) is int
                    else f"bytearray of a {_kind(data)}")
        self._charge(64 + len(data))
        return bytearray(data)

    def _complex(self, *parts):
        if len(parts) > 2 or not all(type(p) in (int, float) for p in parts):
            _refuse("complex of anything but two numbers")
        self._charge(32)
        return complex(*parts)

    def _set(self, items=(), *extra, kind=set):
        if type(items) not in (list, tuple, set, frozenset) or extra:
            _refuse(f"a {kind.__name__} of a {_kind(items)}")
        self._charge(2 * _OBJECT + _DICT_ITEM * len(items))
        self._keys(items)
        return self._made(kind(items), self._depth.get(id(items), 1), fillable=kind is set)

    def _frozenset(self, *args):
        return self._set(*args, kind=frozenset)

    def _ordered_dict(self, pairs=(), *extra):
        """``OrderedDict()`` (filled by SETITEMS) or Python 2's ``OrderedDict([[k, v], ...])``: a dict."""
        if (type(pairs) not in (list, tuple) or extra
                or not all(type(p) in (list, tuple) and len(p) == 2 for p in pairs)):
            _refuse(f"collections.OrderedDict of a {_kind(pairs)}")
        self._charge(_OBJECT + _DICT_ITEM * len(pairs))
        self._keys(pair[0] for pair in pairs)
        out = self._made({}, 1, fillable=True)
        if pairs:
            self._depth[id(out)] = max(1, self._depth.get(id(pairs), 1) - 1)
            out.update(pairs)
        return out

    def _build(self):
        state = self._pop()
        target = self._top()
        self._use(state)
        if id(target) not in self._open or not isinstance(target, (np.ndarray, np.dtype)):
            _refuse(f"BUILD sets state (__setstate__) on a {_kind(target)}: state goes only to numpy "
                    "arrays and dtypes numpy's reconstructors made in this file, once, before use")
        del self._open[id(target)]
        if isinstance(target, np.dtype):
            self._build_dtype(target, state)
        else:
            self._build_array(target, state)

    def _build_dtype(self, dtype, state):
        """numpy's dtype state for a plain type: (3, byte order, None, None, None, elsize,
        alignment, flags); the flags applied are numpy's own for that type."""
        own = dtype.__reduce__()[2]
        orders = ("|",) if own[1] == "|" else ("<", ">", "=")
        if (type(state) is not tuple or len(state) != 8 or state[0] != 3 or state[1] not in orders
                or state[2:7] != own[2:7] or type(state[7]) is not int):
            _refuse(f"a dtype state that is not numpy's state for {dtype}")
        dtype.__setstate__(state[:7] + own[7:])

    def _build_array(self, array, state):
        if type(state) is not tuple or len(state) != 5 or state[0] != 1 or state[3] not in (0, 1):
            _refuse(f"BUILD sets a {_kind(state)} that is not numpy's state (1, shape, dtype, fortran, data) "
                    "on an array")
        shape = _shape(state[1], "an array state")
        dtype = self._made_dtype(state[2], "an array state")
        data, n = state[4], _size(shape)
        if dtype.hasobject:
            if dtype.kind != "O" or type(data) is not list:
                _refuse(f"an array state of dtype {dtype} with {_kind(data)} data")
            if len(data) != n:
                raise _Corrupt(f"an object array's data holds {len(data)} items, its shape {shape} needs {n}")
            depth, cost = self._depth.get(id(data), 1), 8 * n
        else:
            if type(data) not in (bytes, bytearray, str):
                _refuse(f"an array state of dtype {dtype} with {_kind(data)} data")
            if len(data) != n * dtype.itemsize:
                raise _Corrupt(f"an array's data holds {len(data)} bytes, its shape {shape} of {dtype} "
                               f"needs {n * dtype.itemsize}")
            depth, cost = 1, n * dtype.itemsize
        self._charge(cost)
        array.__setstate__(state)
        self._made(array, depth)


_CALLS = {RECONSTRUCT: _Machine._reconstruct, SCALAR: _Machine._scalar, FROMBUFFER: _Machine._frombuffer,
          DTYPE: _Machine._dtype, SET: _Machine._set, FROZENSET: _Machine._frozenset, COMPLEX: _Machine._complex,
          BYTEARRAY: _Machine._bytearray, ORDERED_DICT: _Machine._ordered_dict, ENCODE: _Machine._encode}


def _brief(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def safe_load(path) -> object:
    """Unpickle ``path`` admitting only what numpy's pickles of MMSA data hold (module docstring).

    Raises ``UnsafePickleError`` (a ``DataError``) for anything else (a refused global, state on
    another object, an allocation sized from a bare number, ...), ``DataError`` for a missing,
    unreadable, truncated or corrupt file, nesting deeper than ``MAX_NESTING`` or a load over the
    memory budget; every message names the file. Nothing from a refused file is run or returned.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected an MMSA pickle")
    try:
        with open(path, "rb") as f:
            return _Machine(f, os.fstat(f.fileno()).st_size).load()
    except UnsafePickleError as exc:
        if str(exc).startswith("refused global"):
            raise UnsafePickleError(f"{path}: {exc}; only numpy arrays/dtypes/scalars and builtin "
                                    "containers are admitted, so nothing from this file was run") from None
        raise UnsafePickleError(f"{path}: {exc}") from None
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except _Corrupt as exc:
        raise DataError(f"{path}: truncated or corrupt pickle ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except MemoryError:
        raise DataError(f"{path}: out of memory while loading it") from None
    except Exception as exc:  # damaged input surfaces as many exception types
        raise DataError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {_brief(exc)})") from None
