"""Scoring images against one or more autoencoders: files in, one record per (image, model) out.

One pipeline serves score, calibrate and attribute:

- files are read, hashed, decoded and their homogeneity computed in background threads, ahead of
  the autoencoder (decoding overlaps compute); homogeneity once per image, however many models;
- with a score store, an (image content, weights, settings) already scored is answered from it,
  without decoding the image or loading the model; models load only on the first miss;
- inputs of equal shape for one model are batched together (``batch_size``); a batch that comes
  out non-finite in half precision is recomputed in float32 (see ``aedr.signal``);
- ``crop``/``crops`` score grid-aligned square crops instead of the whole image, and
  ``max_model_pixels`` refuses (with an error record naming ``--crop``) inputs too large to run.

A file that cannot be scored gets an error record for every model and the run goes on.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aedr.autoencoders.base import Autoencoder, LatentMode
from aedr.calibration import DEFAULT_METHOD, METHODS, signal_of_record
from aedr.homogeneity import LEVELS, glcm_homogeneity
from aedr.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    LoadedImage,
    aligned_crop,
    file_error,
    grid_crops,
    iter_image_files,
    luma_opencv,
    read_image,
    resize_to_multiple,
    to_model_input,
)
from aedr.signal import SignalError, loss_ratio, reconstruction_losses

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.loading import ModelHandle
    from aedr.store import ScoreStore

Alignment = Literal["crop", "resize"]
SCORE_FIELDS = (
    "path", "model", "group", "loss1", "loss2", "ratio", "homogeneity", "signal", "width",
    "height", "error",
)  # fmt: skip
DEFAULT_MAX_MODEL_PIXELS = 4096 * 4096
"""Largest input one autoencoder pass may take (see README, Performance); larger need --crop."""


@dataclass(frozen=True)
class ScoreSettings:
    """Everything besides the autoencoder that changes a score; calibrations record it."""

    latent: LatentMode = "mode"
    seed: int = 0
    alignment: Alignment = "crop"
    homogeneity_levels: int = LEVELS
    crop: int | None = None
    crops: int = 1
    method: str = DEFAULT_METHOD  # what ``signal`` holds; see aedr.calibration.METHODS

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreSettings:
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        return cls(**known)


@dataclass
class ScoreRecord:
    path: str
    model: str
    group: str = ""
    loss1: float | None = None
    loss2: float | None = None
    ratio: float | None = None
    homogeneity: float | None = None
    signal: float | None = None
    width: int | None = None
    height: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORE_FIELDS}


def display_path(path: str | os.PathLike) -> str:
    """A printable path: undecodable bytes in file names become backslash escapes, not errors."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class _Model:
    """One model of a run: loaded on first use, with its own seeded generator.

    One generator per model, as the authors' script seeds one: with ``latent="sample"`` a model's
    scores depend on the order of images but never on which other models run.
    """

    def __init__(self, source: Autoencoder | ModelHandle, seed: int):
        self._source, self._seed = source, seed
        self._autoencoder = source if isinstance(source, Autoencoder) else None
        self.generator: torch.Generator | None = None
        self.name, self.group = source.name, source.group

    @property
    def identity(self) -> str | None:
        return self._source.identity

    @property
    def autoencoder(self) -> Autoencoder:
        if self._autoencoder is None:
            self._autoencoder = self._source.load()
        if self.generator is None:
            import torch

            device = self._autoencoder.device
            self.generator = torch.Generator(device).manual_seed(self._seed)
        return self._autoencoder


@dataclass
class PreparedImage:
    """A file after the read stage: decoded (unless fully cached) or failed.

    ``path`` is what records name: a local path, or a URI the Ray engine read.
    """

    path: str | Path
    content: str | None = None
    image: LoadedImage | None = None
    homogeneity: float | None = None
    cached: dict[int, dict[str, Any]] = field(default_factory=dict)  # by model index
    error: str = ""


@dataclass
class _Job:
    """An image in flight: its records fill in as its batches complete."""

    prepared: PreparedImage
    records: dict[int, ScoreRecord]  # by model index
    crop_losses: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    waiting: int = 0  # inputs queued but not yet scored
    sealed: bool = False  # all of its inputs are queued: done once ``waiting`` reaches 0


class Scorer:
    """Scores files against a fixed set of autoencoders (loaded, or handles loaded on demand)."""

    def __init__(
        self,
        models: Sequence[Autoencoder | ModelHandle],
        settings: ScoreSettings | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        store: ScoreStore | None = None,
        batch_size: int = 1,
        workers: int = 2,
        max_model_pixels: int = DEFAULT_MAX_MODEL_PIXELS,
    ):
        if not models:
            raise ValueError("at least one autoencoder is needed")
        self.settings = settings or ScoreSettings()
        self.models = [_Model(m, self.settings.seed) for m in models]
        self.max_pixels = max_pixels
        self.store = store
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self.max_model_pixels = max_model_pixels
        from aedr.store import settings_digest

        self._settings_key = settings_digest(self.settings.as_dict())
        self._store_lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------

    def score_file(self, path: str | os.PathLike) -> list[ScoreRecord]:
        """One record per model for ``path``; failures become error records."""
        return next(self.score_images([path]))

    def score_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[ScoreRecord]:
        """Records for every image file under ``paths`` (directories are walked), as they finish."""
        for records in self.score_images(iter_image_files(paths)):
            yield from records

    def score_images(self, paths: Iterable[str | os.PathLike]) -> Iterator[list[ScoreRecord]]:
        """Each file's records (one per model, in model order) as soon as all of them are done.

        With ``batch_size`` 1 files complete in order; with larger batches, in batch order.
        """
        return self.score_prepared(self._prepare_all(paths))

    def score_prepared(
        self, prepared_files: Iterable[PreparedImage]
    ) -> Iterator[list[ScoreRecord]]:
        """The compute stage: batch, run and finish images read elsewhere, as they complete."""
        buckets: dict[tuple[int, tuple[int, ...]], list[tuple[_Job, np.ndarray]]] = {}
        done: deque[_Job] = deque()
        for prepared in prepared_files:
            self._start(prepared, buckets, done)
            yield from (self._finish(j) for j in self._drain(done))
        for key in list(buckets):
            self._run(key, buckets.pop(key), done)
        yield from (self._finish(j) for j in self._drain(done))

    def model_input(self, image: LoadedImage, autoencoder: Autoencoder) -> list[np.ndarray]:
        """The (3, H, W) float32 arrays the autoencoder sees: aligned to its size multiple."""
        multiple = autoencoder.size_multiple
        if self.settings.crop:
            pieces = grid_crops(image.rgb, multiple, self.settings.crop, self.settings.crops)
        elif self.settings.alignment == "resize":
            pieces = [resize_to_multiple(image.rgb, multiple)]
        else:
            pieces = [aligned_crop(image.rgb, multiple)]
        for piece in pieces:
            height, width = piece.shape[:2]
            if height * width > self.max_model_pixels:
                raise ImageError(
                    f"image is {image.width}x{image.height}: {height}x{width} pixels in one "
                    f"autoencoder pass exceeds --max-model-pixels {self.max_model_pixels}; score "
                    "it in crops with --crop N (and --crops K), or raise the limit"
                )
        return [to_model_input(piece) for piece in pieces]

    # -- background stage ---------------------------------------------------------------------

    def _prepare_all(self, paths: Iterable[str | os.PathLike]) -> Iterator[PreparedImage]:
        """``_prepare`` run ahead in worker threads, results in input order."""
        window = 2 * self.workers
        with ThreadPoolExecutor(self.workers, thread_name_prefix="aedr-read") as pool:
            pending: deque = deque()
            for path in paths:
                pending.append(pool.submit(self._prepare, Path(path)))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _prepare(self, path: Path) -> PreparedImage:
        prepared = PreparedImage(path)
        if self.store is not None:
            try:
                prepared.content = content_hash(path)
            except ImageError as exc:
                prepared.error = str(exc)
                return prepared
            prepared.cached = self._lookup(prepared.content)
            if len(prepared.cached) == len(self.models):
                return prepared  # fully answered from the store: nothing to decode
        return decode(prepared, path, self.max_pixels, self.settings.homogeneity_levels)

    def _lookup(self, content: str) -> dict[int, dict[str, Any]]:
        hits = {}
        with self._store_lock:
            for index, model in enumerate(self.models):
                if model.identity is not None:
                    hit = self.store.get(content, model.identity, self._settings_key)
                    if hit is not None:
                        hits[index] = hit
        return hits

    # -- compute stage ------------------------------------------------------------------------

    def _start(self, prepared: PreparedImage, buckets, done: deque[_Job]) -> None:
        """Queue an image's inputs in the batch buckets (running the ones that fill up)."""
        path = display_path(prepared.path)
        job = _Job(prepared, {})
        if prepared.error:
            job.records = {
                i: ScoreRecord(path, m.name, m.group, error=prepared.error)
                for i, m in enumerate(self.models)
            }
            job.sealed = True
            done.append(job)
            return
        for index, model in enumerate(self.models):
            if index in prepared.cached:
                job.records[index] = ScoreRecord(**{**prepared.cached[index], "path": path})
                continue
            image = prepared.image
            record = ScoreRecord(
                path, model.name, model.group, homogeneity=prepared.homogeneity,
                width=image.width, height=image.height,
            )  # fmt: skip
            job.records[index] = record
            try:
                inputs = self.model_input(image, model.autoencoder)
            except ImageError as exc:
                record.error = str(exc)
                continue
            job.crop_losses[index] = []
            for array in inputs:
                key = (index, array.shape)
                buckets.setdefault(key, []).append((job, array))
                job.waiting += 1
                if len(buckets[key]) >= self.batch_size:
                    self._run(key, buckets.pop(key), done)
        job.sealed = True
        if job.waiting == 0:
            done.append(job)

    def _run(self, key, items: list[tuple[_Job, np.ndarray]], done: deque[_Job]) -> None:
        """Score one batch of equal-shape inputs for one model; finish the jobs it completes."""
        import torch

        index = key[0]
        model = self.models[index]
        batch = torch.from_numpy(np.stack([array for _, array in items]))
        try:
            if self.settings.method == "latenttracer":
                from aedr.baselines import latenttracer_losses

                loss1 = latenttracer_losses(model.autoencoder, batch)
                loss2 = torch.full_like(loss1, float("nan"))
            else:
                loss1, loss2 = reconstruction_losses(
                    model.autoencoder, batch, self.settings.latent, model.generator
                )
            losses: list[tuple[float, float] | str] = list(
                zip(loss1.tolist(), loss2.tolist(), strict=True)
            )
        except Exception as exc:  # one model failing on one batch must not end the run
            losses = [f"autoencoder failed: {type(exc).__name__}: {exc}"] * len(items)
        for (job, _), result in zip(items, losses, strict=True):
            record = job.records[index]
            if isinstance(result, str):
                record.error = record.error or result
            else:
                job.crop_losses[index].append(result)
            job.waiting -= 1
            if job.waiting == 0 and job.sealed:
                done.append(job)

    def _drain(self, done: deque[_Job]) -> Iterator[_Job]:
        while done:
            yield done.popleft()

    def _finish(self, job: _Job) -> list[ScoreRecord]:
        """Combine crop losses into each record, store the successes, return model order."""
        for index, crop_losses in job.crop_losses.items():
            record = job.records[index]
            if record.error or not crop_losses:
                continue
            # Equal-sized crops: the mean of their MSEs is the MSE over all their pixels.
            record.loss1 = float(np.mean([loss1 for loss1, _ in crop_losses]))
            try:
                self._set_signal(record, float(np.mean([loss2 for _, loss2 in crop_losses])))
            except SignalError as exc:
                record.error = str(exc)
                continue
            self._save(job.prepared, self.models[index], record)
        return [job.records[index] for index in range(len(self.models))]

    def _set_signal(self, record: ScoreRecord, loss2: float) -> None:
        """Fill loss2, ratio and the signal of the run's method (all lower = belongs)."""
        method = self.settings.method
        if method == "latenttracer":
            if not math.isfinite(record.loss1):
                raise SignalError(f"non-finite inversion loss {record.loss1}")
            record.signal = record.loss1
            return
        record.loss2 = loss2
        record.ratio = loss_ratio(record.loss1, loss2)
        # "fitted" needs a calibration's beta: its records carry the paper's signal, and the
        # calibration computes its own statistic from loss1, loss2 and homogeneity.
        statistic = "aedr" if method == "fitted" else method
        record.signal = signal_of_record(record.as_dict(), statistic)

    def _save(self, prepared: PreparedImage, model: _Model, record: ScoreRecord) -> None:
        if self.store is None or prepared.content is None or model.identity is None:
            return
        with self._store_lock:
            self.store.put(prepared.content, model.identity, self._settings_key, record.as_dict())


def decode(
    prepared: PreparedImage, source: Path, max_pixels: int, levels: int = LEVELS
) -> PreparedImage:
    """Fill in ``prepared``'s pixels and homogeneity from the file ``source``, or its error."""
    try:
        prepared.image = read_image(source, max_pixels)
        prepared.homogeneity = glcm_homogeneity(prepared.image.gray, levels)
    except (ImageError, ValueError) as exc:
        prepared.error = str(exc)
    except Exception as exc:  # one unreadable file must never end the run
        prepared.error = f"unexpected error reading the file: {type(exc).__name__}: {exc}"
    return prepared


def content_hash(path: Path) -> str:
    from aedr.store import file_sha256

    try:
        return file_sha256(path)
    except OSError as exc:
        raise file_error(path, exc) from None


def score_array(
    autoencoder: Autoencoder, rgb: np.ndarray, settings: ScoreSettings | None = None
) -> ScoreRecord:
    """Score an in-memory (H, W, 3) uint8 RGB image; homogeneity uses OpenCV's ``cvtColor`` luma."""
    image = LoadedImage(Path("<array>"), rgb, luma_opencv(rgb), "array")
    prepared = PreparedImage(image.path, image=image, homogeneity=glcm_homogeneity(image.gray))
    return next(Scorer([autoencoder], settings).score_prepared([prepared]))[0]
