"""Atomic writes: every file aedr replaces is written beside its target, synced, then renamed.

A write that fails half-way (a full disk, an interrupt, a killed process) leaves the file that was
there whole, byte for byte; readers never see a torn file. The temporary file is named
``.<name>.<random>.part`` in the target's folder (a rename is atomic within one file system only)
and is removed when the write fails.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(folder / "a.txt", "first")
>>> with replacing(folder / "a.txt") as stream:
...     _ = stream.write("second")
>>> (folder / "a.txt").read_text()
'second'
>>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
['a.txt']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:  # fmt: skip
    """A stream whose content replaces ``path`` when the block ends without an exception.

    ``mode`` is ``"w"`` (text) or ``"wb"``. An exception inside the block, or an ``OSError``
    while syncing or renaming, removes the temporary file and leaves ``path`` as it was; the
    exception propagates.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")

    def opened(file: str | int) -> IO[Any]:
        if mode == "wb":
            return open(file, "wb")
        return open(file, "w", encoding=encoding, newline=newline)

    target = replaceable(path)
    if target is None:  # a device or FIFO: nothing there to tear, and it must stay what it is
        with opened(os.fspath(path)) as stream:
            yield stream
        return
    folder, name = os.path.split(target)
    handle, partial = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}.", suffix=".part")
    try:
        with opened(handle) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _keep_mode(target, partial)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def replaceable(path: str | os.PathLike) -> str | None:
    """Where an atomic replacement of ``path`` goes: the file a symbolic link points to (the
    link stays), or None for an existing target that is not a regular file."""
    target = os.path.realpath(path)
    if os.path.exists(target) and not os.path.isfile(target):
        return None
    return target


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8) atomically; see :func:`replacing`."""
    with replacing(path, "wb" if isinstance(data, bytes) else "w") as stream:
        stream.write(data)


def _keep_mode(target: str, partial: str) -> None:
    """A replaced file keeps its permissions; a new one gets the umask's (mkstemp makes 0600)."""
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(partial, mode)
