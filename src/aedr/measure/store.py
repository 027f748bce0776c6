"""A persistent score store: each (image content, provenance) is measured once.

SQLite, embedded, no server. The key is the SHA-256 of the image file's bytes and the digest of
the measurement's provenance (the autoencoder's identity, measurement kind, precision and device
kind as run, every setting that changes numbers, the package version), and nothing else: a
renamed copy of an image is a hit, while a changed file, other weights, another dtype or device or
setting is a miss. Measurements hold no decision statistic, so one entry serves them all. Only
successful measurements are kept (an error may be fixed by the next run). The database runs in WAL mode
with a busy timeout, so concurrent runs on one store read and write safely; each record is
committed when it is written, so an interrupted run keeps what it finished and a re-run resumes.
The store also keeps the attributions ``aedr serve`` answered, by result id, to be read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aedr.errors import AedrError

STORE_ENV = "AEDR_STORE"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    content_sha256 TEXT NOT NULL,
    provenance TEXT NOT NULL,
    record TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (content_sha256, provenance)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (datetime('now'))
) WITHOUT ROWID;
"""


def default_store_path() -> Path:
    """``$AEDR_STORE``, else ``$XDG_CACHE_HOME/aedr/scores.sqlite`` (``~/.cache`` by default)."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "aedr" / "scores.sqlite"


def _create_private(path: Path) -> None:
    """Create ``path`` readable by its owner only, where it does not exist yet: the store holds
    every image's metadata and the server's results. SQLite gives its WAL and shared-memory
    files the database file's permissions."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def file_sha256(path: str | os.PathLike, limit: int | None = None) -> str:
    """SHA-256 of the file's bytes, reading at most ``limit`` bytes when given (a file that grows
    while it is read cannot make the read endless)."""
    digest = hashlib.sha256()
    remaining = float("inf") if limit is None else limit
    with open(path, "rb") as handle:
        while remaining > 0:
            chunk = handle.read(int(min(1 << 20, remaining)))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


class ScoreStore:
    """Measurements keyed by image content and provenance digest."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(self.path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the score store's folder {self.path.parent}: {exc.strerror or exc}",
                hint=f"set {STORE_ENV} to a file in a writable folder, or measure with --no-cache",
            ) from None
        try:
            # Shared by the reader threads of one run; callers serialise access with a lock.
            self._db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot use score store {self.path}: {exc}; measure without it, or move the "
                "file aside to start a new store"
            ) from exc

    def _execute(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        """One statement; a damaged database file is a StoreError that says so."""
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "is full" in str(exc):
                raise StoreError(
                    f"the score store {self.path} cannot grow: its disk is full ({exc})",
                    hint="free space there, set $AEDR_STORE to a file on another disk, or "
                    "measure with --no-cache; the store itself is intact",
                ) from None
            raise StoreError(
                f"score store {self.path} is damaged or unreadable ({exc}): measure without it, "
                "or move the file aside to start a new store"
            ) from None

    def get(self, content: str, provenance: str) -> dict[str, Any] | None:
        row = self._execute(
            "SELECT record FROM measurements WHERE content_sha256=? AND provenance=?",
            (content, provenance),
        ).fetchone()
        return _stored(row)

    def put(self, content: str, provenance: str, record: Mapping[str, Any]) -> None:
        self._execute(
            "INSERT OR REPLACE INTO measurements (content_sha256, provenance, record) "
            "VALUES (?, ?, ?)",
            (content, provenance, json.dumps(dict(record))),
        )

    def put_result(self, result_id: str, result: Mapping[str, Any]) -> None:
        """Keep a finished attribution (what ``aedr serve`` answered) under its id."""
        self._execute(
            "INSERT OR REPLACE INTO results (id, result) VALUES (?, ?)",
            (result_id, json.dumps(dict(result))),
        )

    def get_result(self, result_id: str, keep_days: float | None = None) -> dict[str, Any] | None:
        """The result kept under ``result_id``; None if absent, or older than ``keep_days``."""
        row = self._execute(
            "SELECT result FROM results WHERE id=? AND created >= datetime('now', ?)",
            (result_id, _age(keep_days)),
        ).fetchone()
        return _stored(row)

    def expire_results(self, keep_days: float) -> int:
        """Delete the results made more than ``keep_days`` ago; how many were deleted."""
        return self._execute(
            "DELETE FROM results WHERE created < datetime('now', ?)", (_age(keep_days),)
        ).rowcount

    def __len__(self) -> int:
        return self._execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _age(keep_days: float | None) -> str:
    """An SQLite date modifier ``keep_days`` back (all results when None)."""
    return "-1000000 days" if keep_days is None else f"-{int(keep_days * 86400)} seconds"


def _stored(row: tuple | None) -> dict[str, Any] | None:
    """A row's record; one that is not a JSON object (edited by hand, written by a broken tool)
    is as good as absent: it is measured again and replaced."""
    if row is None:
        return None
    try:
        record = json.loads(row[0])
    except (TypeError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


SQLITE_FULL = 13  # sqlite3.SQLITE_FULL from Python 3.11


class StoreError(AedrError, RuntimeError):
    """A score store that cannot be opened (not a database, no permission)."""
