"""The jobs users run, as library functions: the CLI, the server and the demo are shells over them.

Measuring (``aedr.measure``) and deciding (``aedr.decide``) meet here: each workflow measures
with a :class:`~aedr.measure.scorer.Scorer` the caller built (its models, store and limits) and
fits or applies decisions on the measurements.

- :func:`calibrate_images`: a threshold from images the model made;
- :func:`calibrate_generator_free`: the same from decoder-made images of the user's photos;
- :func:`calibrate_measurements`: from measurement records already made (or the authors' files);
- :func:`evaluate_files`: accuracy tables and a report from records and labels;
- :func:`localize_images`: per (image, model) the local map, its regions and verdict.

Attribution is :class:`~aedr.attributor.Attributor` (``aedr.attributor``).
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aedr.decide.attribution import NO_MODEL, PARTIAL, decide
from aedr.decide.calibration import (
    DEFAULT_ALPHA,
    DEFAULT_CHAINS,
    DEFAULT_ENLARGEMENTS,
    DEFAULT_JPEG_QUALITIES,
    LADDER_IMAGES,
    Calibration,
    CalibrationError,
    calibrate,
    check_chains,
    check_enlargement_factors,
    check_jpeg_qualities,
    check_jpeg_statistic,
    choose_alpha,
    fit_chain_thresholds,
    fit_enlargement_thresholds,
    fit_grey_thresholds,
    fit_jpeg_thresholds,
    fit_size_thresholds,
    record_enlargement,
    records_of_model,
)
from aedr.decide.evaluation import EvaluationResult, evaluate, read_labels
from aedr.decide.localization import (
    PARTIAL_MIN_SHARE,
    LocalCalibrationError,
    Region,
    consistent_regions,
    consistent_share,
    fit_local_threshold,
    map_samples,
    measurement_map,
)  # fmt: skip
from aedr.decide.statistics import DEFAULT_STATISTIC, get_statistic
from aedr.errors import AedrError
from aedr.measure.evidence import DEFAULT_WINDOW, local_map
from aedr.measure.images import ImageError, iter_image_files, read_image
from aedr.measure.provenance import Provenance
from aedr.measure.record import Measurement
from aedr.measure.scorer import Scorer
from aedr.measure.settings import EVERY_PIXEL
from aedr.records import read_records
from aedr.seals import PublicKey, check_seal, check_trusted

Alpha = float | str  # a share in (0, 1), or "auto" (tuned on negatives)


@dataclass
class CalibrationRun:
    """A fitted calibration with the measurements it was fitted on and those left out."""

    calibration: Calibration
    records: list[dict[str, Any]]
    failed: list[Measurement] = field(default_factory=list)  # images that could not be measured
    skipped: int = 0  # records a statistic could not read (calibrate_measurements)
    images: list[Path] = field(default_factory=list)  # decoder-made images, generator-free only


def calibrate_images(
    scorer: Scorer,
    paths: Iterable[str | os.PathLike],
    statistic: str = DEFAULT_STATISTIC,
    alpha: Alpha = DEFAULT_ALPHA,
    *,
    negatives: Sequence[Mapping[str, Any]] = (),
    default_negatives: bool = True,
    on_measurement: Callable[[Measurement], None] | None = None,
    first: int | None = None,
    local_window: float | None = None,
    jpeg_qualities: Sequence[int] | None = None,
    jpeg_statistic: str | None = None,
    size_thresholds: bool = True,
    enlargements: Sequence[float] | None = None,
    chains: Sequence[tuple[float, int]] | None = None,
) -> CalibrationRun:
    """Measure images the scorer's one model made and fit its calibration on them.

    ``on_measurement`` sees every measurement as it completes (to save or report it); failed
    images are returned, not fitted. ``negatives`` are measurement records of images the model did
    not make; with ``default_negatives`` the shipped negative photos (``aedr.measure.default_photos``)
    are measured too (once per autoencoder with a store). The calibration keeps their signals, so
    its false acceptance is measured; ``alpha="auto"`` tunes alpha on them. ``first`` fits on the first N measured images in
    input order and measures no more (the authors' ``cal_threshold.py`` reads 500).
    ``local_window`` also fits the local-map threshold at the same alpha (``DEFAULT_ALPHA`` with "auto"); the
    scorer must keep local maps. ``jpeg_qualities`` also fits a threshold for JPEG files at each
    quality, reading ``jpeg_statistic`` (:func:`add_jpeg_thresholds`; with ``resized_by``, for
    images resized, then re-encoded); by default (None) at :data:`DEFAULT_JPEG_QUALITIES` where
    the default negatives cap them and the scorer re-encodes like a JPEG file (robust auto, no
    ``resized_by``), none elsewhere (uncapped, they accept most re-encoded photos).
    ``size_thresholds``
    also fits thresholds for smaller images, on centre crops of the images
    (:func:`add_size_thresholds`), where the scorer measures whole images on their own grid and
    every pixel of them: measured with a border (``ScoreSettings.border``, the default), a
    model's own crops score as its full-size images do and the full-size thresholds hold for
    them (docs/results/robustness.md#image-size). A
    scorer that undoes a resize (``resized_by``)
    measures each image, and each default negative, resized by that factor first, as a platform
    would: the calibration then holds for images resized so (images that already were go
    through ``aedr score`` and :func:`calibrate_measurements`). ``enlargements`` also fits
    thresholds for images found enlarged by each factor (:func:`add_enlargement_thresholds`);
    by default (None) :data:`DEFAULT_ENLARGEMENTS` where the scorer looks for enlargements
    (``ScoreSettings.estimates_enlargement``), none where it does not; with them, the clean
    threshold is fitted on the images in which no enlargement was found (the others are counted
    in ``tuning["enlargement_found_left_out"]``). ``chains`` (factor, quality) also fits
    thresholds for JPEG files found enlarged (:func:`add_chain_thresholds`); by default (None)
    :data:`DEFAULT_CHAINS` where the calibration fits thresholds for both JPEG files and
    enlargements, none where it does not. With the default negatives, a threshold for grey
    images too (:func:`add_grey_thresholds`).
    """
    if len(scorer.models) != 1:
        raise CalibrationError("a calibration is fitted for one model: give the scorer one")
    jpeg_qualities = _jpeg_ladder(scorer, jpeg_qualities, default_negatives)
    enlargements = _enlargement_ladder(scorer, enlargements)
    chains = _chain_ladder(chains, jpeg_qualities, enlargements)
    if local_window is not None and not scorer.local_maps:
        raise CalibrationError("a local threshold needs a scorer that keeps local maps")
    _check_first(first)
    good: list[Measurement] = []
    failed: list[Measurement] = []
    samples: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="aedr-resized-") as scratch:
        originals: dict[str, str] = {}
        files = _as_uploaded(scorer, iter_image_files(paths), Path(scratch), originals)
        for (measurement,) in scorer.score_images(files):
            measurement.path = originals.get(measurement.path, measurement.path)
            if on_measurement is not None:
                on_measurement(measurement)
            (good if measurement.ok else failed).append(measurement)
            if measurement.ok and local_window is not None and measurement.evidence is not None:
                samples.append(map_samples(local_map(measurement.evidence, local_window)))
                measurement.evidence = None  # kept as samples only: calibration sets can be large
            if first is not None and len(good) >= first:
                break
        records = [m.as_dict() for m in good]
        negatives, sources = _with_default_negatives(
            scorer, negatives, default_negatives, statistic, Path(scratch) / "negatives"
        )
    clean = _decided_clean(records) if enlargements else records
    calibration = _fit(clean, scorer.models[0].name, statistic, alpha, negatives, sources)
    if len(clean) < len(records):
        calibration.tuning["enlargement_found_left_out"] = len(records) - len(clean)
    _note_first(calibration, first, len(records))
    if local_window is not None:
        try:
            calibration.local = fit_local_threshold(samples, local_window, calibration.alpha)
        except (LocalCalibrationError, ValueError) as exc:
            raise CalibrationError(str(exc)) from None
    if size_thresholds and _smaller_views_score_higher(scorer):
        sides = [(m.width * m.height) ** 0.5 for m in good if m.width and m.height]
        side = float(np.median(sides)) if sides else 0.0
        if size_ladder(side):
            calibration = add_size_thresholds(scorer, calibration, [m.path for m in good], side)
    if jpeg_qualities:
        calibration = add_jpeg_thresholds(
            scorer, calibration, [m.path for m in good], jpeg_qualities,
            default_negatives=default_negatives, statistic=jpeg_statistic,
        )  # fmt: skip
    if enlargements:
        calibration = add_enlargement_thresholds(
            scorer, calibration, [m.path for m in good], enlargements,
            default_negatives=default_negatives,
        )  # fmt: skip
    if chains:
        calibration = add_chain_thresholds(
            scorer, calibration, [m.path for m in good], chains,
            default_negatives=default_negatives,
        )  # fmt: skip
    if default_negatives and scorer.settings.resized_by is None:
        calibration = add_grey_thresholds(scorer, calibration, [m.path for m in good])
    return CalibrationRun(calibration, records, failed)


def _decided_clean(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records an attribution would decide at the clean threshold of a calibration with
    enlargement thresholds: those in which no enlargement was found (a model's own image found
    enlarged is decided at an enlargement's thresholds, and measured with the enlargement
    undone it would stretch the clean one: docs/results/zero-setup.md#enlargements-found-in-own-images).
    All of them where fewer than 2 are left."""
    clean = [r for r in records if not record_enlargement(r)]
    return clean if len(clean) >= 2 else records


def _jpeg_ladder(
    scorer: Scorer, qualities: Sequence[int] | None, default_negatives: bool
) -> tuple[int, ...]:
    """The JPEG qualities to fit thresholds for: ``qualities``, or (None) the default ladder
    where the default negatives cap it and the scorer measures a JPEG file by re-encoding its
    reconstructions with the file's tables, with no stated resize (whose chain is opt-in)."""
    if qualities is not None:
        check_jpeg_qualities(qualities)
        return tuple(qualities)
    settings = scorer.settings
    plain = settings.robust == "auto" and settings.resized_by is None
    return DEFAULT_JPEG_QUALITIES if default_negatives and plain else ()


def add_grey_thresholds(
    scorer: Scorer, calibration: Calibration, images: Sequence[str | os.PathLike]
) -> Calibration:
    """``calibration`` with a threshold for grey images: up to :data:`LADDER_IMAGES` of its own
    ``images`` and the shipped negative photos, made grey (ITU-R 601 luma, as a black-and-white
    conversion makes them) and measured by ``scorer``, each once (with a score store, once
    ever). The negatives cap it (:func:`~aedr.decide.calibration.fit_grey_thresholds`): without
    them a grey image is decided at the clean threshold, which accepts most grey photos. Where
    it cannot be fitted (too few usable grey images), why is noted in
    ``tuning["grey_thresholds"]``."""
    from aedr.measure.default_photos import SOURCE, negative_files

    chosen = _ladder_images(images)
    exif = scorer.settings.exif == "transpose"
    with tempfile.TemporaryDirectory(prefix="aedr-grey-") as scratch:
        own = _grey_copies(scorer, chosen, Path(scratch) / "own", exif)
        negatives = _grey_copies(scorer, negative_files(), Path(scratch) / "negatives", False)
        try:
            return fit_grey_thresholds(
                calibration, _measured(scorer, own), _measured(scorer, negatives), [SOURCE]
            )
        except CalibrationError as exc:
            tuning = {**calibration.tuning, "grey_thresholds": f"none: {exc}"}
            return replace(calibration, tuning=tuning, digest="")


def _grey_copies(
    scorer: Scorer, paths: Sequence[str | os.PathLike], folder: Path, exif: bool
) -> list[Path]:
    """Grey PNG copies in ``folder`` of the images ``paths`` (unreadable ones are left out)."""
    folder.mkdir(parents=True)
    copies = []
    for index, path in enumerate(paths):
        try:
            rgb = read_image(path, scorer.max_pixels, exif).rgb
        except ImageError:
            continue
        copy = folder / f"{index:06d}.png"
        Image.fromarray(rgb).convert("L").save(copy, format="PNG")
        copies.append(copy)
    return copies


ENLARGEMENT_FILTERS = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR)
"""The filters the images of the enlargement ladder are enlarged with, in turn (own images and
negatives alike): platforms use either, and thresholds and caps fitted on bicubic enlargements
alone let bilinear enlargements of photos through (docs/results/robustness.md#thresholds-for-enlarged-images)."""


def _enlargement_ladder(scorer: Scorer, factors: Sequence[float] | None) -> tuple[float, ...]:
    """The enlargement factors to fit thresholds for: ``factors``, or the default ladder (None)
    where the scorer looks for enlargements; refused where it does not, or out of range."""
    looks = scorer.settings.estimates_enlargement()
    if factors is None:
        return DEFAULT_ENLARGEMENTS if looks else ()
    factors = tuple(factors)
    if factors and not looks:
        raise CalibrationError(
            "thresholds for enlarged images need a scorer that looks for enlargements (robust "
            "auto, enlargement estimate, no resized_by): give none"
        )
    check_enlargement_factors(factors)
    return factors


def add_enlargement_thresholds(
    scorer: Scorer,
    calibration: Calibration,
    images: Sequence[str | os.PathLike],
    factors: Sequence[float],
    *,
    default_negatives: bool = True,
) -> Calibration:
    """``calibration`` with a threshold for images found enlarged by each of ``factors``: up to
    :data:`LADDER_IMAGES` of its own ``images`` enlarged by the factor (bicubic and bilinear
    in turn, :data:`ENLARGEMENT_FILTERS`) and measured by ``scorer`` as any image is, the
    enlargement found and undone; with
    ``default_negatives`` the shipped negative photos too, so each factor's false acceptance
    is known. Each enlarged image is measured once (with a score store, once ever). A factor
    too few of whose images show their enlargement gets no threshold, noted in
    ``tuning["enlargement_thresholds"]`` (:func:`~aedr.decide.calibration.fit_enlargement_thresholds`)."""
    from aedr.measure.default_photos import SOURCE, negative_files

    factors = _enlargement_ladder(scorer, factors)
    exif = scorer.settings.exif == "transpose"
    chosen = _ladder_images(images)
    photos = negative_files() if default_negatives else []
    with tempfile.TemporaryDirectory(prefix="aedr-enlarged-") as scratch:

        def fit(factor: float) -> Calibration:
            folder = Path(scratch) / f"{factor:g}"
            own = _enlarged_copies(scorer, chosen, folder / "own", factor, exif)
            negatives = _enlarged_copies(scorer, photos, folder / "negatives", factor, False)
            records = _measured(scorer, [path for paths in own.values() for path in paths])
            by_filter = {name: _measured(scorer, paths) for name, paths in negatives.items()}
            return fit_enlargement_thresholds(
                calibration, {factor: records}, {factor: by_filter}, [SOURCE]
            )

        steps = [(f"x{factor:g}", functools.partial(fit, factor)) for factor in factors]
        return _fitted_each(calibration, "enlargements", "enlargement_thresholds", steps)


def _chain_ladder(
    chains: Sequence[tuple[float, int]] | None,
    qualities: Sequence[int],
    enlargements: Sequence[float],
) -> tuple[tuple[float, int], ...]:
    """The chains to fit thresholds for: ``chains``, or (None) the default ones where the
    calibration fits thresholds for JPEG files (``qualities``) and enlargements both; refused
    where it fits none for enlargements (its scorer does not look for them)."""
    if chains is None:
        return DEFAULT_CHAINS if qualities and enlargements else ()
    chains = tuple(chains)
    check_chains(chains)
    if chains and not enlargements:
        raise CalibrationError(
            "thresholds for JPEG files found enlarged need a scorer that looks for enlargements "
            "(robust auto, enlargement estimate, no resized_by): give none"
        )
    return chains


def add_chain_thresholds(
    scorer: Scorer,
    calibration: Calibration,
    images: Sequence[str | os.PathLike],
    chains: Sequence[tuple[float, int]],
    *,
    default_negatives: bool = True,
) -> Calibration:
    """``calibration`` with a threshold for JPEG files found enlarged, per chain (factor,
    quality): up to :data:`LADDER_IMAGES` of its own ``images`` enlarged by the factor (bicubic
    and bilinear in turn), then re-encoded at the quality as :func:`add_jpeg_thresholds` does,
    and measured by ``scorer`` as any image is, the enlargement found and undone through the
    file's tables; with ``default_negatives`` the shipped negative photos in colour too (a grey
    JPEG is decided at the thresholds for grey images). Each copy is measured once (with a
    score store, once ever). A chain too few of whose images show their enlargement gets no
    threshold, noted in ``tuning["chain_thresholds"]``
    (:func:`~aedr.decide.calibration.fit_chain_thresholds`)."""
    from aedr.measure.default_photos import SOURCE, negative_files

    check_chains(chains)
    exif = scorer.settings.exif == "transpose"
    chosen = _ladder_images(images)
    photos = negative_files() if default_negatives else []
    with tempfile.TemporaryDirectory(prefix="aedr-chain-") as scratch:

        def fit(factor: float, quality: int) -> Calibration:
            folder = Path(scratch) / f"{factor:g}-{quality}"
            own = _enlarged_copies(scorer, chosen, folder / "own", factor, exif)
            negatives = _enlarged_copies(scorer, photos, folder / "negatives", factor, False)
            records = _measured(scorer, [
                path for name, paths in own.items()
                for path in _colour_jpeg_copies(scorer, paths, folder / f"own-{name}", quality)
            ])  # fmt: skip
            by_filter = {
                name: _measured(scorer, _colour_jpeg_copies(
                    scorer, paths, folder / f"negatives-{name}", quality
                ))
                for name, paths in negatives.items()
            }  # fmt: skip
            chain = (factor, quality)
            return fit_chain_thresholds(calibration, {chain: records}, {chain: by_filter}, [SOURCE])

        steps = [(f"x{f:g} then q={q}", functools.partial(fit, f, q)) for f, q in chains]
        return _fitted_each(calibration, "chains", "chain_thresholds", steps)


def _fitted_each(
    calibration: Calibration,
    field: str,
    note: str,
    steps: Sequence[tuple[str, Callable[[], Calibration]]],
) -> Calibration:
    """``calibration`` with the thresholds of its condition ``field`` (``jpeg``,
    ``enlargements``, ``chains``) that each ladder step (name, fit) fits; a step that cannot be fitted (too
    few usable images) gets none, noted in ``tuning[note]``: the calibration holds for other
    images all the same."""
    entries, missing = dict(getattr(calibration, field)), []
    for name, fit in steps:
        try:
            for key, value in getattr(fit(), field).items():  # chains: factor -> quality -> ...
                merged = field == "chains" and key in entries
                entries[key] = {**entries[key], **value} if merged else value
        except CalibrationError as exc:
            missing.append(f"{name}: {exc}")
    tuning = {**calibration.tuning}
    if missing:
        tuning[note] = "none for " + "; ".join(missing)
    changes: dict[str, Any] = {field: entries, "tuning": tuning, "digest": ""}
    return replace(calibration, **changes)


def _ladder_images(images: Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """Up to :data:`LADDER_IMAGES` of a calibration's ``images``, evenly spread over them: what
    each ladder step (a JPEG quality, an enlargement, grey) measures of its own images."""
    images = list(images)
    count = min(len(images), LADDER_IMAGES)
    return [images[i] for i in np.linspace(0, len(images) - 1, count).round().astype(int)]


def _enlarged_copies(
    scorer: Scorer, paths: Sequence[str | os.PathLike], folder: Path, factor: float, exif: bool
) -> dict[str, list[Path]]:
    """PNG copies in ``folder`` of the images ``paths`` enlarged by ``factor``, with the filters
    of :data:`ENLARGEMENT_FILTERS` in turn, by filter name (unreadable images are left out)."""
    from aedr.measure.degradation import save_resized_copy

    folder.mkdir(parents=True)
    copies: dict[str, list[Path]] = {f.name.lower(): [] for f in ENLARGEMENT_FILTERS}
    for index, path in enumerate(paths):
        resample = ENLARGEMENT_FILTERS[index % len(ENLARGEMENT_FILTERS)]
        try:
            copies[resample.name.lower()].append(save_resized_copy(
                path, folder / f"{index:06d}.png", factor, exif_transpose=exif,
                max_pixels=scorer.max_pixels, resample=resample,
            ))  # fmt: skip
        except ImageError:
            continue
    return copies


CROP_FRACTION = 0.5
"""The centre crops a calibration measures for smaller images, as a share of its images' side:
thresholds between are interpolated (a 192 px crop of 256 px images: docs/results/robustness.md#image-size)."""
MIN_CROP_SIDE = 64
"""No size thresholds for crops smaller than this (tiny images get a caution instead)."""


def size_ladder(side: float) -> list[int]:
    """The sides of the centre crops measured for images of ``side``: half of it, on the
    8-pixel grid, where that is at least ``MIN_CROP_SIDE``.

    >>> size_ladder(256), size_ladder(1024), size_ladder(100)
    ([128], [512], [])
    """
    crop = int(side * CROP_FRACTION) // 8 * 8
    return [crop] if crop >= MIN_CROP_SIDE else []


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    """The ``side`` x ``side`` centre of ``rgb``, its corner on the 8-pixel grid (so a decoder
    image's crop is still on the decoder's grid).

    >>> centre_crop(np.zeros((256, 200, 3), np.uint8), 128).shape
    (128, 128, 3)
    """
    top, left = ((n - side) // 2 // 8 * 8 for n in rgb.shape[:2])
    return np.ascontiguousarray(rgb[top : top + side, left : left + side])


def _smaller_views_score_higher(scorer: Scorer) -> bool:
    """Whether the scorer measures each image whole on its own grid (not resized to a fixed
    size, not in sampled crops, not undoing a resize), where a crop is a smaller image, and
    every pixel of it, edges included: where a model's own crops score higher than its
    full-size images and need thresholds of their own."""
    settings = scorer.settings
    return (
        settings.alignment == "crop" and settings.crop is None and settings.resized_by is None
        and settings.measurement == "reconstruction" and settings.border == EVERY_PIXEL
    )  # fmt: skip


def add_size_thresholds(
    scorer: Scorer, calibration: Calibration, images: Sequence[str | os.PathLike], side: float
) -> Calibration:
    """``calibration`` with thresholds for smaller images: the centre crops (on the 8-pixel
    grid) of ``images``, whose median side is ``side``, at each side of ``size_ladder(side)``,
    measured by ``scorer`` once each (:func:`~aedr.decide.calibration.fit_size_thresholds`)."""
    from aedr.synthesis import save_images

    transpose = scorer.settings.exif == "transpose"
    cut: dict[int, list[np.ndarray]] = {crop: [] for crop in size_ladder(side)}
    for path in images:  # each image read once, whatever the number of crop sides
        try:
            rgb = read_image(path, scorer.max_pixels, exif_transpose=transpose).rgb
        except ImageError:
            continue
        for crop, crops in cut.items():
            if min(rgb.shape[:2]) >= crop:
                crops.append(centre_crop(rgb, crop))
    records: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="aedr-crops-") as scratch:
        for crop, crops in cut.items():
            paths = save_images(crops, Path(scratch) / str(crop), "crop-")
            records[crop] = [m.as_dict() for m in scorer.score_paths(paths) if m.ok]
    try:
        return fit_size_thresholds(calibration, records, side)
    except CalibrationError as exc:  # the calibration holds for its own size all the same
        return replace(
            calibration, tuning={**calibration.tuning, "size_thresholds": f"none: {exc}"}
        )


def add_jpeg_thresholds(
    scorer: Scorer,
    calibration: Calibration,
    images: Sequence[str | os.PathLike],
    qualities: Sequence[int],
    *,
    default_negatives: bool = True,
    statistic: str | None = None,
) -> Calibration:
    """``calibration`` with a threshold for JPEG files at each of ``qualities``, fitted on up to
    :data:`LADDER_IMAGES` of its own ``images`` re-encoded at that quality (Pillow's standard
    tables, 4:2:0, as platforms write) and measured by ``scorer`` as the calibration's were
    (capped on the negatives in colour: :func:`~aedr.decide.calibration.fit_jpeg_thresholds`);
    with ``default_negatives`` the shipped negative photos are re-encoded too, and those in colour
    measured, so each quality's false acceptance is known (a grey JPEG is decided at the
    thresholds for grey images: its copies would cost 40% of the ladder for nothing; given
    negatives are measurement records: they cannot be re-encoded). A scorer that undoes
    a resize (``resized_by``) measures the common chain: each image resized by its factor, then
    re-encoded, so the thresholds hold for resized JPEGs. With a score store, every re-encoded
    image is measured once. Attribution applies the nearest quality's threshold
    to a JPEG file (:meth:`~aedr.decide.calibration.Calibration.at_jpeg_quality`). The
    thresholds read ``statistic`` (default: each quality's
    :func:`~aedr.decide.calibration.jpeg_statistic`; see
    :func:`~aedr.decide.calibration.fit_jpeg_thresholds`). A quality whose threshold cannot be
    fitted (too few usable re-encoded images) gets none, noted in ``tuning["jpeg_thresholds"]``."""
    from aedr.measure.default_photos import SOURCE, negative_files
    from aedr.measure.degradation import save_jpeg_copies

    check_jpeg_qualities(qualities)
    check_jpeg_statistic(calibration.statistic, statistic)  # before any image is re-encoded
    exif = scorer.settings.exif == "transpose"
    records, negatives = {}, {}
    photos = negative_files() if default_negatives else []  # written (or found) once
    with tempfile.TemporaryDirectory(prefix="aedr-jpeg-") as scratch:
        # a scorer that undoes a resize measures the chain: each image resized, then re-encoded
        images = list(_as_uploaded(scorer, _ladder_images(images), Path(scratch) / "resized", {}))
        photos = list(_as_uploaded(scorer, photos, Path(scratch) / "resized-negatives", {}))
        for quality in qualities:
            folder = Path(scratch) / str(quality)
            (folder / "negatives").mkdir(parents=True)
            copies = save_jpeg_copies(images, folder, quality, exif_transpose=exif,
                                      max_pixels=scorer.max_pixels)  # fmt: skip
            records[quality] = _measured(scorer, copies)
            if photos:  # those in colour: a grey JPEG is decided at the grey thresholds
                copies = _colour_jpeg_copies(scorer, photos, folder / "negatives", quality)
                negatives[quality] = _measured(scorer, copies)
    sources = [SOURCE + _resized_note(scorer)]
    steps = [(f"q={quality}", functools.partial(
        fit_jpeg_thresholds, calibration, {quality: quality_records},
        {quality: negatives.get(quality, [])}, sources, statistic,
    )) for quality, quality_records in records.items()]  # fmt: skip
    return _fitted_each(calibration, "jpeg", "jpeg_thresholds", steps)


def _colour_jpeg_copies(
    scorer: Scorer, paths: Sequence[str | os.PathLike], folder: Path, quality: int
) -> list[Path]:
    """JPEG copies at ``quality`` in ``folder`` (made if missing) of the images ``paths`` as
    written by aedr (no EXIF to follow), those in colour only: a grey JPEG is decided at the
    thresholds for grey images, so its copy would be measured for nothing."""
    from aedr.measure.degradation import save_jpeg_copies

    folder.mkdir(parents=True, exist_ok=True)
    copies = save_jpeg_copies(paths, folder, quality, exif_transpose=False,
                              max_pixels=scorer.max_pixels)  # fmt: skip
    return [copy for copy in copies if not _grey_file(copy)]


def _grey_file(path: Path) -> bool:
    """Whether the image file at ``path`` (written by aedr, so readable) has no colour."""
    return read_image(path).grey


def _as_uploaded(
    scorer: Scorer, paths: Iterable[str | os.PathLike], folder: Path, originals: dict[str, str]
) -> Iterator[Path]:
    """The files to measure for ``paths``: themselves, or, when the scorer undoes a resize
    (``resized_by``), each image resized by that factor as a platform would (a PNG copy in
    ``folder``; ``originals`` maps each copy back to its image). A calibration measured so holds
    for images resized by the factor: undoing a resize shifts every statistic, own images'
    included (docs/results/robustness.md). An unreadable file is passed on to fail as itself."""
    from aedr.measure.degradation import save_resized_copy

    factor = scorer.settings.resized_by
    if factor is None:
        yield from (Path(path) for path in paths)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths):
        try:
            copy = save_resized_copy(path, folder / f"{index:06d}.png", factor,
                                     exif_transpose=scorer.settings.exif == "transpose",
                                     max_pixels=scorer.max_pixels)  # fmt: skip
        except ImageError:
            yield Path(path)
            continue
        originals[str(copy)] = str(path)
        yield copy


def _resized_note(scorer: Scorer) -> str:
    """What the negatives' description adds when the scorer measured them resized first."""
    factor = scorer.settings.resized_by
    return f", resized by {factor:g}" if factor is not None else ""


def _measured(scorer: Scorer, paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The usable measurement records of ``paths`` (re-encoded copies: not the user's files, so
    not reported as measurements of them)."""
    return [m.as_dict() for m in scorer.score_paths(paths) if m.ok]


PAPER_CALIBRATION_IMAGES = 500
"""The authors' threshold script fits on the first 500 images (``for i in range(500)``)."""


def _check_first(first: int | None) -> None:
    if first is not None and (not isinstance(first, int) or first < 2):
        raise CalibrationError(f"first must be at least 2 images, not {first!r}")


def _note_first(calibration: Calibration, first: int | None, used: int) -> None:
    if first is not None:
        calibration.tuning["belonging_images"] = f"the first {used} in input order (first={first})"


def calibrate_generator_free(
    scorer: Scorer,
    photos: str | os.PathLike,
    count: int = 100,
    statistic: str = DEFAULT_STATISTIC,
    alpha: Alpha = DEFAULT_ALPHA,
    *,
    seed: int = 0,
    save_to: str | os.PathLike | None = None,
    **options: Any,
) -> CalibrationRun:
    """Calibrate without the generator: the scorer's model decodes ``count`` images from the
    photos under ``photos`` (kept in ``save_to`` when given), which are then measured as its own
    (the other ``options`` as in :func:`calibrate_images`). The model loads once, for both
    steps."""
    from aedr.synthesis import photo_crops

    crops = photo_crops([photos])
    if len(crops) < 2:
        raise CalibrationError(
            f"{photos}: need at least 2 readable photos of 256 x 256 pixels or more"
        )
    return calibrate_decoder_made(
        scorer, crops, f"{len(crops)} photos", count, statistic, alpha, seed=seed,
        save_to=save_to, **options,
    )  # fmt: skip


def calibrate_decoder_made(
    scorer: Scorer,
    crops: Sequence[np.ndarray],
    source: str,
    count: int,
    statistic: str = DEFAULT_STATISTIC,
    alpha: Alpha = DEFAULT_ALPHA,
    *,
    seed: int = 0,
    save_to: str | os.PathLike | None = None,
    **options: Any,
) -> CalibrationRun:
    """A calibration fitted on ``count`` images the scorer's model decodes from latent mixtures
    of the ``crops`` (``source`` says what they are, for the calibration's record)."""
    from aedr.synthesis import decoder_images, save_images

    if len(scorer.models) != 1:
        raise CalibrationError("a calibration is fitted for one model: give the scorer one")
    model = scorer.models[0]
    made = decoder_images(model.autoencoder, crops, count, seed, reconstructions=count // 4)
    with tempfile.TemporaryDirectory() as scratch:
        images = save_images(made, Path(save_to or scratch), "synthetic-")
        run = calibrate_images(scorer, images, statistic, alpha, **options)
    run.calibration.tuning["belonging_images"] = (
        f"generator-free: {len(images)} decoder-made images from {source}"
    )
    run.images = images if save_to else []
    return run


def calibrate_measurements(
    records: Iterable[Mapping[str, Any]],
    model: str | None = None,
    statistic: str = DEFAULT_STATISTIC,
    alpha: Alpha = DEFAULT_ALPHA,
    *,
    assumed_provenance: Provenance | None = None,
    negatives: Sequence[Mapping[str, Any]] = (),
    first: int | None = None,
) -> CalibrationRun:
    """Fit a calibration on measurement records of images the model made.

    The records' own provenance is kept; records without one (the authors' loss files, a CSV with
    loss1, loss2 and homogeneity) need ``assumed_provenance``, which the calibration records as
    assumed. ``model`` picks one model's records where several are present; ``first`` keeps the
    first N usable records in file order.
    """
    _check_first(first)
    name, kept, skipped = records_of_model(records, model, statistic)
    kept = kept[:first] if first is not None else kept
    calibration = _fit(
        kept, name or "unnamed", statistic, alpha, negatives, _given(negatives),
        assumed_provenance,
    )  # fmt: skip
    _note_first(calibration, first, len(kept))
    return CalibrationRun(calibration, [dict(r) for r in kept], skipped=skipped)


def read_negatives(
    paths: Iterable[str | os.PathLike], model: str | None, statistic: str
) -> list[Mapping[str, Any]]:
    """Usable measurement records of ``model`` (all, when None) in the files ``paths``."""
    records = itertools.chain.from_iterable(read_records(p) for p in paths)
    return records_of_model(records, model, statistic)[1]


def _given(negatives: Sequence[Mapping[str, Any]]) -> list[str]:
    """What negatives the user gave are, for the calibration's record of its sources."""
    return [f"given: {len(negatives)} measurement records"] if negatives else []


def _with_default_negatives(
    scorer: Scorer,
    given: Sequence[Mapping[str, Any]],
    default: bool,
    statistic: str,
    scratch: Path,
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """(negative records, what they are): ``given`` and, with ``default``, the shipped negative
    photos measured by ``scorer`` (those it cannot measure, or the statistic cannot read, are
    left out and counted); resized first, in ``scratch``, when the scorer undoes a resize."""
    from aedr.measure.default_photos import NEGATIVE_SET, negative_files

    records, sources = list(given), _given(given)
    if default:
        reader = get_statistic(statistic)
        photos = list(_as_uploaded(scorer, negative_files(), scratch, {}))
        measured = [m.as_dict() for m in scorer.score_paths(photos)]
        usable = [r for r in measured if reader.usable(r)]
        records += usable
        sources.append(
            f"default: {len(usable)} tiles of scikit-image's sample photos ({NEGATIVE_SET})"
            + _resized_note(scorer)
            + (f", {len(measured) - len(usable)} unusable" if len(usable) < len(measured) else "")
        )
    return records, sources


def _fit(
    records: Sequence[Mapping[str, Any]],
    model: str,
    statistic: str,
    alpha: Alpha,
    negatives: Sequence[Mapping[str, Any]],
    sources: Sequence[str] = (),
    assumed_provenance: Provenance | None = None,
) -> Calibration:
    """The calibration of ``records`` keeping ``negatives`` (what they are: ``sources``), with
    alpha tuned on them when it is "auto"."""
    if not records:
        raise CalibrationError(f"no usable measurements of {model}'s own images to calibrate on")
    tuning: dict[str, Any] = {}
    if alpha == "auto":
        if not negatives:
            raise CalibrationError("alpha auto needs negatives: records of images of other sources")
        # parameters (fitted's beta) come from the belonging images only, as the threshold does
        probe = calibrate(
            records, model, DEFAULT_ALPHA, statistic, assumed_provenance=assumed_provenance
        )
        reader = get_statistic(statistic)
        negative_values = [reader.value(r, probe.parameters) for r in negatives]
        alpha, accuracy = choose_alpha(probe.signals, negative_values)
        tuning = {"alpha": "auto", "chosen_alpha": alpha, "tuning_accuracy": accuracy,
                  "tuning_negatives": len(negative_values)}  # fmt: skip
    elif isinstance(alpha, str):
        try:
            alpha = float(alpha)
        except ValueError:
            raise CalibrationError(
                f"alpha must be a number in (0, 1) or 'auto', not {alpha!r}"
            ) from None
    return calibrate(
        records, model, float(alpha), statistic, assumed_provenance=assumed_provenance,
        tuning=tuning, negatives=negatives, negative_sources=sources,
    )  # fmt: skip


def evaluate_files(
    scores: Sequence[str | os.PathLike],
    labels: str | os.PathLike,
    out: str | os.PathLike,
    calibrations: Sequence[str | os.PathLike] = (),
    statistic: str = DEFAULT_STATISTIC,
    alpha: float = DEFAULT_ALPHA,
    max_false_attribution: float | None = None,
) -> tuple[EvaluationResult, Path]:
    """Evaluate measurement files against labels; writes report.html and tables into ``out``."""
    from aedr.decide.report import write_report

    loaded = {c.model: c for c in map(Calibration.load, calibrations)}
    records = itertools.chain.from_iterable(read_records(path) for path in scores)
    result = evaluate(records, read_labels(labels), loaded, statistic, alpha, max_false_attribution)
    return result, write_report(result, Path(out))


LOCALIZATION_FIELDS = (
    "path",
    "model",
    "window",
    "threshold",
    "share",
    "regions",
    "verdict",
    "signal",
    "error",
)


@dataclass
class Localization:
    """One image's local map for one model, and what the model's calibration says of it.

    ``statistic`` is the map on the image's own pixels (lower = consistent with the model);
    without a calibration ``threshold``, ``share``, ``regions`` and ``verdict`` stay empty. The
    verdict: the model when its calibration accepts the whole image, ``partial`` when it does not
    but a region of at least ``PARTIAL_MIN_SHARE`` is consistent with it, ``none`` otherwise.
    """

    measurement: Measurement
    window: float
    statistic: np.ndarray | None = None
    threshold: float | None = None
    share: float | None = None
    regions: list[Region] = field(default_factory=list)
    verdict: str = ""
    signal: float | None = None
    error: str = ""

    def row(self) -> dict[str, Any]:
        """The ``localize.jsonl`` record."""
        return {
            "path": self.measurement.path, "model": self.measurement.model,
            "window": self.window, "threshold": self.threshold, "share": self.share,
            "regions": [r.as_dict() for r in self.regions], "verdict": self.verdict,
            "signal": self.signal, "error": self.error,
        }  # fmt: skip


def localize_images(
    scorer: Scorer,
    paths: Iterable[str | os.PathLike],
    calibrations: Mapping[str, Calibration] | None = None,
    window: float | None = None,
) -> Iterator[Localization]:
    """Local maps of every image under ``paths`` for each of the scorer's models, in input order.

    The maps come from the same double reconstruction as the whole-image measurement (the
    scorer must keep local maps). ``window`` defaults to the model's calibrated window, else
    ``DEFAULT_WINDOW``; a calibration whose local threshold was fitted at another window is
    refused (now, before any image is read), since its threshold would not apply.
    """
    if not scorer.local_maps:
        raise CalibrationError("localize needs a scorer that keeps local maps")
    calibrations = calibrations or {}
    for model in scorer.models:
        local = calibrations[model.name].local if model.name in calibrations else {}
        if local and window is not None and float(window) != local["window"]:
            raise CalibrationError(
                f"the calibration of {model.name} fitted its local threshold with window "
                f"{local['window']:g} px, not {window:g}: use that window or recalibrate"
            )
    return (
        _localization(record, calibrations.get(record.model), window)
        for records in scorer.score_images(iter_image_files(paths))
        for record in records
    )


def _localization(
    record: Measurement, calibration: Calibration | None, window: float | None
) -> Localization:
    local = calibration.local if calibration is not None else {}
    used = float(local["window"] if local else window or DEFAULT_WINDOW)
    result = Localization(record, used, error=record.error)
    if record.error:
        return result
    result.statistic = measurement_map(record, used)
    if calibration is None:
        return result
    decision = decide(record, calibration)
    result.signal, result.error = decision.signal, decision.error
    if local:
        result.threshold = local["threshold"]
        result.share = consistent_share(result.statistic, result.threshold)
        result.regions = consistent_regions(result.statistic, result.threshold)
    if decision.belongs:
        result.verdict = record.model
    elif not decision.error and local:
        sizeable = result.regions and result.regions[0].share >= PARTIAL_MIN_SHARE
        result.verdict = PARTIAL if sizeable else NO_MODEL
    elif not decision.error:
        result.verdict = NO_MODEL
    return result


@dataclass(frozen=True)
class SealCheck:
    """One document's verification: where it is, whether it holds, and what was found."""

    source: str
    ok: bool
    detail: str


def verify_file(path: str | os.PathLike, trusted: Sequence[PublicKey] = ()) -> list[SealCheck]:
    """Check every document of a calibration file or a case-records file (one result or a list,
    as ``aedr serve`` downloads them): its digest, its signature where it has one, and with
    ``trusted`` keys that one of them signed it. Problems are failed checks, never raised."""
    import json

    from aedr.schemas import MAX_CALIBRATION_BYTES

    source = os.fspath(path)
    try:
        if os.path.getsize(path) > MAX_CALIBRATION_BYTES:
            return [SealCheck(source, False, f"over {MAX_CALIBRATION_BYTES} bytes: not checked")]
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [SealCheck(source, False, f"not a JSON document ({exc})")]
    if isinstance(document, Mapping) and "digest" in document and "seal" not in document:
        return [_check_calibration(document, source, trusted)]
    documents = document if isinstance(document, list) else [document]
    return [
        _check_record(item, f"{source}[{index}]" if isinstance(document, list) else source,
                      trusted)
        for index, item in enumerate(documents)
    ]  # fmt: skip


def _check_calibration(document, source: str, trusted: Sequence[PublicKey]) -> SealCheck:
    try:
        calibration = Calibration.from_dict(document, source)
        signer = calibration.signer(source)
        check_trusted(signer, trusted, source)
    except AedrError as exc:
        return SealCheck(source, False, str(exc))
    return SealCheck(source, True, f"calibration of {calibration.model}, digest "
                     f"{calibration.digest[:16]}..., {_signed_by(signer)}")  # fmt: skip


def _check_record(document, source: str, trusted: Sequence[PublicKey]) -> SealCheck:
    if not isinstance(document, Mapping):
        return SealCheck(source, False, "not a case record (a JSON object)")
    try:
        signer = check_seal(document, source)
        check_trusted(signer, trusted, source)
    except AedrError as exc:
        return SealCheck(source, False, str(exc))
    return SealCheck(source, True, f"case record {document.get('id', '?')} of "
                     f"{document.get('filename', '?')}, {_signed_by(signer)}")  # fmt: skip


def _signed_by(signer: PublicKey | None) -> str:
    return "unsigned (digest only)" if signer is None else f"signed by key {signer.key_id}"
