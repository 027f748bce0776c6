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
import re
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
_RESULT_COLUMNS = {"image": "BLOB", "annotation": "TEXT", "seq": "INTEGER"}
"""Added to ``results`` since 0.9.0 (a store made earlier gains them when opened): the uploaded
image (NULL when only its hashes are kept), the analyst's case label and note (JSON) and the
order results were kept in (the history's, newest first; NULL for results kept earlier)."""


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
            present = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
            for column, kind in _RESULT_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
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

    def put_result(
        self, result_id: str, result: Mapping[str, Any], image: bytes | None = None
    ) -> None:
        """Keep a finished attribution (what ``aedr serve`` answered) under its id, with the
        image it was made on when given."""
        self._execute(
            "INSERT OR REPLACE INTO results (id, result, image, seq) "
            "VALUES (?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM results))",
            (result_id, json.dumps(dict(result)), image),
        )

    def get_result(self, result_id: str, keep_days: float | None = None) -> dict[str, Any] | None:
        """The result kept under ``result_id``, with its ``annotation`` (``{}`` when none);
        None if absent, or older than ``keep_days``."""
        row = self._execute(
            "SELECT result, annotation FROM results WHERE id=? AND created >= datetime('now', ?)",
            (result_id, _age(keep_days)),
        ).fetchone()
        result = _stored(row)
        return None if result is None else {**result, "annotation": _annotation(row[1])}

    def result_image(self, result_id: str, keep_days: float | None = None) -> bytes | None:
        """The image a kept result was made on; None when absent or not kept."""
        row = self._execute(
            "SELECT image FROM results WHERE id=? AND created >= datetime('now', ?)",
            (result_id, _age(keep_days)),
        ).fetchone()
        return None if row is None else row[0]

    def annotate_result(self, result_id: str, annotation: Mapping[str, str]) -> bool:
        """Set a kept result's annotation (case label, note); whether it exists."""
        return (
            self._execute(
                "UPDATE results SET annotation=? WHERE id=?",
                (json.dumps(dict(annotation)), result_id),
            ).rowcount
            == 1
        )

    def find_results(
        self,
        text: str = "",
        verdict: str = "",
        keep_days: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Summaries of kept results, newest first: those whose file name, SHA-256, case label
        or note contains ``text`` (any case) and whose verdict is ``verdict`` (when given)."""
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.lower()) + "%"
        rows = self._execute(
            "SELECT id, result, annotation, image IS NOT NULL FROM results "
            "WHERE created >= datetime('now', ?) AND lower(json_extract(result, '$.filename') "
            "|| ' ' || coalesce(json_extract(result, '$.file.sha256'), '') || ' ' || "
            "coalesce(json_extract(annotation, '$.case'), '') || ' ' || "
            "coalesce(json_extract(annotation, '$.note'), '')) LIKE ? ESCAPE '\\' "
            "AND (? = '' OR json_extract(result, '$.verdict') = ?) "
            "ORDER BY coalesce(seq, 0) DESC, created DESC LIMIT ?",
            (_age(keep_days), pattern, verdict, verdict, limit),
        ).fetchall()
        found = []
        for result_id, text_record, annotation, kept in rows:
            record = _stored((text_record,))
            if record is None:
                continue
            found.append({
                "id": result_id, "filename": record.get("filename"),
                "sha256": record.get("file", {}).get("sha256"), "verdict": record.get("verdict"),
                "candidates": record.get("candidates", []), "confidence": record.get("confidence"),
                "uploaded": record.get("uploaded"), "image_kept": bool(kept),
                "annotation": _annotation(annotation),
            })  # fmt: skip
        return found

    def delete_result(self, result_id: str) -> bool:
        """Remove a kept result and its image; whether there was one."""
        return self._execute("DELETE FROM results WHERE id=?", (result_id,)).rowcount == 1

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


def _annotation(text: str | None) -> dict[str, str]:
    """A stored annotation; an unreadable one is as good as none."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError, RecursionError):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}


SQLITE_FULL = 13  # sqlite3.SQLITE_FULL from Python 3.11


class StoreError(AedrError, RuntimeError):
    """A score store that cannot be opened (not a database, no permission)."""
