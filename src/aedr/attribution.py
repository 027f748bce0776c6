"""From per-model scores to a verdict: which candidate model, if any, made the image.

Each calibrated model accepts an image when its signal is below the model's threshold. Among the
models that accept, the verdict is the one with the largest relative margin
``1 - signal / threshold`` (how far below its own threshold the image sits, comparable across
models whose thresholds differ); ``none`` when no model accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aedr.autoencoders.base import Autoencoder
from aedr.calibration import Calibration, CalibrationError
from aedr.images import DEFAULT_MAX_PIXELS
from aedr.scoring import Scorer, ScoreRecord, ScoreSettings

NO_MODEL = "none"
ATTRIBUTION_FIELDS = (
    "path", "model", "signal", "threshold", "belongs", "margin", "verdict", "error",
)  # fmt: skip


@dataclass(frozen=True)
class ModelDecision:
    model: str
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

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per model, each carrying the image's verdict (the output file layout)."""
        return [
            {
                "path": self.path, "model": d.model, "signal": d.signal,
                "threshold": d.threshold, "belongs": d.belongs, "margin": d.margin,
                "verdict": self.verdict, "error": d.error,
            }
            for d in self.decisions
        ]  # fmt: skip


def decide(record: ScoreRecord, calibration: Calibration) -> ModelDecision:
    if not record.ok or record.signal is None:
        return ModelDecision(record.model, None, calibration.threshold, False, None, record.error)
    margin = 1.0 - record.signal / calibration.threshold
    return ModelDecision(
        record.model,
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


def check_identity(calibration: Calibration, autoencoder: Autoencoder) -> None:
    """Refuse to apply a calibration to different weights than it was fitted with."""
    expected = calibration.autoencoder_identity
    if expected and expected != autoencoder.identity:
        raise CalibrationError(
            f"calibration for {calibration.model!r} was fitted with autoencoder {expected}, but "
            f"the loaded one is {autoencoder.identity}: recalibrate for these weights"
        )


class Attributor:
    """Scores images against every calibrated model and attributes each one."""

    def __init__(
        self,
        calibrations: Sequence[Calibration],
        autoencoders: Sequence[Autoencoder],
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        settings = check_compatible(calibrations)
        for calibration, autoencoder in zip(calibrations, autoencoders, strict=True):
            check_identity(calibration, autoencoder)
        self.calibrations = {c.model: c for c in calibrations}
        self.scorer = Scorer(autoencoders, ScoreSettings.from_dict(settings), max_pixels)

    def attribute_file(self, path: str | os.PathLike) -> Attribution:
        return attribute(self.scorer.score_file(path), self.calibrations)
