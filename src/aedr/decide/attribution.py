"""From per-model scores to a verdict: which candidate model, if any, made the image.

Each calibrated model accepts an image when its signal is below the model's threshold, and gives
it a p-value: the upper tail of the model's fitted KDE at the signal (how typical the image is of
that model's own images), which is comparable across models whose thresholds differ. The verdict:

- ``none`` when no model accepts;
- the accepting model with the highest p-value when it stands out: its p-value is more than
  ``ambiguity_ratio`` times that of every accepting model outside its equivalence group (by
  default ``AMBIGUITY_RATIO`` = 1: higher than each);
- ``ambiguous`` otherwise, with the accepting models listed in ``candidates``;
- ``partial`` when no model accepts the image as a whole but a region of at least
  ``PARTIAL_MIN_SHARE`` of it is consistent with a model whose calibration carries a local
  threshold (``aedr calibrate --local``): that model is the one candidate, ``region_share`` and
  ``regions`` say where (``aedr.decide.localization``).

Calibrations that carry negatives (images their model did not make, ``aedr.decide.false_attribution``)
measure each candidate's ``false_acceptance`` and the run's ``false_attribution``: how often these
candidates, at these thresholds, name a model for an image none of them made. ``explanation``
puts the named model's evidence against the runner-up and that rate in words.

``verdict_group`` names the winner's equivalence group: models in it ship the same autoencoder
weights, so any of them may be the source. ``caution`` says when the image itself makes any verdict
unreliable (see ``caution_of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aedr.decide.calibration import (
    CHAIN_THRESHOLDS_SINCE,
    ENLARGEMENT_THRESHOLDS_SINCE,
    GREY_THRESHOLDS_SINCE,
    JPEG_THRESHOLDS_SINCE,
    SIZE_THRESHOLDS_SINCE,
    Calibration,
    image_side,
    record_enlargement,
    record_grey,
    record_jpeg_quality,
)
from aedr.decide.false_attribution import (
    FalseAttribution,
    false_attribution,
    limit_false_attribution,
)
from aedr.decide.localization import (
    PARTIAL_MIN_SHARE,
    Region,
    consistent_regions,
    measurement_map,
)  # fmt: skip
from aedr.measure.degradation import ENLARGEMENT_STRENGTH, GRID_PHASE, RESIZED, describe
from aedr.measure.record import Measurement

if TYPE_CHECKING:
    pass

NO_MODEL = "none"
AMBIGUOUS = "ambiguous"
PARTIAL = "partial"
AMBIGUITY_RATIO = 1.0
"""By default only an exact tie across groups is ``ambiguous``: the p-value ratio has no calibrated
meaning, and a ratio of 2 turned a quarter of the benchmark's images ambiguous, most of them with
the right model first (docs/results/open-set.md: verdict accuracy 0.48 at 2, 0.60 at 1)."""
DECODER_GRID = 8  # every supported autoencoder writes its output in blocks of 8 pixels or more
JPEG_CAUTION_BELOW = 90
"""JPEG qualities below this make a verdict tentative: measured at 128 px (docs/results/robustness.md),
JPEG 75 takes ROC AUC from 0.83 (clean) to 0.72-0.75 and accuracy from 0.71 to 0.62-0.65 with or
without thresholds fitted at the quality; JPEG 90-95 costs a few points."""
ATTRIBUTION_FIELDS = (
    "path", "model", "group", "statistic", "signal", "threshold", "belongs", "p_value",
    "p_value_resolution", "margin", "verdict",
    "verdict_group", "candidates", "region_share", "false_acceptance", "false_attribution",
    "explanation", "degradation", "threshold_quality", "threshold_side", "threshold_enlargement", "threshold_grey", "caution", "confidence",
    "calibration", "calibration_origin", "error",
)  # fmt: skip
CONFIDENT_P = 0.25
"""A named model's p-value at or above which its verdict can be ``high`` confidence: the image is
more typical of the model than a quarter of the model's own images."""
CLEAR_P = 0.01
"""The closest candidate's p-value below which ``none`` is ``high`` confidence."""
STATED_RATE = 0.05
"""The stated false-attribution rate at or below which a named model can be ``high``."""


@dataclass(frozen=True)
class ModelDecision:
    model: str
    group: str
    statistic: str
    signal: float | None
    threshold: float
    belongs: bool
    p_value: float | None
    margin: float | None  # (threshold - signal) / |threshold|: 1 - signal / threshold if > 0
    error: str = ""
    false_acceptance: float | None = None  # share of the calibration's negatives accepted
    # the JPEG quality whose threshold applied (``Calibration.at_jpeg_quality``); None: clean
    threshold_quality: int | None = None
    # why the statistic cannot accept this image whatever its signal (``Statistic.shortfall``:
    # too little detail); "" when it can
    shortfall: str = ""
    # 1 / (n + 1) for a calibration of n images: a p-value below it says no more than "below
    # it" (the smallest share of n + 1 images), however far the fitted KDE's tail reaches
    p_value_resolution: float | None = None
    # the image side whose threshold applied (``Calibration.at_size``); None: the calibration's
    threshold_side: int | None = None
    # the enlargement whose threshold applied (``Calibration.at_enlargement``); None: clean
    threshold_enlargement: float | None = None
    # whether the threshold for grey images applied (``Calibration.at_grey``)
    threshold_grey: bool = False

    @property
    def p_value_text(self) -> str:
        """The p-value as a person should read it: at most what the calibration can resolve.

        >>> ModelDecision("m", "m", "aedr", 2.0, 1.0, False, 0.0, None,
        ...               p_value_resolution=1 / 13).p_value_text
        '<0.077'
        >>> ModelDecision("m", "m", "aedr", 0.9, 1.0, True, 0.4, 0.1,
        ...               p_value_resolution=1 / 41).p_value_text
        '0.400'
        """
        if self.p_value is None:
            return ""
        if self.p_value_resolution is not None and self.p_value < self.p_value_resolution:
            return f"<{self.p_value_resolution:.3f}"
        return f"{self.p_value:.3f}"


@dataclass(frozen=True)
class Attribution:
    """The decisions of every candidate model for one image, and the overall verdict."""

    path: str
    decisions: tuple[ModelDecision, ...]
    verdict: str
    candidates: tuple[str, ...] = ()
    error: str = ""
    caution: str = ""
    measurements: tuple[Measurement, ...] = ()  # what the decisions were made on, model order
    regions: tuple[Region, ...] = ()  # partial: the consistent regions, largest first
    # partial: the named model's local map on the image's pixels, and its threshold
    local_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    local_threshold: float | None = None
    false_attribution: FalseAttribution | None = None  # of the candidates, on their negatives
    # "tentative" or "unreliable" when the image itself limits any verdict (``caution_level``)
    reliability: str = ""
    # per model: (how its calibration was made, which one), set by the workflow that attributes
    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def confidence(self) -> str:
        """The verdict's confidence in words, from measured quantities (docs/usage.md):
        ``insufficient evidence`` (too little detail for any candidate), ``unreliable`` (an
        image off the decoder's grid with nothing undone), else ``high``, ``medium`` or ``low``.
        A named model is ``high`` when its p-value is at least ``CONFIDENT_P``, the stated false
        attribution is measured and at most ``STATED_RATE``, and nothing makes the image
        tentative; ``medium`` when one of these fails; ``low`` when more do. ``none`` is
        ``high`` when the closest candidate's p-value is under ``CLEAR_P`` and the image is not
        tentative, else ``medium``. ``ambiguous`` and ``partial`` are ``low``."""
        usable = [d for d in self.decisions if not d.error]
        if not self.verdict or not usable:
            return ""
        if all(d.shortfall for d in usable):
            return "insufficient evidence"
        if self.reliability == "unreliable":
            return "unreliable"
        tentative = self.reliability == "tentative"
        if self.verdict == NO_MODEL:
            closest = max((d.p_value for d in usable if d.p_value is not None), default=0.0)
            return "high" if closest < CLEAR_P and not tentative else "medium"
        if self.verdict in (AMBIGUOUS, PARTIAL):
            return "low"
        named = next(d for d in usable if d.model == self.verdict)
        rate = self.false_attribution.rate if self.false_attribution is not None else None
        shortfalls = [
            (named.p_value or 0.0) < CONFIDENT_P,
            rate is None or rate > STATED_RATE,
            tentative,
        ]  # fmt: skip
        return ("high", "medium")[sum(shortfalls)] if sum(shortfalls) < 2 else "low"

    @property
    def explanation(self) -> str:
        """The verdict's evidence in words: the named model against the runner-up, and how often
        these candidates name a model for an image none of them made."""
        scored = sorted((d for d in self.decisions if d.p_value is not None),
                        key=lambda d: -(d.p_value or 0.0))  # fmt: skip
        words = []
        if self.verdict not in (NO_MODEL, AMBIGUOUS, PARTIAL, "") and scored:
            best = scored[0]
            words.append(f"{best.model}: {best.p_value:.0%} of its own images score less like it")
            if len(scored) > 1:
                runner = scored[1]
                words.append(f"runner-up {runner.model}: {runner.p_value:.1%}"
                             + ("" if runner.belongs else " (rejected)"))  # fmt: skip
        elif self.verdict == NO_MODEL and scored:
            words.append(f"no candidate accepts it; closest {scored[0].model} "
                         f"({scored[0].p_value:.1%} of its own images score less like it)")  # fmt: skip
        if self.false_attribution is not None:
            words.append(self.false_attribution.describe())
        else:
            words.append("false attribution not measured (calibrations without negatives)")
        return "; ".join(words)

    @property
    def region_share(self) -> float | None:
        """partial: the share of the image in the model's consistent regions."""
        return sum(r.share for r in self.regions) if self.regions else None

    @property
    def verdict_group(self) -> str:
        named = self.candidates[0] if self.verdict == PARTIAL else self.verdict
        return next((d.group for d in self.decisions if d.model == named), "")

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per model, each carrying the image's verdict (the output file layout)."""
        family, explanation = self.false_attribution, self.explanation
        found = {m.model: describe(m.degradation) for m in self.measurements}
        return [
            {
                "path": self.path, "model": d.model, "group": d.group, "statistic": d.statistic,
                "signal": d.signal,
                "threshold": d.threshold, "belongs": d.belongs, "p_value": d.p_value,
                "p_value_resolution": d.p_value_resolution, "margin": d.margin, "verdict": self.verdict, "verdict_group": self.verdict_group,
                "candidates": " ".join(self.candidates), "region_share": self.region_share,
                "false_acceptance": d.false_acceptance,
                "false_attribution": family.rate if family is not None else None,
                "explanation": explanation, "degradation": found.get(d.model, ""),
                "threshold_quality": d.threshold_quality, "threshold_side": d.threshold_side,
                "threshold_enlargement": d.threshold_enlargement,
                "threshold_grey": d.threshold_grey,
                "caution": self.caution,
                "confidence": self.confidence,
                "calibration": self.sources.get(d.model, ("", ""))[1],
                "calibration_origin": self.sources.get(d.model, ("", ""))[0],
                "error": d.error,
            }
            for d in self.decisions
        ]  # fmt: skip


def decide(record: Measurement, calibration: Calibration) -> ModelDecision:
    """The calibrated model's decision on one measurement."""
    group = record.group or record.model
    error = record.error
    if not error:
        values = record.as_dict()
        try:
            signal = calibration.value(values)
        except ValueError as exc:  # a statistic undefined for this image (e.g. loss1 == 0)
            error = str(exc)
        else:
            return decision(record.model, group, signal, calibration, calibration.shortfall(values))
    return ModelDecision(
        record.model, group, calibration.statistic, None, calibration.threshold, False, None,
        None, error, calibration.false_acceptance, calibration.tuning.get("jpeg_quality"),
        p_value_resolution=calibration.p_value_resolution,
        threshold_side=calibration.tuning.get("size_side"),
        threshold_enlargement=calibration.tuning.get("enlargement"),
        threshold_grey=bool(calibration.tuning.get("grey")),
    )  # fmt: skip


def decision(
    model: str, group: str, signal: float, calibration: Calibration, shortfall: str = ""
) -> ModelDecision:
    """The decision on a signal already computed with ``calibration``'s statistic; a
    ``shortfall`` (too little evidence, ``Statistic.shortfall``) means no acceptance."""
    threshold = calibration.threshold
    return ModelDecision(
        model, group, calibration.statistic, signal, threshold,
        calibration.belongs(signal, shortfall), calibration.p_value(signal),
        (threshold - signal) / abs(threshold) if threshold else None, "",
        calibration.false_acceptance, calibration.tuning.get("jpeg_quality"), shortfall,
        calibration.p_value_resolution, calibration.tuning.get("size_side"),
        calibration.tuning.get("enlargement"), bool(calibration.tuning.get("grey")),
    )  # fmt: skip


def verdict_of(
    decisions: Sequence[ModelDecision], ambiguity_ratio: float = AMBIGUITY_RATIO
) -> tuple[str, tuple[str, ...]]:
    """(verdict, candidates) from per-model decisions; see the module docstring."""
    accepting = sorted((d for d in decisions if d.belongs), key=lambda d: -(d.p_value or 0.0))
    if not accepting:
        return NO_MODEL, ()
    best = accepting[0]
    rivals = [d for d in accepting[1:] if d.group != best.group]
    if any((best.p_value or 0.0) <= ambiguity_ratio * (d.p_value or 0.0) for d in rivals):
        return AMBIGUOUS, tuple(d.model for d in accepting)
    return best.model, tuple(d.model for d in accepting)


def caution_of(
    width: int | None,
    height: int | None,
    degradation: Mapping[str, Any] | None = None,
    jpeg_quality: int | None = None,
    jpeg_thresholds: bool = False,
    resize_thresholds: bool = False,
    enlargement_thresholds: float | None = None,
) -> str:
    """Why a verdict on this image is unreliable or tentative (``caution_level``), or "" when
    nothing says so.

    Latent diffusion decoders write sides in multiples of 8 pixels. Other sides mean the image was
    cropped or resized after generation, which takes AEDR to chance level (docs/results/robustness.md):
    then neither an attribution nor ``none`` is evidence. A robust measurement that undid a crop
    or a resize (``degradation``) recovers part of the evidence: the verdict is then tentative.
    So it is for a JPEG below quality :data:`JPEG_CAUTION_BELOW`, whose recompression erased part
    of the evidence whatever the thresholds (``jpeg_thresholds``: decided at thresholds fitted
    for its quality, else at the clean ones). An undone resize is decided at thresholds fitted
    on images resized by the same factor (``resize_thresholds``) or, with a warning, on clean ones;
    an enlargement found in the image at thresholds fitted on images enlarged by the nearest
    factor the calibrations have (``enlargement_thresholds``) or, with a warning, on clean ones;
    a JPEG found enlarged at thresholds fitted on images enlarged, then re-encoded, where both
    are given (a chain: ``Calibration.at_chain``), else at its quality's.
    """
    level = caution_level(width, height, degradation, jpeg_quality)
    if not level:
        return ""
    degradation = degradation or {}
    if degradation.get(ENLARGEMENT_STRENGTH) is not None:
        if jpeg_thresholds and enlargement_thresholds is not None:
            advice = (
                f"decided at thresholds fitted on the calibration images enlarged "
                f"x{enlargement_thresholds:g}, then re-encoded near its quality ({jpeg_quality}), "
                "and measured so"
            )
        elif jpeg_thresholds:  # without a chain, a JPEG's quality decides before its enlargement
            advice = (
                f"decided at thresholds fitted for its JPEG quality ({jpeg_quality}) on images "
                "that were not enlarged"
            )
        elif enlargement_thresholds is not None:
            advice = (
                f"decided at thresholds fitted on the calibration images enlarged "
                f"x{enlargement_thresholds:g} and measured so"
            )
        else:
            advice = (
                "decided at thresholds fitted on images that were not resized, which undoing a "
                "resize shifts (the calibrations have no thresholds for enlarged images: calibrate "
                f"on images with aedr {'.'.join(map(str, ENLARGEMENT_THRESHOLDS_SINCE))} or later "
                "to add them)"
            )
        return (
            f"tentative: {describe(degradation)}: an enlarged image keeps only part of the "
            f"decoder's evidence; {advice}"
        )
    if (
        width is not None
        and width % DECODER_GRID == 0
        and height is not None
        and height % DECODER_GRID == 0
    ):
        since = ".".join(map(str, JPEG_THRESHOLDS_SINCE))
        advice = ("decided at thresholds fitted for its quality" if jpeg_thresholds else
                  "decided at thresholds fitted on clean images, which reject most of a model's "
                  "own JPEGs (no thresholds for JPEG files measured as this run measures them: "
                  f"calibrate with the default negatives and aedr {since} or later, or with "
                  "--jpeg-qualities, to add them)")  # fmt: skip
        return (
            f"tentative: a JPEG of quality {jpeg_quality}, below {JPEG_CAUTION_BELOW}: "
            f"recompression erases part of the decoder's evidence; {advice}"
        )
    if level == "tentative":
        advice = ""
        if degradation.get(RESIZED) is not None:
            advice = ("; decided at thresholds fitted on images resized by the same factor"
                      if resize_thresholds else "; decided at thresholds fitted on images that "
                      "were not resized, which undoing a resize shifts (calibrate with "
                      "--resized-by for thresholds that hold)")  # fmt: skip
        return (
            f"tentative: {width}x{height} is not a multiple of {DECODER_GRID} pixels, so the "
            f"image was cropped or resized after generation; measured with the correction "
            f"({describe(degradation)}), which recovers only part of the evidence{advice}"
        )
    return (
        f"unreliable: {width}x{height} is not a multiple of {DECODER_GRID} pixels, so the image "
        "was cropped or resized after generation, where AEDR is at chance level (measure with "
        "--robust auto to search a crop's grid phase, with --resized-by to undo a known resize)"
    )


def caution_level(
    width: int | None,
    height: int | None,
    degradation: Mapping[str, Any] | None = None,
    jpeg_quality: int | None = None,
    grey: bool = False,
) -> str:
    """``unreliable`` (sides off the decoder's grid, nothing undone), ``tentative`` (a crop or
    resize undone, a JPEG below :data:`JPEG_CAUTION_BELOW`, or a ``grey`` image:
    ``grey_caution``) or "" (see ``caution_of``)."""
    if width is None or height is None:
        return ""
    if (degradation or {}).get(ENLARGEMENT_STRENGTH) is not None:
        return "tentative"
    if width % DECODER_GRID == 0 and height % DECODER_GRID == 0:
        low_jpeg = jpeg_quality is not None and jpeg_quality < JPEG_CAUTION_BELOW
        return "tentative" if low_jpeg or grey else ""
    degradation = degradation or {}
    undone = degradation.get(RESIZED) is not None or degradation.get(GRID_PHASE) is not None
    return "tentative" if undone else "unreliable"


def attribute(
    records: Sequence[Measurement],
    calibrations: Mapping[str, Calibration],
    ambiguity_ratio: float = AMBIGUITY_RATIO,
    family: FalseAttribution | None = None,
) -> Attribution:
    """Combine one image's measurements (one per calibrated model) into an attribution;
    ``family`` is the candidates' false attribution (computed once per run)."""
    if not records:
        raise ValueError("no measurements to attribute")
    decisions = tuple(decide(r, calibrations[r.model]) for r in records)
    errors = [d.error for d in decisions if d.error]
    path, measurements = records[0].path, tuple(records)
    if len(errors) == len(decisions):
        return Attribution(path, decisions, "", (), errors[0], measurements=measurements,
                           false_attribution=family)  # fmt: skip
    verdict, candidates = verdict_of(decisions, ambiguity_ratio)
    sized = next(r for r, d in zip(records, decisions, strict=True) if not d.error)
    jpeg_thresholds = any(d.threshold_quality is not None for d in decisions)
    resize_thresholds = any(
        calibrations[r.model].measurement_provenance.settings.resized_by is not None
        for r in records
    )
    enlarged = next((d.threshold_enlargement for d in decisions if d.threshold_enlargement), None)
    caution = caution_of(sized.width, sized.height, sized.degradation, sized.jpeg_quality,
                         jpeg_thresholds, resize_thresholds, enlarged)  # fmt: skip
    outdated = "; ".join(filter(None, (
        predating_size_thresholds(calibrations[r.model] for r in records),
        predating_jpeg_thresholds([calibrations[r.model] for r in records], sized.jpeg_quality),
        predating_chain_thresholds([calibrations[r.model] for r in records], sized),
    )))  # fmt: skip
    grey = grey_caution(decisions) if sized.grey else ""
    caution = "; ".join(filter(None, (caution, grey, insufficient_evidence(decisions), outdated)))
    reliability = caution_level(sized.width, sized.height, sized.degradation, sized.jpeg_quality,
                                bool(sized.grey))  # fmt: skip
    found = partial_of(records, decisions, calibrations) if verdict == NO_MODEL else None
    if found is None:
        return Attribution(path, decisions, verdict, candidates, "", caution, measurements,
                           false_attribution=family, reliability=reliability)  # fmt: skip
    model, regions, statistic = found
    return Attribution(
        path, decisions, PARTIAL, (model,), "", caution, measurements, tuple(regions),
        statistic, calibrations[model].local["threshold"], family, reliability,
    )  # fmt: skip


def predating_size_thresholds(calibrations: Iterable[Calibration]) -> str:
    """A caution naming the calibrations made before calibrations carried thresholds for
    smaller images (``Calibration.predates_size_thresholds``), or "" when none did."""
    old = sorted({c.model for c in calibrations if c.predates_size_thresholds})
    if not old:
        return ""
    since = ".".join(map(str, SIZE_THRESHOLDS_SINCE))
    return (
        f"calibrated before aedr {since} ({', '.join(old)}): no thresholds for images smaller "
        "than the calibration images, which are decided at the full-size threshold as before "
        "and rejected more often; calibrate again to add them"
    )


def predating_jpeg_thresholds(calibrations: Sequence[Calibration], quality: int | None) -> str:
    """A caution for a JPEG file of ``quality`` naming the calibrations made before calibrations
    carried thresholds for JPEG files (``Calibration.predates_jpeg_thresholds``), or "" when
    none did or the image is no JPEG.

    >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, aedr_version="0.16.0",
    ...                   negatives={"sources": ["tiles"], "n": 1, "signals": [2.0]})
    >>> predating_jpeg_thresholds([old], 95)[:36], predating_jpeg_thresholds([old], None)
    ('calibrated before aedr 0.17 (m): no ', '')
    """
    old = sorted({c.model for c in calibrations if c.predates_jpeg_thresholds})
    if quality is None or not old:
        return ""
    since = ".".join(map(str, JPEG_THRESHOLDS_SINCE))
    return (
        f"calibrated before aedr {since} ({', '.join(old)}): no thresholds for JPEG files, "
        f"so this JPEG (quality {quality}) is decided at the clean threshold as before, which "
        "rejects more of a model's own JPEGs; calibrate again to add them"
    )


def predating_chain_thresholds(calibrations: Sequence[Calibration], sized: Measurement) -> str:
    """A caution for a JPEG file found enlarged (``sized``, its measurement) naming the
    calibrations made before calibrations carried thresholds for that chain
    (``Calibration.predates_chain_thresholds``), or "" when none did or the image is no such
    JPEG."""
    old = sorted({c.model for c in calibrations if c.predates_chain_thresholds})
    enlarged = record_enlargement({"degradation": sized.degradation})
    if sized.jpeg_quality is None or enlarged is None or not old:
        return ""
    since = ".".join(map(str, CHAIN_THRESHOLDS_SINCE))
    return (
        f"calibrated before aedr {since} ({', '.join(old)}): no thresholds for JPEG files found "
        "enlarged, so this one is decided at its quality's thresholds as before, fitted on "
        "images that were not enlarged; calibrate again to add them"
    )


def grey_caution(decisions: Sequence[ModelDecision]) -> str:
    """Why a verdict on a grey image (no pixel has colour) is tentative, and which thresholds
    decided it: those fitted for grey images (``Calibration.at_grey``) where every candidate
    has them, else the clean ones, which accept most grey photos."""
    usable = [d for d in decisions if not d.error]
    lacking = sorted(d.model for d in usable if not d.threshold_grey)
    if not lacking:
        advice = ("decided at thresholds fitted on the calibration images made grey, each "
                  "accepting at most its alpha of grey photos")  # fmt: skip
    else:
        since = ".".join(map(str, GREY_THRESHOLDS_SINCE))
        advice = (f"{', '.join(lacking)} decided at thresholds fitted on colour images, which "
                  "accept most grey photos (no thresholds for grey images: calibrate with the "
                  f"default negatives and aedr {since} or later to add them)")  # fmt: skip
    return (
        "tentative: a grey image: no decoder writes one, so it was made grey after generation "
        f"and its colour evidence is gone; {advice}"
    )


def insufficient_evidence(decisions: Sequence[ModelDecision]) -> str:
    """What too little evidence (``ModelDecision.shortfall``) kept from the verdict: every
    candidate ("insufficient evidence"), or the candidates whose signal alone would have
    accepted the image; "" when it kept nothing."""
    short = [d for d in decisions if d.shortfall]
    if not short:
        return ""
    if len(short) == sum(not d.error for d in decisions):
        return f"insufficient evidence: {short[0].shortfall}"
    blocked = [d for d in short if d.signal is not None and d.signal < d.threshold]
    if not blocked:
        return ""
    return f"{', '.join(d.model for d in blocked)} not named: {blocked[0].shortfall}"


def partial_of(
    records: Sequence[Measurement],
    decisions: Sequence[ModelDecision],
    calibrations: Mapping[str, Calibration],
) -> tuple[str, list[Region], np.ndarray] | None:
    """The model with the largest consistent region of at least ``PARTIAL_MIN_SHARE`` among
    those with a local threshold and maps, with its regions and map; None when there is none."""
    best = None
    for record, decision in zip(records, decisions, strict=True):
        local = calibrations[record.model].local
        if decision.error or not local or record.evidence is None:
            continue
        statistic = measurement_map(record, local["window"])
        regions = consistent_regions(statistic, local["threshold"], PARTIAL_MIN_SHARE)
        if regions and (best is None or regions[0].share > best[1][0].share):
            best = (record.model, regions, statistic)
    return best


class CandidateThresholds:
    """The candidates' calibrations as they apply to one image, and their false attribution.

    A grey image takes each calibration's thresholds for grey images
    (:meth:`~aedr.decide.calibration.Calibration.at_grey`), before anything else; a JPEG
    file takes each calibration's thresholds for the nearest JPEG quality it has
    (:meth:`~aedr.decide.calibration.Calibration.at_jpeg_quality`), or, found enlarged, those
    for the nearest chain where it has them
    (:meth:`~aedr.decide.calibration.Calibration.at_chain`); any other image found enlarged
    those for the nearest enlargement (:meth:`~aedr.decide.calibration.Calibration.at_enlargement`),
    any other image (and one whose calibration has neither) those for its size
    (:meth:`~aedr.decide.calibration.Calibration.at_size`); each states its false acceptance
    and the run's false attribution on the negatives of the image's kind, grey or in colour
    (:meth:`~aedr.decide.calibration.Calibration.negatives_like`); with
    ``max_false_attribution`` every such set is limited on its own negatives. Each set is made
    once; the sets for the calibrated qualities and enlargements are made (and refused, if they
    cannot be) now.
    """

    def __init__(
        self, calibrations: Sequence[Calibration], max_false_attribution: float | None = None
    ):
        self.candidates, self._limit = list(calibrations), max_false_attribution
        self._sets: dict[tuple, Any] = {}
        for quality in (None, *sorted({q for c in calibrations for q in c.jpeg_qualities})):
            self.at(quality)
        for factor in sorted({f for c in calibrations for f in c.enlargement_factors}):
            self.at(None, enlargement=factor)
        for factor, quality in sorted({s for c in calibrations for s in c.chain_steps}):
            self.at(quality, enlargement=factor)
        if any(c.grey for c in calibrations):
            self.at(None, grey=True)

    def at(
        self,
        quality: int | None,
        side: float | None = None,
        enlargement: float | None = None,
        grey: bool = False,
    ) -> tuple[dict[str, Calibration], FalseAttribution | None]:
        """(calibrations by model, false attribution) for a JPEG of ``quality`` (None: any other
        image) whose side (the square root of its pixel count) is ``side``, found enlarged by
        ``enlargement`` (None: not found enlarged), ``grey`` (no pixel has colour) or not."""
        views = [self._view(c, quality, side, enlargement, grey) for c in self.candidates]
        key = (grey, *(
            tuple(v.tuning.get(n) for n in ("jpeg_quality", "size_side", "enlargement"))
            for v in views
        ))  # fmt: skip
        if key not in self._sets:
            if self._limit is not None and views:
                views = limit_false_attribution(views, self._limit)
            self._sets[key] = ({v.model: v for v in views}, false_attribution(views))
        return self._sets[key]

    def for_record(
        self, record: Mapping[str, Any]
    ) -> tuple[dict[str, Calibration], FalseAttribution | None]:
        """:meth:`at` for the image a measurement record describes: its JPEG quality, its side,
        the enlargement it found and whether it is grey."""
        side = image_side(record.get("width"), record.get("height"))
        return self.at(
            record_jpeg_quality(record), side, record_enlargement(record), record_grey(record)
        )

    @staticmethod
    def _view(
        calibration: Calibration,
        quality: int | None,
        side: float | None,
        enlargement: float | None,
        grey: bool,
    ) -> Calibration:
        if grey and calibration.grey:  # before all else: grey photos pass every other threshold
            return calibration.at_grey(grey)
        chained = calibration.at_chain(enlargement, quality)  # enlarged, then saved as JPEG
        if chained is not calibration:
            view = chained
        elif quality is not None and calibration.jpeg:
            view = calibration.at_jpeg_quality(quality)
        else:
            enlarged = calibration.at_enlargement(enlargement)
            view = enlarged if enlarged is not calibration else calibration.at_size(side)
        return view.negatives_like(grey)  # stated on negatives like the image
