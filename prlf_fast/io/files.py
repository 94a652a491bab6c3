"""Reading files of a run or cache directory that someone else may have written.

``open_regular(directory, name, limit)`` opens ``name`` relative to ``directory`` without
following a symlink (``O_NOFOLLOW`` with ``dir_fd``) and without blocking (``O_NONBLOCK``: a FIFO
or device is refused, never waited on); the file must be a regular file of at most ``limit``
bytes. ``name`` is a plain file name: no separators, no ``..``. Every refusal is a ``ReadError``
(one line naming the path); a missing file is ``FileNotFoundError``.
"""
from __future__ import annotations

import errno
import os
import stat

from prlf_fast.errors import PRLFError

MiB = 1 << 20
TEXT_LIMIT = 64 * MiB  # config.json, metrics.jsonl, train.log, meta.json, ids


class ReadError(PRLFError):
    """A file of a run or cache directory is not a plain regular file of bounded size."""


def _check_name(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    if not name or os.sep in name or name in (os.curdir, os.pardir):
        raise ReadError(f"cannot read {path}: not a plain file name inside {directory}")
    return path


def open_regular(directory: str, name: str, limit: int, mode: str = "rb", **kwargs):
    """A file object for the regular file ``directory/name`` (``mode`` "rb" or "r"). Raises
    ReadError for a symlink, a non-regular file or one over ``limit`` bytes."""
    path = _check_name(directory, name)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ReadError(f"cannot read {path}: it is a symlink (only regular files are read)") from None
        raise
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ReadError(f"cannot read {path}: not a regular file (a device, FIFO or directory)")
        if st.st_size > limit:
            raise ReadError(f"cannot read {path}: {st.st_size} bytes, more than the {limit} allowed")
        os.set_blocking(fd, True)
        return open(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(directory: str, name: str, limit: int = TEXT_LIMIT) -> bytes:
    """The bytes of ``directory/name`` (see ``open_regular``); at most ``limit`` bytes are read."""
    with open_regular(directory, name, limit) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise ReadError(f"cannot read {os.path.join(directory, name)}: more than the {limit} bytes allowed")
    return data


def read_text(directory: str, name: str, limit: int = TEXT_LIMIT) -> str:
    """``read_bytes`` decoded as UTF-8; undecodable bytes are a ReadError."""
    try:
        return read_bytes(directory, name, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"cannot read {os.path.join(directory, name)}: not UTF-8 text ({exc.reason} "
                        f"at byte {exc.start})") from None


def regular_path(path: str, limit: int) -> str:
    """``path`` itself when it is a regular file (not a symlink) of at most ``limit`` bytes, for
    readers that need a path (safetensors); else ReadError."""
    directory, name = os.path.split(os.path.abspath(path))
    open_regular(directory, name, limit).close()
    return path
