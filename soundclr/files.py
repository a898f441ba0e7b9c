"""Files written whole or not at all, and read back with errors that name the file.

Every file soundclr writes (the run records, the decoded-audio cache, the ledger cache) goes to a
temporary name (``.<name>.<8 hex digits>.tmp`` beside it, see :func:`is_temporary`) and is renamed
into place, so a crash never leaves a file that looks complete. Files are created like any other
file of the user's: mode ``0o666`` less the umask, so a group sharing a results folder can read
them. A file that exists but cannot be read (a full disk, a copy that did not finish, an edit by
hand) raises :class:`CorruptFileError` from :func:`read_json`, naming the file and what to do.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# The checkout that holds soundclr/ (an editable install runs from it): its .git gives a result's commit, its
# notebooks/ and _config.yml the book.
SOURCE_ROOT = Path(__file__).resolve().parent.parent

# ``.<name>.<8 hex digits>.tmp``: the temporaries of atomic_file / atomic_path (data.py's cache uses them too).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")


_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
           | getattr(os, "O_BINARY", 0))


def is_temporary(name: str) -> bool:
    """Whether a file name is that of an atomic write's temporary (``.<name>.<8 hex digits>.tmp``)."""
    return _TEMPORARY.fullmatch(name) is not None


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file beside ``path``; return its descriptor (open for writing) and path.

    It is created with mode ``0o666``, which the operating system reduces by
    the process umask (or the folder's default ACL), as for any file the user
    creates; ``tempfile.mkstemp`` would make it ``0o600``, unreadable by the
    group. The mode survives the rename.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _CREATE, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}: 100 random names were taken. "
                          f"Remove the leftover .{path.name}.*.tmp files in {path.parent} and retry.")


# For the crash tests only: "<file name>:<n>" makes the n-th atomic write of that file name in this process stop
# after its data is written and before it is renamed into place, announcing itself in ".held-<file name>" beside it,
# and wait there to be killed (a kill during a checkpoint write, on observable state rather than on timing).
HOLD_ENV = "SOUNDCLR_TEST_HOLD_WRITE"
_held_writes: dict[str, int] = {}


def _hold_for_crash_test(path: Path, tmp: Path) -> None:
    spec = os.environ.get(HOLD_ENV)
    if not spec:
        return
    name, _, nth = spec.rpartition(":")
    if path.name != name:
        return
    _held_writes[name] = _held_writes.get(name, 0) + 1
    if _held_writes[name] != int(nth):
        return
    (path.parent / f".held-{name}").write_text(str(tmp))
    while True:
        signal.pause() if hasattr(signal, "pause") else time.sleep(1)


@contextmanager
def atomic_file(path: Path):
    """Open a temporary file next to ``path`` for writing; on success it is flushed, fsync'd
    and renamed over ``path``; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            _hold_for_crash_test(path, tmp)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path):
    """:func:`atomic_file` for writers that need a file name (``numpy.lib.format.open_memmap``, ...).

    Yields the path of a new, empty temporary file next to ``path``, to be
    written by name; on success it is fsync'd and renamed over ``path``; on
    any error it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    with atomic_file(path) as f:
        torch.save(obj, f)


class CorruptFileError(ValueError):
    """A file exists but cannot be read as what soundclr wrote there.

    ``path`` is the file and ``line`` the 1-based line (``metrics.jsonl``), or
    None; the message names both and says what to do.
    """

    def __init__(self, path: Path, problem: str, line: int | None = None):
        self.path, self.line = Path(path), line
        super().__init__(f"{self.path}{f', line {line},' if line is not None else ''} {problem}. "
                         f"{_corrupt_advice(self.path)}")


def _corrupt_advice(path: Path) -> str:
    why = ("It cannot be repaired (soundclr writes its files whole, so the damage came from outside: a full or "
           "failing disk, a copy that did not finish, an edit by hand)")
    if path.name in RUN_RECORDS:
        return f"{why}: delete the run folder {path.parent} and run again to train that run afresh."
    return (f"{why}: delete {path} and run again to have it recomputed (if it belongs to a run, deleting the "
            f"whole run folder {path.parent} trains that run afresh).")


def read_json(path: Path) -> Any:
    """The JSON value in ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptFileError: it is not valid UTF-8 JSON (empty, cut short, garbled).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        what = "is empty" if not data.strip() else f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        raise CorruptFileError(path, what) from None
    except ValueError as err:   # UnicodeDecodeError: binary garbage
        raise CorruptFileError(path, f"is not JSON text ({err})") from None


# The files that record a run: without a readable one, the run has to be trained again.
RUN_RECORDS = ("config.json", "metrics.jsonl", "summary.json")
