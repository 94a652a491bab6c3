"""Safe writes into run directories and caches (docs/training.md, "What survives a kill").

- ``atomic_path`` / ``write_*``: a file is written under a fresh temporary name in the target's
  directory (``mkstemp``: ``O_CREAT | O_EXCL | O_NOFOLLOW``, so never through a planted symlink),
  flushed to disk, then renamed over the target (a rename replaces a symlink itself, never what
  it points to). Readers see the old file or the new one.
- ``Commit``: several files of one directory replaced as a unit: written into ``.staging/``, then
  a journal (the commit point) names them, then each is moved into place. ``recover`` finishes a
  commit whose journal exists and discards staged files without one.
- ``output_dir`` / ``locked``: an exclusive OS lock (``flock`` on a lock file) held while a
  command writes an output; a second writer fails at once. The kernel drops the lock when the
  process ends, however it ends, so a crash leaves no stale lock.

Every ``OSError`` while writing becomes a ``WriteError`` (one line naming the path).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile

from prlf_fast.errors import PRLFError
from prlf_fast.io.files import read_bytes, read_text

_UMASK = os.umask(0)
os.umask(_UMASK)
TMP_SUFFIX = ".tmp"
_STRAY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp(prefix=".NAME.", suffix=".tmp")
STAGING, JOURNAL, LOCK = ".staging", ".commit.json", ".lock"


class WriteError(PRLFError):
    """Writing ``path`` failed at the OS level (full disk, permissions, …); one line."""

    def __init__(self, path: str, exc: OSError | str, note: str = ""):
        self.path = os.fspath(path)
        self.reason = exc if isinstance(exc, str) else exc.strerror or str(exc)
        super().__init__(f"cannot write {self.path}: {self.reason}{note}")


# The two primitives that change what a directory shows (tests simulate kills around them).
def _replace(src: str, dst: str) -> None:
    os.replace(src, dst)


def remove(path: str) -> None:
    """Remove a file, a symlink (not its target) or a directory tree; absent is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: str, user_given: bool = False) -> bool:
    """Create directory ``path`` (and its parents); True when this call created it. An existing
    non-directory at ``path`` is refused, and so is a symlink unless ``user_given`` (an output
    directory named on the command line may be a symlink its user made; the directories
    prlf-fast derives inside it, such as ``plots``, may not)."""
    if os.path.lexists(path):
        if not os.path.isdir(path) or (os.path.islink(path) and not user_given):
            raise PRLFError(f"cannot write {path}: it exists and is not a directory "
                            "(a symlink or a file); remove it")
        return False
    try:
        os.makedirs(path)
        return True
    except FileExistsError:  # created by another process meanwhile
        return make_dir(path, user_given)
    except OSError as exc:
        raise WriteError(path, exc) from exc


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path next to ``path``; when the block succeeds it replaces ``path``.

    Raises WriteError naming ``path`` on an OSError; ``path`` is then unchanged."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TMP_SUFFIX, dir=directory)
        os.close(fd)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    try:
        yield tmp
        # mkstemp creates 0600 (and some writers replace the file): give it the usual permissions
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync(tmp)
        _replace(tmp, path)
    except OSError as exc:
        remove(tmp)
        raise WriteError(path, exc) from exc
    except BaseException:
        remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str, records) -> None:
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_jsonl(path: str) -> list:
    """The records of a JSON-lines file ([] when absent); a symlink, a special file or a file
    over ``files.TEXT_LIMIT`` is a ReadError, a line that is not JSON a PRLFError naming it."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        text = read_text(directory, name)
    except FileNotFoundError:
        return []
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise PRLFError(f"{path} is not JSON lines: {exc}") from None


# -- several files as one unit ---------------------------------------------------------------

def _staged_files(staging: str) -> list:
    """Relative paths of the regular files under ``staging`` (symlinks are not followed)."""
    found = []
    for parent, _, files in os.walk(staging):
        found += [os.path.relpath(os.path.join(parent, f), staging) for f in files
                  if os.path.isfile(os.path.join(parent, f)) and not is_stray(f)]
    return sorted(found)


def _inside(name) -> bool:
    """Whether ``name`` is a relative path that stays inside its directory."""
    return (isinstance(name, str) and bool(name) and not os.path.isabs(name)
            and not os.path.normpath(name).startswith(os.pardir))


def _finish(root: str, names: list) -> None:
    """Move each staged file still in ``.staging`` into place, then drop staging and journal."""
    staging = os.path.join(root, STAGING)
    for name in names:
        src, dst = os.path.join(staging, name), os.path.join(root, name)
        if os.path.isfile(src) and not os.path.islink(src):
            if os.path.dirname(name):
                make_dir(os.path.dirname(dst))
            _replace(src, dst)
    remove(staging)
    remove(os.path.join(root, JOURNAL))


def is_stray(name: str) -> bool:
    """Whether file name ``name`` is the temporary name of an atomic write."""
    return bool(_STRAY.match(name))


def _strays(directory: str) -> list:
    """The temporary files of interrupted atomic writes in ``directory``."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for p in (os.path.join(directory, n) for n in names if is_stray(n))
            if os.path.islink(p) or not os.path.isdir(p)]


def remove_strays(directory: str) -> None:
    """Remove the temporary files of interrupted atomic writes in ``directory``."""
    for path in _strays(directory):
        remove(path)


def _subdirs(root: str) -> list:
    return [e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]


def needs_recovery(root: str) -> bool:
    """Whether a killed writer left a journal, staged files or temporary files in ``root``."""
    return (os.path.lexists(os.path.join(root, JOURNAL)) or os.path.lexists(os.path.join(root, STAGING))
            or any(_strays(d) for d in [root, *_subdirs(root)]))


def _is(path: str, kind) -> bool:
    try:
        return kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _plain(root: str, name: str) -> bool:
    """Whether staged ``name`` and its target are free of links: every directory on the way
    (under ``.staging`` and under ``root``) is a real directory or absent, and the staged file
    is a regular file or absent (already moved)."""
    parts = name.split(os.sep)
    for base in (os.path.join(root, STAGING), root):
        for i in range(1, len(parts)):
            sub = os.path.join(base, *parts[:i])
            if os.path.lexists(sub) and not _is(sub, stat.S_ISDIR):
                return False
    staged = os.path.join(root, STAGING, name)
    target = os.path.join(root, name)
    return ((not os.path.lexists(staged) or _is(staged, stat.S_ISREG))
            and not (os.path.lexists(target) and _is(target, stat.S_ISDIR)))


def _journal_names(root: str) -> list | None:
    """The names a journal that this module wrote lists; None for anything else (untrusted:
    a journal or staging folder that is not a plain file or directory, a name leading out of
    ``root``, or a staged path through a symlink)."""
    if not _is(os.path.join(root, STAGING), stat.S_ISDIR):
        return None
    try:
        names = json.loads(read_bytes(root, JOURNAL, 16 * 1024 * 1024)).get("files")
    except (OSError, ValueError, AttributeError, PRLFError):
        return None
    if not (isinstance(names, list) and all(_inside(n) for n in names)):
        return None
    names = [os.path.normpath(n) for n in names]
    return names if all(_plain(root, n) for n in names) else None


def recover(root: str) -> None:
    """Bring ``root`` to its last committed state: finish a commit whose journal exists, discard
    staged files without one or with any part that is not a plain file or directory inside
    ``root`` (a symlink is removed, never followed), and remove the temporary files of
    interrupted writes (in ``root`` and its direct subdirectories). Call it holding the
    directory's lock."""
    journal = os.path.join(root, JOURNAL)
    names = _journal_names(root)
    if names is not None:
        _finish(root, names)
    else:
        remove(journal)
        remove(os.path.join(root, STAGING))
    for directory in [root, *_subdirs(root)]:
        remove_strays(directory)


class Commit:
    """Files of ``root`` replaced together: write each at ``commit.file(name)`` inside the block
    (``name`` relative to ``root``, e.g. ``"plots/a.png"``); when the block ends without an
    exception they all replace their targets as one unit, otherwise none does."""

    def __init__(self, root: str):
        self.root, self.staging = root, os.path.join(root, STAGING)

    def file(self, name: str) -> str:
        path = os.path.join(self.staging, name)
        make_dir(os.path.dirname(path))
        return path

    def __enter__(self) -> "Commit":
        remove(self.staging)
        make_dir(self.staging)
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            remove(self.staging)
            if isinstance(exc, WriteError) and exc.path.startswith(self.staging + os.sep):
                target = os.path.join(self.root, os.path.relpath(exc.path, self.staging))
                raise WriteError(target, exc.reason, "; the previous files are unchanged") from exc
            return
        names = _staged_files(self.staging)
        for parent in {os.path.dirname(n) for n in names} - {""}:  # refused before the commit point
            make_dir(os.path.join(self.root, parent))
        write_json(os.path.join(self.root, JOURNAL), {"files": names})  # the commit point
        try:
            _finish(self.root, names)
        except OSError as err:
            raise WriteError(self.root, err, "; the next prlf-fast command on this directory "
                                             "completes the update") from err


# -- one writer per output ---------------------------------------------------------------------

@contextlib.contextmanager
def locked(path: str, what: str):
    """Hold an exclusive lock on the lock file ``path`` (created, and removed on release).

    Raises PRLFError at once when another process holds it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666 & ~_UMASK)
        except OSError as exc:
            raise WriteError(path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise WriteError(path, exc) from exc
            raise PRLFError(f"{what} is being written by another prlf-fast process"
                            + (f" (pid {holder})" if holder.isdigit() else "")
                            + "; wait for it to finish or choose another output") from None
        try:  # a holder that finished may have removed the file we opened: lock the one there now
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def output_dir(path: str):
    """Create directory ``path`` if needed and hold its lock (``path/.lock``) in the block.

    When the block fails and this call created ``path``, the directory is removed again if the
    block left nothing in it. Yields True when the directory was created."""
    try:
        created = make_dir(path, user_given=True)
    except WriteError as exc:
        raise PRLFError(f"cannot write to the output directory {path}: {exc.reason}") from exc
    try:
        with locked(os.path.join(path, LOCK), f"the output directory {path}"):
            yield created
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise
