"""Reading and writing result records as JSON Lines or CSV, one flushed line per record.

Every record is written and flushed as soon as it is complete, so an interrupted run keeps all that
it finished. The format follows the file's suffix: ``.jsonl`` (or ``.json``) or ``.csv``. Records
the Ray engine wrote (a Parquet file or dataset folder, local or a URI) are read too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from aedr.errors import AedrError
from aedr.files import replaceable, replacing
from aedr.timing import stage

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
PARQUET_SUFFIXES = (".parquet", ".pq")


class RecordFileError(AedrError, ValueError):
    """A records file that cannot be read or written as asked."""


class OutputExistsError(RecordFileError):
    """An output file that exists, which is never replaced unless the caller says so."""


def record_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        if Path(path).is_dir():
            raise RecordFileError(f"{path} is a folder: name a file ending in .jsonl or .csv")
        if not suffix:
            raise RecordFileError(f"{path}: name a file ending in .jsonl or .csv")
        raise RecordFileError(f"{path}: unknown output format {suffix!r}; use .jsonl or .csv")
    return FORMATS[suffix]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula in a text cell."""


NESTED_FIELDS = ("provenance", "degradation")
"""A measurement's fields that hold a mapping: one JSON text cell each in CSV and Parquet."""


def json_cell(value: Mapping[str, Any] | None) -> str:
    """A nested record field (``NESTED_FIELDS``) as one text cell: CSV, Parquet."""
    return "" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return json_cell(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value  # shown as text by spreadsheets (OWASP's CSV-injection advice)
    return value


def check_output(path: str | os.PathLike, overwrite: bool = False, append: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written as asked."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise RecordFileError(
            f"cannot write {path}: the folder {folder} does not exist"
            if not folder.exists() else f"cannot write {path}: {folder} is not a folder"
        )  # fmt: skip
    if path.is_dir():
        raise RecordFileError(f"cannot write {path}: it is a folder, not a file")
    if path.exists() and not (overwrite or append):
        raise OutputExistsError(f"{path} exists")


def _write_error(target: str, exc: OSError) -> RecordFileError:
    return RecordFileError(
        f"cannot write {target}: {exc.strerror or exc}; the records written before are kept"
    )


class RecordWriter:
    """Streams records with a fixed set of ``fields`` to a JSONL or CSV file (or a text stream)."""

    def __init__(
        self,
        target: str | os.PathLike | IO[str],
        fields: Sequence[str],
        overwrite: bool = False,
        fmt: str | None = None,
        append: bool = False,
    ):
        self.fields = list(fields)
        resuming = self._replacing = False
        self._failure: OSError | None = None  # a write that failed (then nothing is renamed)
        self._files = contextlib.ExitStack()
        self._stream: IO[str]
        if isinstance(target, (str, os.PathLike)):
            self.format = fmt or record_format(target)
            check_output(target, overwrite, append)
            resuming = append and Path(target).is_file() and Path(target).stat().st_size > 0
            self.name = os.fsdecode(target)
            self._replacing = (
                overwrite and not append and Path(target).exists()
                and replaceable(target) is not None
            )  # fmt: skip
            try:
                if self._replacing:
                    # renamed over the old file on close: until then, and after a failed
                    # write, the old file is whole (aedr.files)
                    self._stream = self._files.enter_context(replacing(target, newline=""))
                else:
                    mode = "a" if append else "w" if overwrite else "x"
                    self._stream = self._files.enter_context(
                        open(target, mode, newline="", encoding="utf-8")  # noqa: SIM115
                    )
            except FileExistsError:
                raise OutputExistsError(f"{target} exists") from None
            except OSError as exc:
                raise _write_error(self.name, exc) from None
            self._owns_stream = True
        else:
            self.format = fmt or "jsonl"
            self._stream = target
            self.name = "standard output"
            self._owns_stream = False
        self._csv = None
        if self.format == "csv":
            self._csv = csv.DictWriter(self._stream, fieldnames=self.fields, extrasaction="ignore")
            if not resuming:
                self._guarded(self._csv.writeheader)

    def write(self, record: Mapping[str, Any]) -> None:
        """Write and flush one record; a failing disk is a RecordFileError naming the file."""
        row = {field: record.get(field) for field in self.fields}
        with stage("write"):
            if self._csv is not None:
                self._guarded(self._csv.writerow, {k: _csv_value(v) for k, v in row.items()})
            else:
                line = json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n"
                self._guarded(self._stream.write, line)

    def _guarded(self, write, *args) -> None:
        try:
            write(*args)
            self._stream.flush()
        except OSError as exc:
            self._failure = exc
            if self._replacing:  # the file being replaced stays as it was
                raise RecordFileError(
                    f"cannot write {self.name}: {exc.strerror or exc}; {self.name} is unchanged "
                    "(the new records were written beside it, and removed)"
                ) from None
            raise _write_error(self.name, exc) from None

    def close(self) -> None:
        """Close the file; a replaced file is renamed into place now (an interrupted run's
        records too, for ``--resume``), unless a write failed."""
        if not self._owns_stream:
            return
        failure = self._failure
        try:
            if failure is None:
                self._files.close()
            else:  # the replacement is discarded (aedr.files.replacing)
                self._files.__exit__(type(failure), failure, None)
        except OSError as exc:
            if self._replacing and failure is None:  # the rename itself failed
                raise _write_error(self.name, exc) from None
            # else a full disk while closing, already reported by write

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _parse_csv_value(value: str) -> Any:
    if value == "":
        return None
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]  # as written by _csv_value
    if value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    try:
        number = float(value)
    except ValueError:
        return value
    if math.isfinite(number) and number.is_integer() and "." not in value and "e" not in value:
        return int(number)
    return number


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of a JSONL or CSV file, or of Parquet (a file, a folder or a URI of either).

    Numbers in CSV come back as numbers, empty cells as None.
    """
    location = os.fsdecode(path)
    if "://" in location or Path(path).is_dir() or location.lower().endswith(PARQUET_SUFFIXES):
        yield from read_parquet_records(location)
        return
    fmt = record_format(path)
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            if fmt == "csv":
                rows = csv.DictReader(stream)
                for row in rows:
                    yield {key: _parse_csv_value(value) for key, value in row.items()}
                return
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield _json_record(line, f"{path}:{number}")
    except OSError as exc:
        raise RecordFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RecordFileError(
            f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except csv.Error as exc:
        line = f":{rows.line_num}" if fmt == "csv" else ""
        raise RecordFileError(f"{path}{line}: not a CSV record ({exc})") from None


def _json_record(line: str, where: str) -> dict[str, Any]:
    """One JSON Lines record: an object, refused with its place otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordFileError(f"{where}: not a JSON record ({exc.msg})") from None
    except RecursionError:
        raise RecordFileError(f"{where}: not a record (nested too deeply)") from None
    if not isinstance(record, dict):
        raise RecordFileError(f"{where}: not a record (a JSON {type(record).__name__})")
    return record


def filesystem_of(location: str):
    """(pyarrow filesystem, path) for a local path or any URI pyarrow's filesystems understand."""
    try:
        import pyarrow.fs
    except ImportError:
        raise RecordFileError(
            f"{location}: Parquet needs pyarrow: pip install 'aedr[ray]'"
        ) from None
    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(location)


def read_parquet_records(location: str) -> Iterator[dict[str, Any]]:
    """Records of a Parquet file or a folder of part files (what ``--engine ray`` writes)."""
    filesystem, path = filesystem_of(location)
    import pyarrow
    import pyarrow.dataset

    try:
        dataset = pyarrow.dataset.dataset(path, format="parquet", filesystem=filesystem)
        for batch in dataset.to_batches():
            for record in batch.to_pylist():
                for name in NESTED_FIELDS:
                    if isinstance(record.get(name), str):  # one JSON string column
                        record[name] = json.loads(record[name] or "null")
                yield record
    except (OSError, pyarrow.ArrowInvalid) as exc:
        raise RecordFileError(f"cannot read Parquet records {location}: {exc}") from None


def completed_keys(path: str | os.PathLike, key: Sequence[str] = ("path", "model")) -> set[tuple]:
    """The ``key`` values of the complete records in ``path``, for ``--resume``.

    A process killed mid-write can leave a partial last line; it is cut off here (records are
    written one line each and flushed, so only that line can be incomplete).
    """
    path = Path(path)
    if not path.is_file():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as stream:
            stream.truncate(data.rfind(b"\n") + 1)
    return {tuple(record.get(k) for k in key) for record in read_records(path)}
