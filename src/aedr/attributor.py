"""Attribution as a job: measure images against every calibrated model, then decide each one.

The :class:`Attributor` measures with a :class:`~aedr.measure.scorer.Scorer` set up as its
calibrations were measured, and decides each image with ``aedr.decide.attribution``. The CLI's
``attribute``, ``localize --calibration`` and ``serve``, and the demo, are shells over it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from aedr.autoencoders.base import Autoencoder
from aedr.decide.attribution import Attribution, CandidateThresholds, attribute
from aedr.decide.calibration import Calibration, CalibrationError
from aedr.measure.images import DEFAULT_MAX_PIXELS, iter_image_files
from aedr.measure.record import Measurement
from aedr.measure.scorer import DEFAULT_MAX_MODEL_PIXELS, DEFAULT_WORKERS, Scorer
from aedr.measure.settings import EnlargementMode, ScoreSettings

if TYPE_CHECKING:
    from aedr.autoencoders.loading import ModelHandle
    from aedr.measure.degradation import Robust
    from aedr.measure.store import ScoreStore


def check_compatible(calibrations: Sequence[Calibration]) -> ScoreSettings:
    """The scoring settings ``calibrations`` share; one model twice, or calibrations measured
    differently (weights aside), is an error naming the difference."""
    if not calibrations:
        raise CalibrationError("no calibrations: attribution needs at least one calibrated model")
    models = [c.model for c in calibrations]
    duplicates = sorted({m for m in models if models.count(m) > 1})
    if duplicates:
        raise CalibrationError(f"more than one calibration for {', '.join(duplicates)}")
    first = calibrations[0].measurement_provenance.without_identity()
    for other in calibrations[1:]:
        differences = first.differences(other.measurement_provenance.without_identity())
        if differences:
            raise CalibrationError(
                f"calibrations for {calibrations[0].model} and {other.model} were measured "
                f"differently ({'; '.join(differences)}); attribute with each separately"
            )
    return calibrations[0].measurement_provenance.settings


def _jpeg_thresholds_for(
    calibration: Calibration, run: tuple[str | None, float | None]
) -> Calibration:
    """``calibration`` with its JPEG thresholds (and its chains') where they were measured as this ``run``
    (robust, resized_by) measures JPEG files, else without them (noted in
    ``tuning["jpeg_thresholds"]``): a JPEG threshold holds for one way of measuring JPEG files
    (the chain x1.5 then JPEG 85 measured with the resize undone: accuracy 0.66 at the clean
    thresholds, 0.59 at JPEG thresholds fitted without it, docs/results/robustness.md)."""
    settings = calibration.measurement_provenance.settings
    made = (settings.robust, settings.resized_by)
    if not (calibration.jpeg or calibration.chains) or made == run:
        return calibration
    note = (f"set aside: measured with robust {made[0]}, resized_by {made[1]}; this run "
            f"measures with robust {run[0]}, resized_by {run[1]}")  # fmt: skip
    tuning = {**calibration.tuning, "jpeg_thresholds": note}
    return replace(calibration, jpeg={}, chains={}, tuning=tuning)  # the chains' too


def at_calibration_precision(
    model: Autoencoder | ModelHandle, calibration: Calibration
) -> Autoencoder | ModelHandle:
    """``model`` at the precision ``calibration`` was measured in, where the user left the
    precision to ``auto``: a calibration's thresholds hold at its own precision only."""
    from aedr.autoencoders.loading import ModelHandle

    dtype = calibration.measurement_provenance.dtype
    if isinstance(model, ModelHandle) and model.auto_dtype and not model.loaded:
        return model.at_dtype(dtype) if model.dtype_name != dtype else model
    return model


class Attributor:
    """Measures images against every calibrated model and attributes each one.

    ``models`` are loaded autoencoders or handles (loaded on demand), in calibration order; a
    handle whose precision is ``auto`` runs at its calibration's; each is checked against its
    calibration's provenance (weights, precision, device, settings) before any image is read.
    The other arguments go to the :class:`~aedr.measure.scorer.Scorer`, which keeps local maps
    (so measures every image afresh) when ``local_maps`` is true or, by default, when a
    calibration has a local threshold. ``max_false_attribution`` lowers the
    thresholds, where needed, until at most that share of the calibrations' negatives is
    attributed to some candidate (:func:`~aedr.decide.false_attribution.limit_false_attribution`).
    The images are measured as the calibrations were (``robust`` too: ``auto`` for those
    calibrated with the defaults since 0.4.0, and where they differ), with local maps ``off``;
    ``robust``, ``resized_by`` and ``enlargement`` measure them degradation-aware or not
    (``aedr.measure.degradation``) whatever the calibrations were measured with: corrections
    change nothing on the clean images calibrations are fitted on. Undoing a resize shifts the
    statistic, though: calibrations fitted at the same ``resized_by`` (``aedr calibrate
    --resized-by``) hold for such images, clean ones leave a caution, and ones fitted at another
    factor are refused. A JPEG file is decided at the thresholds its calibrations fitted for the
    nearest JPEG quality, where they have them (every calibration on the default negatives since
    0.17.0); those hold only for JPEG files measured with the same ``robust`` and ``resized_by``,
    and are set aside in a run measured otherwise (the clean thresholds decide, as for
    calibrations without them). ``sources`` says, per model, how its calibration was made and
    which it is (``aedr.library.CalibrationSource``): every row carries it.
    """

    def __init__(
        self,
        calibrations: Sequence[Calibration],
        models: Sequence[Autoencoder | ModelHandle],
        *,
        store: ScoreStore | None = None,
        batch_size: int = 1,
        workers: int = DEFAULT_WORKERS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_model_pixels: int = DEFAULT_MAX_MODEL_PIXELS,
        max_memory: int | None = None,
        local_maps: bool | None = None,
        max_false_attribution: float | None = None,
        robust: Robust | None = None,
        resized_by: float | None = None,
        enlargement: EnlargementMode | None = None,
        sources: Mapping[str, tuple[str, str]] | None = None,
    ):
        self.sources = dict(sources or {})
        self.max_false_attribution = max_false_attribution
        settings = check_compatible(calibrations)
        if local_maps is None:
            local_maps = any(c.local for c in calibrations)
        if local_maps and robust is None:  # local maps are drawn on the image's own grid
            robust = "off"
        if (
            robust is None
            and len({c.measurement_provenance.settings.robust for c in calibrations}) > 1
        ):
            robust = "auto"  # calibrations measured both ways: the default, whatever their order
        if robust is not None or resized_by is not None:
            settings = replace(settings, robust=robust or settings.robust, resized_by=resized_by)
        if enlargement is not None:  # lenient: calibrations apply either way
            settings = replace(settings, enlargement=enlargement)
        run = (settings.robust, settings.resized_by)
        calibrations = [_jpeg_thresholds_for(c, run) for c in calibrations]
        for calibration in calibrations:
            provenance = calibration.measurement_provenance
            if provenance.settings.resized_by not in (None, settings.resized_by):
                raise CalibrationError(
                    f"the calibration of {calibration.model!r} holds for images resized by "
                    f"{provenance.settings.resized_by:g}, not "
                    + ("unresized ones" if settings.resized_by is None else
                       f"by {settings.resized_by:g}")
                    + f": attribute with --resized-by {provenance.settings.resized_by:g}, or with "
                    "calibrations fitted at the run's factor"
                )  # fmt: skip
        self.thresholds = CandidateThresholds(calibrations, max_false_attribution)
        clean, self.false_attribution = self.thresholds.at(None)
        calibrations = list(clean.values())
        if len(models) != len(calibrations):
            raise CalibrationError(
                f"{len(calibrations)} calibrations but {len(models)} models: give one each"
            )
        self.calibrations = {c.model: c for c in calibrations}
        models = [at_calibration_precision(m, c) for m, c in zip(models, calibrations, strict=True)]
        self.scorer = Scorer(
            models, settings, store=store, batch_size=batch_size, workers=workers,
            max_pixels=max_pixels, max_model_pixels=max_model_pixels, max_memory=max_memory,
            local_maps=local_maps,
        )  # fmt: skip
        for calibration, model in zip(calibrations, self.scorer.models, strict=True):
            if model.name != calibration.model:
                raise CalibrationError(
                    f"model {model.name!r} given for the calibration of {calibration.model!r}"
                )
            measured = model.loaded_provenance()
            if measured is None:
                raise CalibrationError(f"model {model.name!r} has no identity to check")
            calibration.check_provenance(measured)

    def attribute_file(self, path: str | os.PathLike) -> Attribution:
        return self._attribute(self.scorer.score_file(path))

    def _attribute(self, records: Sequence[Measurement]) -> Attribution:
        first = records[0] if records else None
        calibrations, family = (
            self.thresholds.for_record(first.as_dict()) if first else self.thresholds.at(None)
        )
        return replace(attribute(records, calibrations, family=family), sources=self.sources)

    def attribute_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[Attribution]:
        """An attribution per image file under ``paths`` (directories walked), as they finish."""
        for records in self.scorer.score_images(iter_image_files(paths)):
            yield self._attribute(records)
