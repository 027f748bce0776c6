"""From per-model scores to a verdict: which candidate model, if any, made the image.

Each calibrated model accepts an image when its signal is below the model's threshold. Among the
models that accept, the verdict is the one with the largest relative margin
``1 - signal / threshold`` (how far below its own threshold the image sits, comparable across
models whose thresholds differ); ``none`` when no model accepts. ``verdict_group`` names the
winner's equivalence group: every model in it ships the same weights, so any of them may be the
source.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aedr.autoencoders.base import Autoencoder
from aedr.calibration import Calibration, CalibrationError
from aedr.images import DEFAULT_MAX_PIXELS, iter_image_files
from aedr.scoring import Scorer, ScoreRecord, ScoreSettings

if TYPE_CHECKING:
    from aedr.autoencoders.loading import ModelHandle

NO_MODEL = "none"
ATTRIBUTION_FIELDS = (
    "path", "model", "group", "signal", "threshold", "belongs", "margin", "verdict",
    "verdict_group", "error",
)  # fmt: skip


@dataclass(frozen=True)
class ModelDecision:
    model: str
    group: str
    signal: float | None
    threshold: float
    belongs: bool
    margin: float | None
    error: str = ""


@dataclass(frozen=True)
class Attribution:
    """The decisions of every candidate model for one image, and the overall verdict."""

    path: str
    decisions: tuple[ModelDecision, ...]
    verdict: str
    error: str = ""

    @property
    def verdict_group(self) -> str:
        return next((d.group for d in self.decisions if d.model == self.verdict), "")

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per model, each carrying the image's verdict (the output file layout)."""
        return [
            {
                "path": self.path, "model": d.model, "group": d.group, "signal": d.signal,
                "threshold": d.threshold, "belongs": d.belongs, "margin": d.margin,
                "verdict": self.verdict, "verdict_group": self.verdict_group, "error": d.error,
            }
            for d in self.decisions
        ]  # fmt: skip


def decide(record: ScoreRecord, calibration: Calibration) -> ModelDecision:
    group = record.group or record.model
    if not record.ok or record.signal is None:
        return ModelDecision(
            record.model, group, None, calibration.threshold, False, None, record.error
        )
    margin = 1.0 - record.signal / calibration.threshold
    return ModelDecision(
        record.model,
        group,
        record.signal,
        calibration.threshold,
        calibration.belongs(record.signal),
        margin,
    )


def attribute(
    records: Sequence[ScoreRecord], calibrations: Mapping[str, Calibration]
) -> Attribution:
    """Combine one image's score records (one per calibrated model) into an attribution."""
    if not records:
        raise ValueError("no score records to attribute")
    decisions = tuple(decide(r, calibrations[r.model]) for r in records)
    accepting = [d for d in decisions if d.belongs]
    verdict = max(accepting, key=lambda d: d.margin).model if accepting else NO_MODEL
    errors = [d.error for d in decisions if d.error]
    error = errors[0] if len(errors) == len(decisions) else ""
    return Attribution(records[0].path, decisions, verdict if not error else "", error)


def check_compatible(calibrations: Sequence[Calibration]) -> dict[str, Any]:
    """The scoring settings shared by ``calibrations``; one model or setting twice is an error."""
    models = [c.model for c in calibrations]
    duplicates = sorted({m for m in models if models.count(m) > 1})
    if duplicates:
        raise CalibrationError(f"more than one calibration for {', '.join(duplicates)}")
    settings = [c.settings for c in calibrations]
    if any(s != settings[0] for s in settings[1:]):
        raise CalibrationError(
            "calibrations were made with different scoring settings; attribute with each separately"
        )
    return settings[0]


def check_identity(calibration: Calibration, autoencoder: Autoencoder | ModelHandle) -> None:
    """Refuse to apply a calibration to different weights than it was fitted with."""
    expected = calibration.autoencoder_identity
    if expected and expected != autoencoder.identity:
        raise CalibrationError(
            f"calibration for {calibration.model!r} was fitted with autoencoder {expected}, but "
            f"the loaded one is {autoencoder.identity}: recalibrate for these weights"
        )


class Attributor:
    """Scores images against every calibrated model and attributes each one.

    ``models`` are loaded autoencoders or handles (loaded on demand), in calibration order;
    ``scorer_options`` go to the ``Scorer`` (store, batch size, workers, limits).
    """

    def __init__(
        self,
        calibrations: Sequence[Calibration],
        models: Sequence[Autoencoder | ModelHandle],
        max_pixels: int = DEFAULT_MAX_PIXELS,
        **scorer_options: Any,
    ):
        settings = check_compatible(calibrations)
        for calibration, model in zip(calibrations, models, strict=True):
            check_identity(calibration, model)
        self.calibrations = {c.model: c for c in calibrations}
        self.scorer = Scorer(
            models, ScoreSettings.from_dict(settings), max_pixels, **scorer_options
        )

    def attribute_file(self, path: str | os.PathLike) -> Attribution:
        return attribute(self.scorer.score_file(path), self.calibrations)

    def attribute_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[Attribution]:
        """An attribution per image file under ``paths`` (directories walked), as they finish."""
        for records in self.scorer.score_images(iter_image_files(paths)):
            yield attribute(records, self.calibrations)
