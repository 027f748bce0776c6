"""``aedr score --engine ray``: the local engine's scoring, spread over a Ray cluster with Ray Data.

Stages:

1. **Paths**: a directory walk, or a manifest's ``path`` column (CSV or Parquet; local paths or
   any URI pyarrow's filesystems read), minus the paths the output already holds for every model.
2. **Read** (parallel Ray tasks): bytes, SHA-256, decode and homogeneity: the local engine's
   read stage. A bad file becomes an error there and flows on, never a failed task.
3. **Score** (a pool of ``workers`` actors, ``gpus_per_worker`` GPUs each, CPU when 0): each
   actor loads every autoencoder once and runs the local engine's compute stage
   (``Scorer.score_prepared``) on its batches, so equal-size images share a forward pass and the
   records are the local engine's.
4. **Write** (the driver): records arrive as batches finish and go to Parquet part files, each
   written under a temporary name and renamed: a part is whole or absent.

Ray Data restarts a dead actor and retries its batch (without limit, Ray Data's default for actor
pools); the driver keeps one record per (path, model),
so a retried batch cannot duplicate one. A re-run with the same output skips what is there.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aedr.errors import AedrError
from aedr.measure.images import DEFAULT_MAX_PIXELS, iter_image_files
from aedr.measure.record import MEASUREMENT_FIELDS, display_path
from aedr.measure.scorer import (
    DEFAULT_MAX_MODEL_PIXELS,
    DEFAULT_WORKERS,
    PreparedImage,
    Scorer,
    content_hash,
    decode,
)
from aedr.measure.settings import ScoreSettings
from aedr.records import (
    NESTED_FIELDS,
    PARQUET_SUFFIXES,
    filesystem_of,
    json_cell,
    read_parquet_records,
)

RECORD_FIELDS = MEASUREMENT_FIELDS
MANIFEST_SUFFIXES = (".csv", *PARQUET_SUFFIXES)
READ_CPUS = 0  # reading is light next to scoring; a CPU reserved for it would idle the actors


class RayEngineError(AedrError, RuntimeError):
    """A set-up problem of the Ray engine (missing extra, bad manifest or output)."""


@dataclass(frozen=True)
class RayOptions:
    """How the work is spread: actors, GPUs each, images per batch and per output part."""

    address: str | None = None
    workers: int = DEFAULT_WORKERS
    gpus_per_worker: float = 0.0
    batch_size: int = 8
    part_size: int = 1000
    max_model_pixels: int = DEFAULT_MAX_MODEL_PIXELS
    max_memory: int | None = None  # bytes per pass on each worker (None: each worker's default)


def record_schema():
    import pyarrow as pa

    types = {"width": pa.int64(), "height": pa.int64(), "jpeg_quality": pa.int64(),
             "grey": pa.bool_()}  # fmt: skip
    floats = ("loss1", "loss2", "ratio", "highpass_log_ratio", "highpass_weight",
              "ac_log_ratio", "inversion_loss", "homogeneity")  # fmt: skip
    return pa.schema(
        [(name, pa.float64() if name in floats else types.get(name, pa.string()))
         for name in RECORD_FIELDS]
    )  # fmt: skip


def input_paths(inputs: Sequence[str]) -> Iterator[str]:
    """Image paths of ``inputs``: manifests (a ``path`` column) read, local folders walked."""
    for given in inputs:
        if given.lower().endswith(MANIFEST_SUFFIXES):
            yield from read_manifest(given)
        elif "://" in given:
            yield given
        else:
            yield from (str(path) for path in iter_image_files([given]))


def read_manifest(location: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet

    filesystem, path = filesystem_of(location)
    try:
        if location.lower().endswith(".csv"):
            import pyarrow.csv

            with filesystem.open_input_stream(path) as stream:
                table = pyarrow.csv.read_csv(stream)
        else:
            table = pyarrow.parquet.read_table(path, filesystem=filesystem)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RayEngineError(f"cannot read manifest {location}: {exc}") from None
    if "path" not in table.column_names:
        raise RayEngineError(f"manifest {location} has no 'path' column ({table.column_names})")
    return [str(p) for p in table.column("path").to_pylist() if p]


def completed(out: str, models: Sequence[str]) -> tuple[set[tuple[str, str]], set[str]]:
    """The (path, model) keys the output already holds, and the paths it holds for every model."""
    filesystem, root = filesystem_of(out)
    if not filesystem.get_file_info(root).type:  # FileType.NotFound is 0
        return set(), set()
    keys = {(r["path"], r["model"]) for r in read_parquet_records(out)}
    paths = {path for path, _ in keys}
    return keys, {p for p in paths if all((p, m) in keys for m in models)}


def read_image_row(
    row: dict[str, Any], max_pixels: int, levels: int, exif_transpose: bool = True
) -> dict[str, Any]:
    """The read stage for one path: a ``PreparedImage`` (pixels or error) with its content hash.

    Paths travel as bytes, so that file names which are not UTF-8 still open.
    """
    location = os.fsdecode(row["source"])
    prepared = PreparedImage(location if "://" in location else Path(location))
    try:
        if "://" in location:
            filesystem, path = filesystem_of(location)
            with filesystem.open_input_file(path) as stream:
                data = stream.read()
            prepared.content = hashlib.sha256(data).hexdigest()
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / ("image" + Path(path).suffix)
                local.write_bytes(data)
                # records name ``location``
                decode(prepared, local, max_pixels, levels, exif_transpose=exif_transpose)
        else:
            prepared.content = content_hash(Path(location))
            decode(prepared, Path(location), max_pixels, levels, exif_transpose=exif_transpose)
    except Exception as exc:  # a bad file is an error record, never a failed task
        prepared.error = prepared.error or f"cannot read {location}: {type(exc).__name__}: {exc}"
    return {"prepared": prepared}


def model_loader(
    models: Sequence[str],
    weights_dir: str | None,
    device: str = "cpu",
    dtype: str = "auto",
    quantize: bool | None = None,
    compile: bool = False,
) -> Callable[[], list]:
    """What each actor runs to get its autoencoders (picklable); on a GPU when Ray gave it one."""
    return functools.partial(
        _load_models, tuple(models), weights_dir, device, dtype, quantize, compile
    )


def _load_models(models, weights_dir, device, dtype, quantize, compile) -> list:
    import ray

    from aedr.autoencoders import resolve_model

    if ray.get_gpu_ids():
        device = "cuda"
    return [
        resolve_model(m, weights_dir, device, dtype, quantize=quantize, compile=compile).load()
        for m in models
    ]


class ScoreActor:
    """One worker of the pool: its autoencoders load once, then it scores batch after batch."""

    def __init__(
        self,
        load_models: Callable[[], list],
        settings: ScoreSettings,
        batch_size: int,
        max_model_pixels: int,
        max_memory: int | None = None,
    ):
        self.scorer = Scorer(
            load_models(), settings, batch_size=batch_size, max_model_pixels=max_model_pixels,
            max_memory=max_memory,
        )  # fmt: skip

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows: dict[str, list] = {name: [] for name in RECORD_FIELDS}
        for records in self.scorer.score_prepared(batch["prepared"]):
            for record in records:
                values = record.as_dict()
                for name in NESTED_FIELDS:
                    values[name] = json_cell(values[name])
                for name in RECORD_FIELDS:
                    rows[name].append(values[name])
        return rows


class PartWriter:
    """Parquet part files in ``out``: each whole or absent, one record per (path, model)."""

    def __init__(self, out: str, part_size: int, done: set[tuple[str, str]]):
        self.filesystem, self.root = filesystem_of(out)
        self.filesystem.create_dir(self.root, recursive=True)
        self.part_size, self.seen = part_size, set(done)
        self.pending: list[dict[str, Any]] = []
        self.run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.parts = self.written = self.errors = 0

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Queue new records (repeats of a key already written are dropped); returns how many."""
        added = 0
        for record in records:
            key = (record["path"], record["model"])
            if key not in self.seen:
                self.seen.add(key)
                self.pending.append(record)
                self.errors += bool(record["error"])
                added += 1
        if len(self.pending) >= self.part_size:
            self.flush()
        return added

    def flush(self) -> None:
        if not self.pending:
            return
        import pyarrow
        import pyarrow.parquet

        table = pyarrow.Table.from_pylist(self.pending, schema=record_schema())
        name = f"part-{self.run}-{self.parts:05d}.parquet"
        temporary = f"{self.root}/.{name}.tmp"
        pyarrow.parquet.write_table(table, temporary, filesystem=self.filesystem)
        self.filesystem.move(temporary, f"{self.root}/{name}")
        self.parts += 1
        self.written += len(self.pending)
        self.pending = []


def score_with_ray(
    inputs: Sequence[str],
    load_models: Callable[[], list],
    model_names: Sequence[str],
    out: str,
    settings: ScoreSettings | None = None,
    options: RayOptions = RayOptions(),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Score every image of ``inputs`` under every model into the Parquet dataset ``out``.

    ``load_models`` runs in each actor (it must be picklable) and returns the autoencoders or
    handles, named ``model_names`` in order. Returns (records written, of which errors).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayEngineError(
            "the Ray engine needs the ray extra: pip install 'aedr[ray]'"
        ) from None
    settings = settings or ScoreSettings()
    if settings.latent == "sample" and settings.noise == "image":
        raise RayEngineError(
            "per-image noise (--paper, --noise image) follows the input order of one process; "
            "the Ray engine scores shards in parallel: use --engine local"
        )
    done_keys, done_paths = completed(out, model_names)
    todo = [p for p in dict.fromkeys(input_paths(inputs)) if display_path(p) not in done_paths]
    writer = PartWriter(out, options.part_size, done_keys)
    if not todo:
        return 0, 0
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False, include_dashboard=False,
                 logging_level=logging.WARNING)  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    levels = settings.homogeneity_levels
    blocks = min(len(todo), max(4 * options.workers, len(todo) // 1000))
    items = [{"source": os.fsencode(p)} for p in todo]
    read = ray.data.from_items(items, override_num_blocks=blocks).map(
        read_image_row,  # type: ignore[arg-type]  # Ray's stub omits the fn_args it passes
        fn_args=(max_pixels, levels, settings.exif == "transpose"),
        num_cpus=READ_CPUS,
    )
    scored = read.map_batches(
        ScoreActor,
        fn_constructor_args=(
            load_models,
            settings,
            options.batch_size,
            options.max_model_pixels,
            options.max_memory,
        ),
        batch_size=options.batch_size,
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_gpus=options.gpus_per_worker or None,
    )
    for batch in scored.iter_batches(batch_format="pyarrow", batch_size=None):
        table: Any = batch  # a pyarrow.Table, as batch_format asks
        added = writer.add(table.to_pylist())
        if progress is not None and added:
            progress(added)
    writer.flush()
    return writer.written, writer.errors
