"""Measuring images against one or more autoencoders: files in, one measurement per (image, model).

A measurement holds what the autoencoder passes produced (loss1 and loss2 of the double
reconstruction, or LatentTracer's inversion loss), the image's homogeneity and size, and its
:class:`~aedr.measure.provenance.Provenance`. It decides nothing: every decision statistic
(``aedr.decide.statistics``) is computed from it later, so one scoring run serves them all.

One pipeline serves score, calibrate and attribute:

- files are read, hashed, decoded and their homogeneity computed in background threads, ahead of
  the autoencoder (decoding overlaps compute); homogeneity once per image, however many models;
- with a score store, an (image content, provenance) already measured is answered from it,
  without decoding the image or loading the model; models load only on the first miss;
- inputs of equal shape for one model are batched together (``batch_size``); a batch that comes
  out non-finite in half precision is recomputed in float32 (see ``aedr.measure.reconstruction``);
- ``crop``/``crops`` measure grid-aligned square crops instead of the whole image, and
  ``max_model_pixels`` refuses (with an error record) inputs too large to run in one pass.

A file that cannot be measured gets an error record for every model and the run goes on.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aedr.autoencoders.base import Autoencoder
from aedr.measure.degradation import (
    Degradation,
    Observations,
    off_grid,
    search_phase,
)
from aedr.measure.distances import check_distance
from aedr.measure.homogeneity import LEVELS, glcm_homogeneity
from aedr.measure.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    LoadedImage,
    aligned_crop,
    area_resize,
    file_error,
    grid_crops,
    image_size,
    iter_image_files,
    luma_opencv,
    read_image,
    regular_file_size,
    resize_to,
    rounded_size,
    to_model_input,
)
from aedr.measure.memory import check_budget, default_budget, estimate, peak_bytes_per_pixel
from aedr.measure.provenance import Provenance
from aedr.measure.reconstruction import (
    EVIDENCE_FIELDS,
    SignalError,
    evidence_fields,
    loss_ratio,
    reconstruction_measures,
)
from aedr.measure.record import Measurement, display_path
from aedr.measure.settings import ScoreSettings, SettingsError
from aedr.timing import stage

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.loading import ModelHandle
    from aedr.measure.store import ScoreStore

DEFAULT_WORKERS = 2
"""Threads reading and decoding images ahead of the autoencoder (and Ray's scoring actors)."""
DEFAULT_MAX_MODEL_PIXELS = 4096 * 4096
"""Largest input one autoencoder pass may take (see docs/performance.md); larger need crops."""
PAPER_GRID = 8
"""The authors round every side to a multiple of 8, whatever the family's pipeline grid."""
UNPROBED_PER_PIXEL = 16 * 1024
"""An input that fits the budget at this many bytes per pixel (4x the SD VAE's measured peak) is
measured without probing its model's real figure."""
LATENTTRACER_SIZE = 512
"""LatentTracer resizes every input to 512 x 512 (cv2 INTER_AREA) before the model's own size."""


class _Model:
    """One model of a run: loaded on first use, with its own seeded generator.

    One generator per model, as the authors' script seeds one: with ``latent="sample"`` a model's
    scores depend on the order of images but never on which other models run.
    """

    def __init__(self, source: Autoencoder | ModelHandle, settings: ScoreSettings):
        self._source, self._settings = source, settings
        self._autoencoder = source if isinstance(source, Autoencoder) else None
        self._handle = None if isinstance(source, Autoencoder) else source
        self.generator: torch.Generator | None = None
        self.name, self.group = source.name, source.group
        self._per_pixel: float | None = None

    def peak_per_pixel(self) -> float:
        """Peak bytes per input pixel of one double reconstruction (probed once, when first
        needed: ``aedr.measure.memory``)."""
        if self._per_pixel is None:
            self._per_pixel = peak_bytes_per_pixel(self.autoencoder)
        return self._per_pixel

    @property
    def provenance(self) -> Provenance | None:
        """The provenance of this model's measurements; None while its identity is unknown (a
        hub model still to be downloaded)."""
        identity = self._source.identity
        if identity is None:
            return None
        if self._autoencoder is not None:
            from aedr.autoencoders.registry import dtype_name

            autoencoder = self._autoencoder
            dtype, device = dtype_name(autoencoder.dtype, None, "cpu"), autoencoder.device.type
        elif self._handle is not None:
            dtype, device = self._handle.dtype_name, self._handle.device_kind
        else:
            return None
        return self._settings.provenance(identity, dtype, device)

    @property
    def auto_dtype(self) -> bool:
        """Whether the precision was left to ``auto`` (a calibration may choose it)."""
        return self._handle is not None and self._handle.auto_dtype

    def loaded_provenance(self) -> Provenance | None:
        """The provenance, loading the model first where only loading tells its identity (a hub
        model still to be downloaded)."""
        if self.provenance is None:
            self.autoencoder  # noqa: B018 (the property loads the model)
        return self.provenance

    @property
    def size_multiple(self) -> int | None:
        """The model's input grid, where it is known without loading the model."""
        return getattr(self._source, "size_multiple", None)

    def grid(self, load: bool = False) -> tuple[int, int | None] | None:
        """(multiple, fixed side) inputs are aligned to under these settings; None while unknown
        without loading the model (``load`` loads it, so the grid is always known).

        The paper's grid is 8 (the spatial factor where a family's is larger), and a square side
        where the authors' script forces one (Kandinsky 2.1: 512). LatentTracer's published input
        resizing ends at the family's native generation size.
        """
        if load:
            self.autoencoder  # noqa: B018 (the property loads the model)
        spec = getattr(self._source, "spec", None)
        if self._settings.inversion_resize:
            return 8, spec.native_size if spec is not None else LATENTTRACER_SIZE
        if self._settings.alignment != "resize" or self._settings.grid != "paper":
            loaded = self._autoencoder
            multiple = loaded.size_multiple if loaded is not None else self.size_multiple
            return None if multiple is None else (multiple, None)
        if self._autoencoder is not None:
            factor = self._autoencoder.spatial_factor
        elif spec is not None:
            factor = spec.spatial_factor
        else:
            return None
        return max(PAPER_GRID, factor), spec.paper_size if spec is not None else None

    def loaded_grid(self) -> tuple[int, int | None]:
        """The grid, loading the model if needed (always known then)."""
        grid = self.grid(load=True)
        if grid is None:
            raise ValueError(f"the grid of {self.name!r} is unknown after loading it")
        return grid

    @property
    def loaded(self) -> bool:
        return self._autoencoder is not None

    @property
    def autoencoder(self) -> Autoencoder:
        if self._autoencoder is None and self._handle is not None:
            self._autoencoder = self._handle.load()
        if self._autoencoder is None:
            raise ValueError(f"model {self.name!r} has nothing to load")
        if self.generator is None:
            import torch

            # Per-image noise is drawn on the CPU, as the authors' torch.Generator() is, so the
            # same seed gives the same latents on every device.
            per_image = self._settings.noise == "image"
            device = "cpu" if per_image else self._autoencoder.device
            self.generator = torch.Generator(device).manual_seed(self._settings.seed)
        return self._autoencoder

    def draw_noise(self, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The noise of one (3, H, W) input's two encoder passes, drawn now (in input order) when
        noise is per image; None otherwise. Drawn like diffusers' ``randn_tensor`` with the
        authors' CPU generator: latent-shaped, in the model's dtype, one pass after the other."""
        if self._settings.latent != "sample" or self._settings.noise != "image":
            return None
        import torch

        autoencoder = self.autoencoder
        factor = autoencoder.spatial_factor
        shape = (autoencoder.latent_channels, *(n // factor for n in input_shape[1:]))
        first, second = (
            torch.randn(shape, generator=self.generator, dtype=autoencoder.dtype) for _ in range(2)
        )
        return first, second


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
    records: dict[int, Measurement]  # by model index
    crop_losses: dict[int, list[tuple[float, ...]]] = field(default_factory=dict)
    evidence: dict[int, np.ndarray] = field(default_factory=dict)  # by model index
    waiting: int = 0  # inputs queued but not yet measured
    sealed: bool = False  # all of its inputs are queued: done once ``waiting`` reaches 0


class Scorer:
    """Measures files against a fixed set of autoencoders (loaded, or handles loaded on demand).

    ``models`` are autoencoders or :class:`~aedr.autoencoders.ModelHandle` s; ``store`` a score
    store consulted before and filled after each measurement (not with sampled latents);
    ``batch_size`` inputs of equal shape per pass; ``workers`` reader threads; ``max_pixels`` the
    largest image (by its header) that is decoded, ``max_model_pixels`` the largest input of one
    autoencoder pass. ``local_maps`` keeps each measurement's per-pixel evidence (its
    ``evidence``), computed from the same reconstructions as the losses; such runs measure every
    image afresh (the store keeps no maps) and need one input per image (no ``crop`` sampling).
    ``max_memory`` bounds one pass's estimated peak in bytes (``aedr.measure.memory``; default:
    3/4 of the memory available on the model's device when it first runs); an input over it is
    an error record, and batches shrink to fit.
    """

    def __init__(
        self,
        models: Sequence[Autoencoder | ModelHandle],
        settings: ScoreSettings | None = None,
        *,
        store: ScoreStore | None = None,
        batch_size: int = 1,
        workers: int = DEFAULT_WORKERS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_model_pixels: int = DEFAULT_MAX_MODEL_PIXELS,
        local_maps: bool = False,
        max_memory: int | None = None,
    ):
        if not models:
            raise ValueError("at least one autoencoder is needed")
        self.settings = (settings or ScoreSettings()).resolved(local_maps)
        if local_maps and self.settings.robust != "off":
            raise SettingsError(
                "local maps are drawn on the image's own pixel grid: measure them with robust off"
            )
        if local_maps and (self.settings.crop or self.settings.measurement != "reconstruction"):
            raise SettingsError(
                "local maps come from one double reconstruction of the whole image: they need "
                "the reconstruction measurement with crop or resize alignment, not sampled crops"
            )
        check_distance(self.settings.distance)  # LPIPS weights: missing is a set-up error
        self.local_maps = local_maps
        self.models = [_Model(m, self.settings) for m in models]
        self.max_pixels = max_pixels
        # A sampled score depends on the image's place in the run (the noise it draws), so it
        # is neither answered from the store nor kept there.
        self.store = store if self.settings.latent != "sample" else None
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self.max_model_pixels = max_model_pixels
        self.max_memory = max_memory
        self._budgets: dict[str, int | None] = {}
        self._store_lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------

    def score_file(self, path: str | os.PathLike) -> list[Measurement]:
        """One measurement per model for ``path``; failures become error records."""
        return next(self.score_images([path]))

    def score_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[Measurement]:
        """Measurements of every image file under ``paths`` (folders are walked), as they finish."""
        for records in self.score_images(iter_image_files(paths)):
            yield from records

    def score_images(self, paths: Iterable[str | os.PathLike]) -> Iterator[list[Measurement]]:
        """Each file's measurements (one per model, in model order) as soon as all are done.

        With ``batch_size`` 1 files complete in order; with larger batches, in batch order.
        """
        return self.score_prepared(self._prepare_all(paths))

    def score_prepared(
        self, prepared_files: Iterable[PreparedImage]
    ) -> Iterator[list[Measurement]]:
        """The compute stage: batch, run and finish images read elsewhere, as they complete."""
        buckets: dict[tuple[int, Any], list[tuple[_Job, np.ndarray, Any, Any]]] = {}
        done: deque[_Job] = deque()
        for prepared in prepared_files:
            self._start(prepared, buckets, done)
            yield from (self._finish(j) for j in self._drain(done))
        for key in list(buckets):
            self._run(key, buckets.pop(key), done)
        yield from (self._finish(j) for j in self._drain(done))

    def model_input(
        self, image: LoadedImage, multiple: int, fixed_size: int | None = None
    ) -> list[np.ndarray]:
        """The (3, H, W) float32 arrays the autoencoder sees: aligned to ``multiple``, or resized
        to a ``fixed_size`` square where the settings' grid forces one."""
        self.check_input_size(image.width, image.height, multiple, fixed_size)
        settings = self.settings
        if settings.inversion_resize:  # LatentTracer: cv2 INTER_AREA to 512, then native size
            square = area_resize(image.rgb, LATENTTRACER_SIZE)
            side = fixed_size or LATENTTRACER_SIZE
            pieces = [resize_to(square, (side, side), "bilinear")]
        elif settings.crop:
            pieces = grid_crops(image.rgb, multiple, settings.crop, settings.crops)
        elif settings.alignment == "resize":
            size = self._resized_size(image.width, image.height, multiple, fixed_size)
            pieces = [resize_to(image.rgb, size, settings.resize_filter)]
        else:
            pieces = [aligned_crop(image.rgb, multiple)]
        return [to_model_input(piece) for piece in pieces]

    @staticmethod
    def _resized_size(width: int, height: int, multiple: int, fixed: int | None):
        return (fixed, fixed) if fixed else rounded_size(width, height, multiple)

    def check_input_size(
        self, width: int, height: int, multiple: int, fixed_size: int | None = None
    ) -> None:
        """Refuse an image whose autoencoder pass would exceed ``max_model_pixels``.

        It needs the image's size alone, so a file's header suffices: an image that will be
        refused is never decoded.
        """
        if self.settings.inversion_resize:
            rows = cols = fixed_size or LATENTTRACER_SIZE
        elif self.settings.crop:
            side = self.settings.crop - self.settings.crop % multiple or multiple
            rows, cols = min(side, height - height % multiple), min(side, width - width % multiple)
        elif self.settings.alignment == "resize":
            cols, rows = self._resized_size(width, height, multiple, fixed_size)
        else:
            rows, cols = height - height % multiple, width - width % multiple
        if rows * cols > self.max_model_pixels:
            raise ImageError(
                f"image is {width}x{height}: {rows}x{cols} pixels in one autoencoder pass "
                f"exceed the model-pixel limit {self.max_model_pixels}; measure it in crops, or "
                "raise the limit"
            )

    def check_memory(self, model: _Model, rows: int, cols: int) -> None:
        """Refuse an input whose pass would exceed the memory budget (``MemoryBudgetError``).

        Inputs that would fit even at ``UNPROBED_PER_PIXEL`` bytes per pixel pass unprobed."""
        budget = self._budget(model)
        if budget is None or estimate(UNPROBED_PER_PIXEL, rows * cols) <= budget:
            return
        check_budget(model.name, model.peak_per_pixel(), rows, cols, 1, budget)

    def _batch_limit(self, model: _Model, rows: int, cols: int) -> int:
        """The batch size, lowered to what the memory budget holds for inputs of this size."""
        budget = self._budget(model)
        if self.batch_size == 1 or budget is None:
            return self.batch_size
        if estimate(UNPROBED_PER_PIXEL, rows * cols * self.batch_size) <= budget:
            return self.batch_size
        return max(1, min(self.batch_size, budget // estimate(model.peak_per_pixel(), rows * cols)))

    def _budget(self, model: _Model) -> int | None:
        if self.max_memory is not None:
            return self.max_memory
        device = str(model.autoencoder.device)
        if device not in self._budgets:  # once per device: after the models are loaded
            self._budgets[device] = default_budget(device)
        return self._budgets[device]

    # -- background stage ---------------------------------------------------------------------

    def _prepare_all(self, paths: Iterable[str | os.PathLike]) -> Iterator[PreparedImage]:
        """``_prepare`` run ahead in worker threads, results in input order.

        At most ``2 * workers`` images are decoded ahead. When the run ends early (an interrupt,
        an error) the reads not yet started are cancelled and the ones under way awaited: each
        reads one regular file, so that is prompt, and nothing is left touching the store after
        the run returns.
        """
        window = 2 * self.workers
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="aedr-read")
        pending: deque = deque()
        try:
            for path in paths:
                pending.append(pool.submit(self._prepare, Path(path)))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _prepare(self, path: Path) -> PreparedImage:
        prepared = PreparedImage(path)
        try:
            with stage("hash"):
                prepared.content = content_hash(path)
        except ImageError as exc:
            prepared.error = str(exc)
            return prepared
        if self.store is not None and not self.local_maps:
            with stage("store"):
                prepared.cached = self._lookup(prepared.content)
            if len(prepared.cached) == len(self.models) and all(
                hit.get("grey") is not None for hit in prepared.cached.values()
            ):
                return prepared  # fully answered from the store: nothing to decode
            # (a record stored before ``grey`` existed: the pixels say it, no pass is rerun)
        if not prepared.cached:  # an error now would be every model's, cached ones too
            prepared.error = self._refusal_from_header(path)
            if prepared.error:
                return prepared
        return decode(
            prepared, path, self.max_pixels, self.settings.homogeneity_levels,
            exif_transpose=self.settings.exif == "transpose",
        )  # fmt: skip

    def _refusal_from_header(self, path: Path) -> str:
        """Why no model could take this image, judged from its header ("" when one can, or when
        a model's grid is unknown before loading)."""
        grids = [grid for m in self.models if (grid := m.grid()) is not None]
        if len(grids) < len(self.models):
            return ""
        try:
            width, height = image_size(path, self.max_pixels)
        except ImageError:
            return ""  # decoding will name the problem
        errors = []
        for multiple, fixed_size in grids:
            try:
                self.check_input_size(width, height, multiple, fixed_size)
            except ImageError as exc:
                errors.append(str(exc))
        return errors[0] if len(errors) == len(grids) else ""

    def _lookup(self, content: str) -> dict[int, dict[str, Any]]:
        hits: dict[int, dict[str, Any]] = {}
        store = self.store
        if store is None:
            return hits
        with self._store_lock:
            for index, model in enumerate(self.models):
                provenance = model.provenance
                if provenance is not None:
                    hit = store.get(content, store_key(provenance))
                    if hit is not None and _complete(hit):
                        hits[index] = hit
        return hits

    # -- compute stage ------------------------------------------------------------------------

    def _start(self, prepared: PreparedImage, buckets, done: deque[_Job]) -> None:
        """Queue an image's inputs in the batch buckets (running the ones that fill up)."""
        path = display_path(prepared.path)
        content = prepared.content or ""
        job = _Job(prepared, {})
        if prepared.error:
            job.records = {
                i: Measurement(path, m.name, m.group, self.settings.measurement,
                               content_sha256=content, error=prepared.error)
                for i, m in enumerate(self.models)
            }  # fmt: skip
            job.sealed = True
            done.append(job)
            return
        for index, model in enumerate(self.models):
            if index in prepared.cached:  # named as in this run, whatever the stored run said
                stored = {**prepared.cached[index], "path": path, "content_sha256": content,
                          "model": model.name, "group": model.group}  # fmt: skip
                if stored.get("grey") is None and prepared.image is not None:
                    stored["grey"] = prepared.image.grey
                    job.records[index] = Measurement.from_dict(stored)
                    self._save(job.records[index])  # completed once: no decode next time
                    continue
                job.records[index] = Measurement.from_dict(stored)
                continue
            image = prepared.image
            assert image is not None  # a model not answered from the store has the pixels
            record = Measurement(
                path, model.name, model.group, self.settings.measurement,
                homogeneity=prepared.homogeneity, width=image.width, height=image.height,
                content_sha256=content, jpeg_quality=image.jpeg.quality if image.jpeg else None,
                grey=image.grey,
            )  # fmt: skip
            job.records[index] = record
            try:  # a model that cannot load fails here, ending the run as a set-up error
                grid = model.loaded_grid()
                self.check_input_size(image.width, image.height, *grid)
                with stage("preprocessing"):
                    observation = self._observation(image, model, record)
                    inputs = [observation.view] if observation else self.model_input(image, *grid)
                for array in inputs:  # what each pass takes: crops, an undone resize
                    self.check_memory(model, *array.shape[1:])
            except ImageError as exc:
                record.error = str(exc)
                continue
            except Exception as exc:
                if not model.loaded:
                    raise
                # the grid search failing on one image must not end the run
                record.error = f"robust measurement failed: {type(exc).__name__}: {exc}"
                continue
            job.crop_losses[index] = []
            for array in inputs:
                # observations share a batch when alike in shape, each through its own tables
                key = (index, array.shape, observation and tuple(observation.reference.shape))
                noise = model.draw_noise(array.shape)  # now: in input order, whatever the batch
                buckets.setdefault(key, []).append((job, array, noise, observation))
                job.waiting += 1
                if len(buckets[key]) >= self._batch_limit(model, *array.shape[1:]):
                    self._run(key, buckets.pop(key), done)
        job.sealed = True
        if job.waiting == 0:
            done.append(job)

    def _observation(self, image: LoadedImage, model: _Model, record: Measurement):
        """With robust measurement: the image's degradation-aware comparison for this model (and
        its description in ``record``), or None when nothing was found to undo."""
        if self.settings.robust == "off":
            return None
        multiple, _ = model.loaded_grid()
        resized_by = self.settings.resized_by
        degradation = Degradation(jpeg=image.jpeg, resize=resized_by)
        found = image.enlargement if self.settings.estimates_enlargement() else None
        if found is not None:
            degradation = Degradation.enlarged(image.jpeg, found)
            resized_by = found.factor
        elif self.settings.searches_phase() and off_grid(image.width, image.height, multiple):
            phase = search_phase(model.autoencoder, image.rgb)
            if phase and min(image.height - phase[0], image.width - phase[1]) < multiple:
                phase = None  # cut at it, the image would be smaller than the model's input
            degradation = Degradation(jpeg=image.jpeg, phase=phase)
        record.degradation = degradation.as_record()
        if not degradation.any:
            return None
        observation = degradation.observation(image.rgb, multiple)
        rows, cols = observation.view.shape[1:]
        if rows * cols > self.max_model_pixels:
            raise ImageError(
                f"undoing the resize by {resized_by} takes the image to {cols}x{rows} pixels, "
                f"over the model-pixel limit {self.max_model_pixels}"
            )
        return observation

    def _run(self, key, items: list[tuple[_Job, np.ndarray, Any, Any]], done: deque[_Job]) -> None:
        """Measure one batch of equal-shape inputs for one model; finish the jobs it completes."""
        import torch

        index = key[0]
        model = self.models[index]
        settings = self.settings
        batch = torch.from_numpy(np.stack([item[1] for item in items]))
        noise = evidence = observations = None
        if items[0][3] is not None:
            observations = Observations(tuple(item[3] for item in items))
        if items[0][2] is not None:  # per-image noise, drawn when the inputs were queued
            first, second = (torch.stack([item[2][i] for item in items]) for i in range(2))
            noise = (first, second)
        try:
            if settings.measurement == "inversion":
                from aedr.measure.inversion import latenttracer_losses

                columns: tuple[torch.Tensor, ...] = (latenttracer_losses(model.autoencoder, batch),)
            else:
                measures = reconstruction_measures(
                    model.autoencoder, batch, settings.latent, model.generator,
                    noise=noise, loss_dtype=settings.loss_dtype, evidence=self.local_maps,
                    observations=observations, fastest_layout=settings.preset != "paper",
                    distance=settings.distance, border=settings.border,
                )  # fmt: skip
                means = measures.evidence_means
                columns = (measures.loss1, measures.loss2, *means.unbind(dim=1),
                           *measures.ac_energies.unbind(dim=1))  # fmt: skip
                evidence = measures.evidence
            losses: list[tuple[float, ...] | str] = list(
                zip(*(column.tolist() for column in columns), strict=True)
            )
        except Exception as exc:  # one model failing on one batch must not end the run
            losses = [f"autoencoder failed: {type(exc).__name__}: {exc}"] * len(items)
        for position, ((job, *_), result) in enumerate(zip(items, losses, strict=True)):
            record = job.records[index]
            if isinstance(result, str):
                record.error = record.error or result
            else:
                job.crop_losses[index].append(result)
                if evidence is not None:
                    job.evidence[index] = evidence[position]
            job.waiting -= 1
            if job.waiting == 0 and job.sealed:
                done.append(job)

    def _drain(self, done: deque[_Job]) -> Iterator[_Job]:
        while done:
            yield done.popleft()

    def _finish(self, job: _Job) -> list[Measurement]:
        """Combine crop losses into each record, store the successes, return model order."""
        for index, crop_losses in job.crop_losses.items():
            record = job.records[index]
            if record.error or not crop_losses:
                continue
            # Equal-sized crops: the mean of their MSEs is the MSE over all their pixels.
            means = [float(np.mean(column)) for column in zip(*crop_losses, strict=True)]
            try:
                _fill_losses(record, means)
            except SignalError as exc:
                record.error = str(exc)
                continue
            record.provenance = self.models[index].provenance
            record.evidence = job.evidence.get(index)
            self._save(record)
        return [job.records[index] for index in range(len(self.models))]

    def _save(self, record: Measurement) -> None:
        if self.store is None or not record.content_sha256 or record.provenance is None:
            return
        stored = {k: v for k, v in record.as_dict().items() if k not in ("path", "content_sha256")}
        with self._store_lock, stage("store"):
            self.store.put(record.content_sha256, store_key(record.provenance), stored)


def store_key(provenance: Provenance) -> str:
    """A measurement's key in the score store: its provenance's digest, marked where the
    measurement looks for an enlargement to undo (``ScoreSettings.enlargement``), so that what
    aedr 0.12 and earlier stored without looking is measured again, not reused; and where it
    searches a grid phase, so that what aedr 0.17 and earlier found with one window is measured
    again. The provenance, and so the library's keys, stay as they were."""
    key = provenance.digest()
    if provenance.settings.estimates_enlargement():
        key += "+enlargement"
    if provenance.settings.searches_phase():
        key += "+refined-phase"
    return key


def _complete(stored: Mapping[str, Any]) -> bool:
    """Whether a stored record holds every number this version measures (a reconstruction
    stored before ``highpass_log_ratio``, ``highpass_weight`` or ``ac_log_ratio`` existed is
    measured again)."""
    return stored.get("measurement", "reconstruction") != "reconstruction" or all(
        stored.get(name) is not None for name in EVIDENCE_FIELDS
    )


def _fill_losses(record: Measurement, losses: list[float]) -> None:
    """Put a measurement's mean losses in place, refusing what no statistic could use."""
    if record.measurement == "inversion":
        (loss,) = losses
        if not math.isfinite(loss):
            raise SignalError("non-finite inversion loss: the decoder's output is not finite")
        record.inversion_loss = loss
        return
    loss1, loss2, *means = losses
    ratio = loss_ratio(loss1, loss2)  # first: an error record keeps no non-finite loss
    for name, value in evidence_fields(*means).items():
        setattr(record, name, value)
    record.loss1, record.loss2, record.ratio = loss1, loss2, ratio


def decode(
    prepared: PreparedImage,
    source: Path,
    max_pixels: int,
    levels: int = LEVELS,
    *,
    exif_transpose: bool = True,
) -> PreparedImage:
    """Fill in ``prepared``'s pixels and homogeneity from the file ``source``, or its error."""
    try:
        with stage("decode"):
            prepared.image = read_image(source, max_pixels, exif_transpose)
        with stage("homogeneity"):
            prepared.homogeneity = glcm_homogeneity(prepared.image.gray, levels)
    except (ImageError, ValueError) as exc:
        prepared.error = str(exc)
    except Exception as exc:  # one unreadable file must never end the run
        prepared.error = f"unexpected error reading the file: {type(exc).__name__}: {exc}"
    return prepared


def content_hash(path: Path) -> str:
    """SHA-256 of a regular file's bytes (anything else is refused before any read)."""
    from aedr.measure.store import file_sha256

    size = regular_file_size(path)
    try:
        return file_sha256(path, size)
    except OSError as exc:
        raise file_error(path, exc) from None


def score_array(
    autoencoder: Autoencoder, rgb: np.ndarray, settings: ScoreSettings | None = None
) -> Measurement:
    """Measure an in-memory (H, W, 3) uint8 RGB image; homogeneity uses OpenCV's ``cvtColor``
    luma."""
    image = LoadedImage(Path("<array>"), rgb, luma_opencv(rgb), "array")
    prepared = PreparedImage(image.path, image=image, homogeneity=glcm_homogeneity(image.gray))
    return next(Scorer([autoencoder], settings).score_prepared([prepared]))[0]
