"""From per-model scores to a verdict: which candidate model, if any, made the image.

Each calibrated model accepts an image when its signal is below the model's threshold, and gives
it a p-value: the upper tail of the model's fitted KDE at the signal (how typical the image is of
that model's own images), which is comparable across models whose thresholds differ. The verdict:

- ``none`` when no model accepts;
- the accepting model with the highest p-value when it stands out: its p-value is at least
  ``AMBIGUITY_RATIO`` times that of every accepting model outside its equivalence group;
- ``ambiguous`` otherwise, with the accepting models listed in ``candidates``.

``verdict_group`` names the winner's equivalence group: models in it ship the same autoencoder
weights, so any of them may be the source. ``caution`` says when the image itself makes any verdict
unreliable (see ``caution_of``).
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
AMBIGUOUS = "ambiguous"
AMBIGUITY_RATIO = 2.0
DECODER_GRID = 8  # every supported autoencoder writes its output in blocks of 8 pixels or more
ATTRIBUTION_FIELDS = (
    "path", "model", "group", "signal", "threshold", "belongs", "p_value", "margin", "verdict",
    "verdict_group", "candidates", "caution", "error",
)  # fmt: skip


@dataclass(frozen=True)
class ModelDecision:
    model: str
    group: str
    signal: float | None
    threshold: float
    belongs: bool
    p_value: float | None
    margin: float | None  # (threshold - signal) / |threshold|: 1 - signal / threshold if > 0
    error: str = ""


@dataclass(frozen=True)
class Attribution:
    """The decisions of every candidate model for one image, and the overall verdict."""

    path: str
    decisions: tuple[ModelDecision, ...]
    verdict: str
    candidates: tuple[str, ...] = ()
    error: str = ""
    caution: str = ""

    @property
    def verdict_group(self) -> str:
        return next((d.group for d in self.decisions if d.model == self.verdict), "")

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per model, each carrying the image's verdict (the output file layout)."""
        return [
            {
                "path": self.path, "model": d.model, "group": d.group, "signal": d.signal,
                "threshold": d.threshold, "belongs": d.belongs, "p_value": d.p_value,
                "margin": d.margin, "verdict": self.verdict, "verdict_group": self.verdict_group,
                "candidates": " ".join(self.candidates), "caution": self.caution, "error": d.error,
            }
            for d in self.decisions
        ]  # fmt: skip


def decide(record: ScoreRecord, calibration: Calibration) -> ModelDecision:
    """The calibrated model's decision on one score record."""
    group = record.group or record.model
    if not record.ok or record.signal is None:
        return ModelDecision(
            record.model, group, None, calibration.threshold, False, None, None, record.error
        )
    return decision(record.model, group, calibration.statistic(record.as_dict()), calibration)


def decision(model: str, group: str, statistic: float, calibration: Calibration) -> ModelDecision:
    """The decision on a statistic already computed under ``calibration``'s method."""
    threshold = calibration.threshold
    return ModelDecision(
        model,
        group,
        statistic,
        threshold,
        calibration.belongs(statistic),
        calibration.p_value(statistic),
        (threshold - statistic) / abs(threshold) if threshold else None,
    )


def verdict_of(
    decisions: Sequence[ModelDecision], ambiguity_ratio: float = AMBIGUITY_RATIO
) -> tuple[str, tuple[str, ...]]:
    """(verdict, candidates) from per-model decisions; see the module docstring."""
    accepting = sorted((d for d in decisions if d.belongs), key=lambda d: -d.p_value)
    if not accepting:
        return NO_MODEL, ()
    best = accepting[0]
    rivals = [d for d in accepting[1:] if d.group != best.group]
    if any(best.p_value < ambiguity_ratio * d.p_value for d in rivals):
        return AMBIGUOUS, tuple(d.model for d in accepting)
    return best.model, tuple(d.model for d in accepting)


def caution_of(width: int | None, height: int | None) -> str:
    """Why a verdict on an image of this size is unreliable, or "" when nothing says so.

    Latent diffusion decoders write sides in multiples of 8 pixels. Other sides mean the image was
    cropped or resized after generation, which takes AEDR to chance level (README, Robustness):
    then neither an attribution nor ``none`` is evidence.
    """
    if width is None or height is None:
        return ""
    if width % DECODER_GRID == 0 and height % DECODER_GRID == 0:
        return ""
    return (
        f"unreliable: {width}x{height} is not a multiple of {DECODER_GRID} pixels, so the image "
        "was cropped or resized after generation, where AEDR is at chance level"
    )


def attribute(
    records: Sequence[ScoreRecord],
    calibrations: Mapping[str, Calibration],
    ambiguity_ratio: float = AMBIGUITY_RATIO,
) -> Attribution:
    """Combine one image's score records (one per calibrated model) into an attribution."""
    if not records:
        raise ValueError("no score records to attribute")
    decisions = tuple(decide(r, calibrations[r.model]) for r in records)
    errors = [d.error for d in decisions if d.error]
    if len(errors) == len(decisions):
        return Attribution(records[0].path, decisions, "", (), errors[0])
    verdict, candidates = verdict_of(decisions, ambiguity_ratio)
    sized = next(r for r in records if r.ok)
    caution = caution_of(sized.width, sized.height)
    return Attribution(records[0].path, decisions, verdict, candidates, caution=caution)


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
