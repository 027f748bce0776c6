"""Per-model decision thresholds: a Gaussian KDE over a statistic of images the model made.

The threshold is the (1 - alpha) quantile of that KDE, computed exactly as the paper's authors do:
Scott bandwidth, density on 10,000 evenly spaced points over [min - s, max + s] (s: sample standard
deviation), cumulative sum normalised to 1, linear interpolation at 1 - alpha.

A calibration is fitted on measurements and keeps their provenance (weights, precision, device,
settings), so it is applied only to measurements made the same way; records that carry no
provenance (the authors' loss files, a user's CSV) need the provenance stated, and the calibration
records that it was assumed. A digest over every field makes an edited file an error at load.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pydantic import ValidationError

from aedr.decide.statistics import (
    DEFAULT_STATISTIC,
    Statistic,
    StatisticError,
    check_distance_applies,
    get_statistic,
)
from aedr.errors import AedrError
from aedr.files import replacing
from aedr.measure.degradation import ENLARGEMENT_STRENGTH, RESIZED
from aedr.measure.provenance import Provenance, ProvenanceError, common_provenance
from aedr.measure.record import read_grey
from aedr.records import OutputExistsError
from aedr.schemas import MAX_CALIBRATION_BYTES, CalibrationFile, validation_message
from aedr.seals import PublicKey, SealError, SigningKey, check_signature, digest_of, sign

GRID_SIZE = 10_000
CALIBRATION_FORMAT = 2
DEFAULT_ALPHA = 0.05
"""The share of a model's own images allowed above its threshold, unless stated."""
STABLE_CALIBRATION_IMAGES = 20
"""Calibration images from which the share of own images a threshold rejects stays near alpha
(docs/results/zero-setup.md, threshold stability); ``aedr calibrate`` warns below it."""
ALPHA_GRID = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3)
UNVERIFIED_IDENTITY = "unverified"
"""The identity of an assumed provenance whose weights nobody named: not checked when applied."""
JPEG_AC_BELOW = 90
"""Below this quality the default JPEG thresholds of a ``highpass`` calibration read ``ac`` (the
residual's 8 x 8 AC energy, which recompression keeps); at or above it ``highpass``, which holds
better there (docs/results/robustness.md)."""
SIZE_THRESHOLDS_SINCE = (0, 10)
"""The aedr version from which calibrations of whole images carry thresholds for smaller ones."""
MAX_LADDER_ENLARGEMENT = 2.0
"""The largest enlargement a calibration fits thresholds for: above it the estimate reads the
factor wrong (x3 as x1.5, ``aedr.measure.resampling``)."""
DEFAULT_ENLARGEMENTS = (1.5, 2.0)
"""The enlargements a calibration measured with the enlargement estimate carries thresholds for
by default: an image found enlarged takes the nearest on a log scale (x1.2 and less: the clean
threshold). Chosen by measurement: docs/results/robustness.md#thresholds-for-enlarged-images."""
LADDER_IMAGES = STABLE_CALIBRATION_IMAGES
"""The most of a calibration's own images measured at each enlargement (evenly spread over
them): as many as keep a threshold's rejection of own images near alpha, to bound the cost."""
ENLARGEMENT_THRESHOLDS_SINCE = (0, 14)
"""The aedr version from which calibrations measured with the enlargement estimate carry
thresholds for enlarged images."""
GREY_THRESHOLDS_SINCE = (0, 15)
"""The aedr version from which calibrations measured on the default negatives carry thresholds
for grey images."""
NEGATIVE_KINDS_SINCE = (0, 16)
"""The aedr version from which calibrations note which of their negatives are grey."""
DEFAULT_JPEG_QUALITIES = (95, 85, 70)
"""The JPEG qualities a calibration measured on the default negatives carries thresholds for by
default: a JPEG file takes the nearest (JPEG 90 takes 85's, 75 takes 70's). Chosen by
measurement: docs/results/zero-setup.md#jpeg-files."""
JPEG_THRESHOLDS_SINCE = (0, 17)
"""The aedr version from which calibrations measured on the default negatives carry thresholds
for JPEG files."""
DEFAULT_CHAINS = ((1.5, 85),)
"""The platform chains (enlarged by a factor, then saved as a JPEG of a quality) a calibration
that carries thresholds for both JPEG files and enlargements carries thresholds for by default:
a JPEG found enlarged takes the chain nearest its factor (on a log scale; x1.2 and less: none),
then the nearest quality. x2 has none: a JPEG's blocks hide its period, so it is never found in
one (docs/results/robustness.md#enlargements-found-from-the-image)."""
CHAIN_THRESHOLDS_SINCE = (0, 19)
"""The aedr version from which calibrations with thresholds for JPEG files and enlargements
carry thresholds for their chain."""


class CalibrationError(AedrError, ValueError):
    """A calibration that cannot be fitted, read or applied."""


def accepts(signal: float, threshold: float, shortfall: str = "") -> bool:
    """The decision rule, written once: a model is named when the signal is below its threshold,
    unless the image holds too little evidence for the statistic to accept it (a ``shortfall``,
    ``Statistic.shortfall``), whatever its signal.

    >>> accepts(0.4, 0.5), accepts(0.6, 0.5), accepts(0.4, 0.5, "mostly flat")
    (True, False, False)
    """
    return signal < threshold and not shortfall


def kde_threshold(
    signals: Sequence[float] | np.ndarray, alpha: float = DEFAULT_ALPHA, grid_size: int = GRID_SIZE
) -> float:
    """The (1 - alpha) quantile of a Gaussian KDE (Scott's rule) fitted on ``signals``.

    >>> round(kde_threshold([1.0, 1.1, 1.2, 1.3, 1.4], alpha=0.5), 3)  # the median, to the grid
    1.2
    """
    from scipy.stats import gaussian_kde

    values = np.asarray(signals, dtype=np.float64)
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"alpha must lie in (0, 1), got {alpha}")
    if values.ndim != 1 or values.size < 2:
        raise CalibrationError(f"need at least 2 signals to fit a KDE, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise CalibrationError("signals contain NaN or infinite values")
    spread = values.std(ddof=1)
    if np.ptp(values) == 0.0:  # the std of equal floats may round to a tiny non-zero number
        raise CalibrationError("all signals are identical: a KDE has no width to fit")
    grid = np.linspace(values.min() - spread, values.max() + spread, grid_size)
    cumulative = np.cumsum(gaussian_kde(values)(grid))
    cumulative /= cumulative[-1]
    return float(np.interp(1.0 - alpha, cumulative, grid))


def signal_summary(signals: Sequence[float]) -> dict[str, float]:
    values = np.asarray(signals, dtype=np.float64)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
    }


@dataclass
class Calibration:
    """A fitted threshold for one model's statistic, with what is needed to apply it safely."""

    model: str
    statistic: str
    threshold: float
    alpha: float
    n: int
    signals: list[float]
    summary: dict[str, float]
    provenance: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)  # e.g. fitted's beta and its fit
    provenance_assumed: bool = False  # stated by the user, not read from the records
    tuning: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)  # the local-map threshold, if fitted
    # images the model did not make: sources (what they are), n, signals and keys (content
    # SHA-256 of each image, so the candidates of one run can be counted on the same images)
    negatives: dict[str, Any] = field(default_factory=dict)
    # thresholds for JPEG files (``fit_jpeg_thresholds``): IJG quality (as text) -> threshold, n,
    # signals, summary and negatives of the same images re-encoded at that quality
    jpeg: dict[str, Any] = field(default_factory=dict)
    # thresholds for smaller images (``fit_size_thresholds``): ``side``, the median side (square
    # root of the pixel count) of the calibration's own images, and ``crops``: side (as text) ->
    # threshold, n, signals and summary of those images' centre crops of that side
    sizes: dict[str, Any] = field(default_factory=dict)
    # thresholds for enlarged images (``fit_enlargement_thresholds``): factor (as text, e.g.
    # "1.5") -> threshold, n, signals, summary and negatives of the same images enlarged by it,
    # then measured as any image is (the enlargement found and undone)
    enlargements: dict[str, Any] = field(default_factory=dict)
    # the threshold for grey images (``fit_grey_thresholds``): threshold, n, signals, summary
    # and negatives of the same images made grey
    grey: dict[str, Any] = field(default_factory=dict)
    # thresholds for JPEG files found enlarged (``fit_chain_thresholds``): factor (as text) ->
    # JPEG quality (as text) -> threshold, n, signals, summary and negatives of the same images
    # enlarged by the factor, then re-encoded at the quality, measured as any image is
    chains: dict[str, Any] = field(default_factory=dict)
    aedr_version: str = ""
    created: str = ""
    format: int = CALIBRATION_FORMAT
    digest: str = ""
    # an Ed25519 signature over the digest (``aedr.seals``), by whoever calibrated; optional
    signature: dict[str, str] | None = None

    @property
    def measurement_provenance(self) -> Provenance:
        return Provenance.from_dict(self.provenance, f"calibration for {self.model!r}")

    def belongs(self, signal: float, shortfall: str = "") -> bool:
        """Whether this calibration names its model for an image of statistic ``signal``
        (``accepts`` at this calibration's threshold)."""
        return accepts(signal, self.threshold, shortfall)

    @property
    def false_acceptance(self) -> float | None:
        """The share of the negatives this calibration accepts (None without negatives): how
        often it names its model for an image the model did not make, as measured."""
        accepted = self.negatives_accepted()
        return float(accepted.mean()) if accepted.size else None

    def negatives_accepted(self, threshold: float | None = None) -> np.ndarray:
        """Per negative, whether this calibration accepts it (at ``threshold``, if given), as
        it would accept an image: negatives with too little evidence are accepted at none."""
        threshold = self.threshold if threshold is None else threshold
        signals = self.negatives.get("signals", [])
        shortfalls = self.negatives.get("shortfalls") or [""] * len(signals)
        return np.array(
            [accepts(v, threshold, why) for v, why in zip(signals, shortfalls, strict=True)], bool
        )

    def accepted_negatives(self, threshold: float | None = None) -> set[str]:
        """The keys of the negatives this calibration accepts (at ``threshold``, if given)."""
        keys = self.negatives.get("keys", [])
        return {k for k, accepted in zip(keys, self.negatives_accepted(threshold), strict=True)
                if accepted}  # fmt: skip

    def value(self, record: Mapping[str, Any]) -> float:
        """This calibration's statistic of one measurement record."""
        return get_statistic(self.statistic).value(record, self.parameters)

    def shortfall(self, record: Mapping[str, Any]) -> str:
        """Why this calibration's statistic cannot accept ``record``'s image whatever its
        signal (too little evidence), or "" (``Statistic.shortfall``)."""
        return get_statistic(self.statistic).shortfall(record)

    @property
    def p_value_resolution(self) -> float:
        """1 / (n + 1): the smallest p-value n calibration images can tell apart from zero."""
        return 1 / (self.n + 1)

    def p_value(self, signal: float) -> float:
        """Upper tail at ``signal`` of the fitted KDE, restricted like the threshold to the
        paper's grid range [min - s, max + s]: the share of this model's own images expected to
        score at least this high. Comparable across models. It exceeds alpha below the threshold
        and falls short of it above, except within half a grid step of the threshold (the
        threshold is interpolated on the 10,000-point grid, the tail is integrated exactly)."""
        if len(self.signals) < 2:
            raise CalibrationError(f"calibration for {self.model!r} keeps no signals")
        if not hasattr(self, "_kde"):
            from scipy.stats import gaussian_kde

            values = np.asarray(self.signals, dtype=np.float64)
            spread = values.std(ddof=1)
            self._kde = gaussian_kde(values)
            self._range = (values.min() - spread, values.max() + spread)
        low, high = self._range
        upper = self._kde.integrate_box_1d(min(max(signal, low), high), high)
        return float(min(1.0, max(0.0, upper / self._kde.integrate_box_1d(low, high))))

    def check_provenance(self, run: Provenance) -> None:
        """Refuse to apply this calibration to measurements made another way, naming how."""
        mine = self.measurement_provenance
        if self.provenance_assumed and mine.identity == UNVERIFIED_IDENTITY:
            mine = replace(mine, identity=run.identity)
        differences = mine.differences(run)
        if differences:
            raise CalibrationError(
                f"calibration for {self.model!r} was fitted on measurements made differently "
                f"from this run ({'; '.join(differences)}; calibration vs run): measure with "
                "the calibration's settings, or recalibrate"
            )

    @property
    def jpeg_qualities(self) -> tuple[int, ...]:
        """The JPEG qualities this calibration has thresholds for, lowest first."""
        return tuple(sorted(int(q) for q in self.jpeg))

    def at_jpeg_quality(self, quality: int | None) -> Calibration:
        """This calibration as it applies to a JPEG file of IJG ``quality``: threshold, signals
        and negatives (and statistic, where the JPEG thresholds read another) of the nearest
        quality it was fitted at (the lower one on a tie), noted in ``tuning["jpeg_quality"]``.
        Itself for other files (None) or without JPEG thresholds.

        Recompression moves a model's own signals as much as anyone's, so a threshold fitted on
        clean images rejects more of them; one fitted on the same images re-encoded at the
        file's quality follows them (what that buys is measured in docs/results/robustness.md)."""
        if quality is None or not self.jpeg:
            return self
        nearest = min(self.jpeg_qualities, key=lambda q: (abs(q - quality), q))
        return self._view({"jpeg_quality": nearest}, self.jpeg[str(nearest)])

    @property
    def enlargement_factors(self) -> tuple[float, ...]:
        """The enlargement factors this calibration has thresholds for, smallest first."""
        return tuple(sorted(float(f) for f in self.enlargements))

    def at_enlargement(self, factor: float | None) -> Calibration:
        """This calibration as it applies to an image found enlarged by ``factor`` (and
        measured with the enlargement undone): threshold, signals and negatives of the nearest
        factor on a log scale it was fitted at, 1 (itself) included, the smaller on a tie,
        noted in ``tuning["enlargement"]``. Itself for other images (None) or without
        enlargement thresholds.

        Undoing an enlargement recovers only part of the decoder's evidence, for a model's own
        images as for anyone's, so thresholds fitted on clean images reject most of its own
        enlarged ones; thresholds fitted on its own images enlarged and undone follow them.

        >>> c = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, enlargements={
        ...     "1.5": {"threshold": 2.0, "n": 2, "signals": [1.0, 2.0], "summary": {}}})
        >>> c.at_enlargement(1.1).threshold, c.at_enlargement(1.3).threshold
        (1.0, 2.0)
        >>> c.at_enlargement(1.3).tuning, c.at_enlargement(None).tuning
        ({'enlargement': 1.5}, {})
        """
        nearest = _nearest_enlargement(self.enlargement_factors, factor)
        if nearest is None:
            return self
        return self._view({"enlargement": nearest}, self.enlargements[f"{nearest:g}"])

    @property
    def chain_steps(self) -> tuple[tuple[float, int], ...]:
        """The (enlargement, JPEG quality) chains this calibration has thresholds for."""
        return tuple(sorted((float(f), int(q)) for f in self.chains for q in self.chains[f]))

    def at_chain(self, factor: float | None, quality: int | None) -> Calibration:
        """This calibration as it applies to a JPEG file of ``quality`` found enlarged by
        ``factor`` (and measured with the enlargement undone, through the file's tables): the
        threshold, signals and negatives of the chain nearest the factor on a log scale (none
        for x1.2 and less, as :meth:`at_enlargement`), then nearest the quality (the lower one on
        a tie), noted in ``tuning["enlargement"]`` and ``tuning["jpeg_quality"]``. Itself for
        other images or without chain thresholds.

        Thresholds fitted on JPEGs that were not enlarged, or on enlargements that were not
        re-encoded, miss both losses together (docs/results/robustness.md#the-platform-chain).

        >>> fitted = {"threshold": 2.0, "n": 2, "signals": [1.0, 2.0], "summary": {}}
        >>> c = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {},
        ...                 chains={"1.5": {"85": fitted}})
        >>> c.at_chain(1.4, 75).threshold, c.at_chain(1.4, 75).tuning
        (2.0, {'enlargement': 1.5, 'jpeg_quality': 85})
        >>> c.at_chain(1.1, 85) is c, c.at_chain(None, 85) is c, c.at_chain(1.5, None) is c
        (True, True, True)
        """
        nearest = _nearest_enlargement(tuple(sorted(float(f) for f in self.chains)), factor)
        if nearest is None or quality is None:
            return self
        chain = self.chains[f"{nearest:g}"]
        closest = min((int(q) for q in chain), key=lambda q: (abs(q - quality), q))
        notes = {"enlargement": nearest, "jpeg_quality": closest}
        return self._view(notes, chain[str(closest)])

    def at_grey(self, grey: bool | None) -> Calibration:
        """This calibration as it applies to a grey image (``grey``: no pixel has colour):
        threshold, signals and negatives fitted on its own images made grey, noted in
        ``tuning["grey"]``. Itself for other images, or without thresholds for grey images.

        No decoder writes a grey image, so one was made grey after generation, and a decoder
        reconstructs grey pixels far better than colour ones, whoever made them: at the clean
        thresholds most grey photos are accepted (docs/results/robustness.md#grey-images).

        >>> c = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, grey={
        ...     "threshold": 0.4, "n": 2, "signals": [0.3, 0.4], "summary": {}})
        >>> c.at_grey(True).threshold, c.at_grey(True).tuning, c.at_grey(False).threshold
        (0.4, {'grey': True}, 1.0)
        """
        if not grey or not self.grey:
            return self
        return self._view({"grey": True}, self.grey)

    @property
    def predates_grey_thresholds(self) -> bool:
        """Measured on negatives by an aedr older than :data:`GREY_THRESHOLDS_SINCE`, which
        fitted no thresholds for grey images (it fits them where the negatives are the default
        ones, which it can make grey): it decides a grey image at the clean threshold, as it did
        then (which accepts most grey photos).

        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, aedr_version="0.14.1",
        ...                   negatives={"sources": ["default: tiles"], "n": 1, "signals": [2.0]})
        >>> old.predates_grey_thresholds, replace(old, aedr_version="0.15.0").predates_grey_thresholds
        (True, False)
        """
        return bool(self.negatives) and not self.grey and self._release < GREY_THRESHOLDS_SINCE

    @property
    def predates_jpeg_thresholds(self) -> bool:
        """Measured on negatives by an aedr older than :data:`JPEG_THRESHOLDS_SINCE`, which
        fitted thresholds for JPEG files only when asked: without them it decides a JPEG file at
        the clean threshold, as it did then (which rejects most of the model's own JPEGs).

        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, aedr_version="0.16.0",
        ...                   negatives={"sources": ["default: tiles"], "n": 1, "signals": [2.0]})
        >>> old.predates_jpeg_thresholds, replace(old, aedr_version="0.17.0").predates_jpeg_thresholds
        (True, False)
        """
        return bool(self.negatives) and not self.jpeg and self._release < JPEG_THRESHOLDS_SINCE

    @property
    def predates_chain_thresholds(self) -> bool:
        """With thresholds for JPEG files (or a view at one of them: ``tuning["jpeg_quality"]``),
        made by an aedr older than :data:`CHAIN_THRESHOLDS_SINCE`, which fitted none for a JPEG
        found enlarged: it decides one at the thresholds for its quality, as it did then.

        >>> fitted = {"threshold": 2.0, "n": 2, "signals": [1.0, 2.0], "summary": {}}
        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {},
        ...                   aedr_version="0.18.0", jpeg={"85": fitted}, enlargements={"1.5": fitted})
        >>> old.predates_chain_thresholds, replace(old, aedr_version="0.19.0").predates_chain_thresholds
        (True, False)
        >>> old.at_jpeg_quality(85).predates_chain_thresholds
        True
        """
        jpeg = bool(self.jpeg) or "jpeg_quality" in self.tuning
        return jpeg and not self.chains and self._release < CHAIN_THRESHOLDS_SINCE

    def _view(self, notes: Mapping[str, Any], fitted: Mapping[str, Any]) -> Calibration:
        """This calibration with the threshold, signals and negatives (and statistic, where
        they read another) ``fitted`` for one condition of the image, made once and noted in
        ``tuning`` (``notes``: what the condition is, e.g. ``{"jpeg_quality": 85}``)."""
        views = self.__dict__.setdefault("_views", {})
        key = tuple(notes.items())
        if key not in views:
            views[key] = replace(
                self, threshold=fitted["threshold"], n=fitted["n"], signals=fitted["signals"],
                summary=fitted["summary"], negatives=fitted.get("negatives", {}), jpeg={},
                enlargements={}, grey={}, chains={}, tuning={**self.tuning, **notes},
                statistic=fitted.get("statistic", self.statistic),
                parameters=fitted.get("parameters", self.parameters),
            )  # fmt: skip
        return views[key]

    def at_size(self, side: float | None) -> Calibration:
        """This calibration as it applies to an image of ``side`` (the square root of its pixel
        count): itself at or above the side of its own images, or without size thresholds;
        below it, the signals of its own images interpolated towards those of their centre
        crops, quantile by quantile on a log scale of the side (the smallest crop's below it),
        with the threshold fitted on them at the same alpha, noted in ``tuning["size_side"]``
        (the side rounded to 8 pixels).

        A smaller view of the same image keeps more of its border, where a decoder's
        reconstruction is worst, so a model's own images score higher (less like it) the
        smaller they are: thresholds fitted on full-size images reject most crops and
        thumbnails (docs/results/robustness.md#image-size)."""
        if side is None or not self.sizes or side >= self.sizes["side"]:
            return self
        crops = sorted((float(s), np.asarray(e["signals"], float))
                       for s, e in self.sizes["crops"].items())  # fmt: skip
        key = int(round(max(side, crops[0][0]) / 8) * 8)
        views = self.__dict__.setdefault("_size_views", {})
        if key not in views:
            points = [*crops, (float(self.sizes["side"]), np.asarray(self.signals, float))]
            values = list(points[0][1])  # at or below the smallest crop: its own signals
            for (lower, low), (upper, high) in itertools.pairwise(points):
                if lower < key <= upper:
                    count = min(len(low), len(high))
                    quantiles = (np.arange(count) + 0.5) / count
                    weight = np.log(upper / key) / np.log(upper / lower)
                    mixed = weight * np.quantile(low, quantiles)
                    values = list(mixed + (1 - weight) * np.quantile(high, quantiles))
                    break
            values = [float(v) for v in values]
            views[key] = replace(
                self, threshold=self._capped(kde_threshold(values, self.alpha)), n=len(values),
                signals=values, summary=signal_summary(values), sizes={},
                tuning={**self.tuning, "size_side": key},
            )  # fmt: skip
        return views[key]

    def _capped(self, threshold: float) -> float:
        """``threshold``, lowered where needed so that a smaller view accepts no larger a share
        of the negatives than this calibration does, or alpha if that is larger: a smaller image
        is also harder to tell from a photo (measured: docs/results/robustness.md#image-size)."""
        return capped_threshold(threshold, self.negatives, self.false_acceptance_limit)

    def negatives_like(self, grey: bool) -> Calibration:
        """This calibration with only its negatives of the image's kind, grey (``grey``) or in
        colour (:func:`negatives_of_kind`), made once: its false acceptance and the run's
        stated false attribution are then counted on images like the one decided. A decoder
        reconstructs grey pixels far better than colour ones, so grey negatives are accepted
        far more often and would overstate the rate for a colour image (and understate it for a
        grey one). Thresholds are capped on every negative, as before (:func:`capped_threshold`)."""
        views = self.__dict__.setdefault("_kinds", {})
        if grey not in views:
            kept = negatives_of_kind(self.negatives, grey)
            views[grey] = self if kept is self.negatives else replace(self, negatives=dict(kept))
        return views[grey]

    @property
    def false_acceptance_by_kind(self) -> dict[str, tuple[float, int]]:
        """(false acceptance, number of negatives) on its negatives in colour and on its grey
        ones, by kind ("in colour", "grey"), where it tells them apart (empty where not)."""
        if not self.negatives.get("grey"):
            return {}
        kinds = {"in colour": self.negatives_like(False), "grey": self.negatives_like(True)}
        return {kind: (float(view.false_acceptance or 0.0), view.negatives["n"])
                for kind, view in kinds.items() if view is not self}  # fmt: skip

    @property
    def predates_negative_kinds(self) -> bool:
        """Measured on negatives by an aedr older than :data:`NEGATIVE_KINDS_SINCE`, which did
        not note which negatives are grey: it states its false acceptance on negatives of
        every kind, as it did then (its thresholds are capped as they are now).

        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, aedr_version="0.15.0",
        ...                   negatives={"sources": ["tiles"], "n": 1, "signals": [2.0], "keys": [""]})
        >>> old.predates_negative_kinds, replace(old, aedr_version="0.16.0").predates_negative_kinds
        (True, False)
        """
        return (
            bool(self.negatives)
            and "grey" not in self.negatives
            and (self._release < NEGATIVE_KINDS_SINCE)
        )

    @property
    def predates_size_thresholds(self) -> bool:
        """Made by an aedr older than :data:`SIZE_THRESHOLDS_SINCE`, which fitted no thresholds
        for smaller images: it decides as it did then, a crop or thumbnail at the full-size
        threshold (which rejects most of the model's own).

        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, {}, aedr_version="0.9.1")
        >>> old.predates_size_thresholds, replace(old, aedr_version="0.10.0").predates_size_thresholds
        (True, False)
        """
        return not self.sizes and self._release < SIZE_THRESHOLDS_SINCE

    @property
    def predates_enlargement_thresholds(self) -> bool:
        """Measured with the enlargement estimate by an aedr older than
        :data:`ENLARGEMENT_THRESHOLDS_SINCE`, which fitted no thresholds for enlarged images: it
        decides an image found enlarged at the clean threshold, as it did then (which rejects
        most of the model's own enlarged images).

        >>> from aedr.measure.settings import ScoreSettings
        >>> made = Provenance("sha256:w", ScoreSettings()).as_dict()
        >>> old = Calibration("m", "highpass", 1.0, 0.05, 2, [0.5, 1.0], {}, made, aedr_version="0.13.0")
        >>> old.predates_enlargement_thresholds
        True
        >>> replace(old, aedr_version="0.14.0").predates_enlargement_thresholds
        False
        """
        looked = self.measurement_provenance.settings.estimates_enlargement()
        return looked and not self.enlargements and self._release < ENLARGEMENT_THRESHOLDS_SINCE

    @property
    def _release(self) -> tuple[int, ...]:
        """(major, minor) of the aedr that made this calibration; () when it does not say."""
        return tuple(int(part) for part in re.findall(r"\d+", self.aedr_version)[:2])

    @property
    def false_acceptance_limit(self) -> float:
        """The largest share of negatives a view of this calibration (at a smaller size, or a
        JPEG quality) may accept: its own false acceptance, or alpha if that is larger."""
        return max(self.alpha, self.false_acceptance or 0.0)

    @property
    def negative_signals(self) -> np.ndarray:
        """The statistic on images the model did not make (empty when none were measured)."""
        return np.asarray(self.negatives.get("signals", ()), dtype=np.float64)

    def _content(self) -> dict[str, Any]:
        # sections left empty are left out: the content (and digest) of a file written before
        # they existed stays the same
        skip = {"digest", "signature"} | {
            n
            for n in ("local", "negatives", "jpeg", "sizes", "enlargements", "grey", "chains")
            if not getattr(self, n)
        }
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def as_dict(self) -> dict[str, Any]:
        """Every field, sealed with the digest of the others (what is saved), and the signature
        when signed."""
        sealed = {**self._content(), "digest": self.content_digest()}
        return sealed if self.signature is None else {**sealed, "signature": self.signature}

    def content_digest(self) -> str:
        """SHA-256 over every field but the digest and signature (``aedr.seals.digest_of``)."""
        return digest_of(self._content())

    def sign(self, key: SigningKey) -> None:
        """Vouch for this calibration with ``key`` (checked by readers who trust its public
        half: ``--trust-key``)."""
        self.signature = sign(self.content_digest(), key)

    def signer(self, source: str = "calibration") -> PublicKey | None:
        """The key that signed this calibration (None if unsigned); SealError if the signature
        does not hold."""
        if self.signature is None:
            return None
        return check_signature(self.content_digest(), self.signature, source)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the calibration as JSON, sealed with its digest, atomically
        (:func:`aedr.files.replacing`): a failed write (a full disk) leaves the file that was
        there whole."""
        sealed = self.as_dict()
        if not overwrite and os.path.lexists(path):
            raise OutputExistsError(f"{path} exists")
        try:
            with replacing(path) as stream:
                json.dump(sealed, stream, indent=2)
                stream.write("\n")
        except OSError as exc:
            raise CalibrationError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.digest = sealed["digest"]

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            size = os.stat(path).st_size
            if size > MAX_CALIBRATION_BYTES:
                raise CalibrationError(
                    f"{path} is {size} bytes, over the {MAX_CALIBRATION_BYTES}-byte limit of a "
                    "calibration file"
                )
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except OSError as exc:
            raise CalibrationError(
                f"cannot read calibration {path}: {exc.strerror or exc}"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"{path} is not a JSON calibration file: {exc}") from None
        except RecursionError:
            raise CalibrationError(
                f"{path} is not a calibration file (JSON nested too deeply)"
            ) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "calibration") -> Calibration:
        """A calibration read back: validated by its schema (``aedr.schemas``), then checked
        against its digest, so a malformed, edited or older-format file is refused."""
        if not isinstance(data, Mapping):
            raise CalibrationError(f"{source} is not a calibration (a JSON object)")
        if data.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(
                f"{source} is calibration format {data.get('format')!r}; this aedr reads format "
                f"{CALIBRATION_FORMAT} (with provenance): recalibrate from the measurements"
            )
        try:
            CalibrationFile.model_validate(data)
        except ValidationError as exc:
            raise CalibrationError(f"{source}: {validation_message(exc)}") from None
        calibration = cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        try:
            Provenance.from_dict(calibration.provenance, source)
        except ProvenanceError as exc:
            raise CalibrationError(str(exc)) from None
        if calibration.digest != calibration.content_digest():
            raise CalibrationError(
                f"{source}: its contents do not match its digest (edited or corrupt); "
                "recalibrate rather than edit a calibration"
            )
        try:
            calibration.signer(source)  # a signature present must hold, trusted or not
        except SealError as exc:
            raise CalibrationError(str(exc)) from None
        return calibration


def records_of_model(
    records: Iterable[Mapping[str, Any]],
    model: str | None = None,
    statistic: str = DEFAULT_STATISTIC,
) -> tuple[str | None, list[Mapping[str, Any]], int]:
    """(model, usable records, skipped) from measurement records of belonging images.

    Records of other models are ignored when ``model`` is given; without it the records must all be
    of one model (or carry no model column, like the authors' loss files). Error records, and
    records the statistic cannot read, are skipped.
    """
    reader = get_statistic(statistic)
    kept, skipped, models, why = [], 0, set(), ""
    for record in records:
        record_model = record.get("model")
        if model is not None and record_model not in (None, model):
            continue
        reason = reader.unusable_reason(record)
        if reason:
            skipped += 1
            why = why or reason
            continue
        kept.append(record)
        if record_model is not None:
            models.add(record_model)
    if model is None and len(models) > 1:
        raise CalibrationError(
            f"records hold several models ({', '.join(sorted(models))}); choose one"
        )
    if skipped and not kept:
        raise CalibrationError(
            f"statistic {statistic} can read none of the {skipped} records ({why})"
        )
    return model or (models.pop() if models else None), kept, skipped


def provenance_of_records(
    records: Sequence[Mapping[str, Any]], assumed: Provenance | None = None
) -> tuple[Provenance, bool]:
    """(the records' one provenance, whether it was assumed).

    Records carrying a provenance must all carry the same; records without need ``assumed``.
    """
    carried = [r.get("provenance") for r in records]
    if all(p in (None, "") for p in carried):
        if assumed is None:
            raise CalibrationError(
                "the records carry no provenance (how they were measured): state the settings "
                "they were measured with"
            )
        return assumed, True
    if any(p in (None, "") for p in carried):
        raise CalibrationError("some records carry a provenance and some do not")
    if assumed is not None:
        raise CalibrationError("the records carry their own provenance: do not state one")
    # each distinct provenance is validated once, however many records carry it
    distinct = {json.dumps(p, sort_keys=True, default=str): p for p in carried}.values()
    try:
        provenances = [
            p if isinstance(p, Provenance) else Provenance.from_dict(p) for p in distinct
        ]
        return common_provenance(provenances), False
    except ProvenanceError as exc:
        raise CalibrationError(str(exc)) from None


def calibrate(
    records: Sequence[Mapping[str, Any]],
    model: str,
    alpha: float = DEFAULT_ALPHA,
    statistic: str = DEFAULT_STATISTIC,
    *,
    assumed_provenance: Provenance | None = None,
    tuning: Mapping[str, Any] | None = None,
    negatives: Sequence[Mapping[str, Any]] = (),
    negative_sources: Sequence[str] = (),
) -> Calibration:
    """Fit ``model``'s calibration on measurement records of images it made.

    ``statistic``'s parameters are fitted first (``fitted``: beta), then the threshold on its
    values; the records' provenance is kept (or ``assumed_provenance`` for records without one).
    ``negatives``, records of images the model did not make (``negative_sources`` says what they
    are), are kept as their statistic under the fitted parameters: never fitted on, only counted.
    """
    from aedr import __version__

    provenance, assumed = provenance_of_records(records, assumed_provenance)
    reader = get_statistic(statistic)
    if provenance.settings.measurement != reader.measurement:
        raise CalibrationError(
            f"statistic {statistic} reads {reader.measurement} measurements, but these are "
            f"{provenance.settings.measurement} measurements"
        )
    try:
        check_distance_applies(statistic, provenance.settings.distance)
        parameters = reader.fit_parameters(records)
        signals = [reader.value(r, parameters) for r in records]
        negative_signals = [reader.value(r, parameters) for r in negatives]
    except (StatisticError, ValueError) as exc:
        raise CalibrationError(str(exc)) from None
    kept = {}
    if negatives:
        kept = _negatives_section(reader, negatives, negative_signals,
                                  list(negative_sources) or ["unnamed"])  # fmt: skip
    return Calibration(
        model=model, statistic=statistic, threshold=kde_threshold(signals, alpha), alpha=alpha,
        n=len(signals), signals=signals, summary=signal_summary(signals),
        provenance=provenance.as_dict(), parameters=parameters, provenance_assumed=assumed,
        tuning=dict(tuning or {}), negatives=kept, aedr_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip


def _negatives_section(
    reader: Statistic,
    records: Sequence[Mapping[str, Any]],
    signals: list[float],
    sources: list[str],
) -> dict[str, Any]:
    """A calibration's negatives: what they are, their signals, content keys (to count the same
    images across candidates) and, where some have too little evidence to be accepted at any
    threshold, every negative's shortfall (left out otherwise, as in files written before it)."""
    section = {"sources": sources, "n": len(signals), "signals": signals,
               "keys": [str(r.get("content_sha256") or "") for r in records]}  # fmt: skip
    shortfalls = [reader.shortfall(r) for r in records]
    if any(shortfalls):
        section["shortfalls"] = shortfalls
    grey = [record_grey(r) for r in records]
    if any(grey):
        section["grey"] = grey
    return section


NEGATIVE_LISTS = ("signals", "keys", "shortfalls", "grey")
"""The fields of a negatives section that hold one entry per negative."""


def negatives_of_kind(negatives: Mapping[str, Any], grey: bool) -> Mapping[str, Any]:
    """The ``negatives`` section's grey ones (``grey``) or those in colour, named so in its
    sources; the section itself where it does not tell them apart (written before 0.16.0, or
    none grey), holds none of that kind or only that kind.

    >>> section = {"sources": ["tiles"], "n": 3, "signals": [0.1, 0.2, 0.3], "keys": ["a", "b", "c"],
    ...            "grey": [True, False, False]}
    >>> colour = negatives_of_kind(section, False)
    >>> colour["n"], colour["signals"], colour["sources"]
    (2, [0.2, 0.3], ['tiles, those in colour'])
    >>> negatives_of_kind(colour, False) is colour
    True
    >>> negatives_of_kind({"sources": ["tiles"], "n": 1, "signals": [0.1], "keys": ["a"]}, True)["n"]
    1
    """
    flags = negatives.get("grey")
    if not flags or len(set(flags)) == 1:  # one kind only: nothing to tell apart
        return negatives
    kept = [i for i, flag in enumerate(flags) if flag == grey]
    kind = "grey" if grey else "in colour"
    section = {**negatives, "n": len(kept),
               "sources": [f"{s}, those {kind}" for s in negatives["sources"]]}  # fmt: skip
    for name in NEGATIVE_LISTS:
        if negatives.get(name) is not None:
            section[name] = [negatives[name][i] for i in kept]
    return section


def image_side(width: Any, height: Any) -> float | None:
    """The side of an image of ``width`` x ``height`` as ``Calibration.at_size`` reads it: the
    square root of its pixel count (None where the size is unknown).

    >>> image_side(256, 64), image_side(None, 64)
    (128.0, None)
    """
    sides = (width, height)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sides):
        return None
    if min(width, height) <= 0:
        return None
    return float((width * height) ** 0.5)


def record_jpeg_quality(record: Mapping[str, Any]) -> int | None:
    """A measurement record's JPEG quality (None for other files, and for records without one,
    such as older files): an int, or its text in a CSV cell."""
    value = record.get("jpeg_quality")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def record_enlargement(record: Mapping[str, Any]) -> float | None:
    """The enlargement a measurement found in its image and undid (``aedr.measure.resampling``),
    or None: nothing found, an enlargement the user stated (``--resized-by``), older records.

    >>> record_enlargement({"degradation": {"resized_by": 1.5, "enlargement_strength": 26.0}})
    1.5
    >>> record_enlargement({"degradation": {"resized_by": 1.5}}) is None
    True
    """
    found = record.get("degradation")
    if not isinstance(found, Mapping) or found.get(ENLARGEMENT_STRENGTH) is None:
        return None
    factor = found.get(RESIZED)
    return float(factor) if isinstance(factor, (int, float)) and factor > 1 else None


def _nearest_enlargement(factors: Sequence[float], factor: float | None) -> float | None:
    """Of ``factors`` (enlargements a calibration has thresholds for) the one nearest
    ``factor`` on a log scale, the smaller on a tie; None where no enlargement was found, or
    where an image left alone (x1) is nearer."""
    if factor is None or not factors:
        return None
    nearest = min((1.0, *factors), key=lambda f: (abs(np.log(f / factor)), f))
    return None if nearest == 1.0 else nearest


def record_grey(record: Mapping[str, Any]) -> bool:
    """Whether a measurement record says its image is grey (``Measurement.grey``): a bool, or
    its text in a CSV cell; False where it does not say (older records).

    >>> record_grey({"grey": True}), record_grey({"grey": "True"}), record_grey({})
    (True, True, False)
    """
    return bool(read_grey(record.get("grey")))


def check_enlargement_factors(factors: Sequence[float]) -> None:
    """Refuse enlargement factors that are not distinct numbers above 1 and at most
    :data:`MAX_LADDER_ENLARGEMENT`, or that a calibration file cannot name (4 decimals).

    >>> check_enlargement_factors([1.5, 2])
    >>> check_enlargement_factors([3])
    Traceback (most recent call last):
    aedr.decide.calibration.CalibrationError: enlargement factors are distinct numbers above 1 and at most 2 (4 decimals at most), not 3
    """
    bad = [
        f for f in factors
        if isinstance(f, bool) or not isinstance(f, (int, float))
        or not 1 < f <= MAX_LADDER_ENLARGEMENT or round(f, 4) != f
    ]  # fmt: skip
    if bad or len(set(factors)) != len(factors):
        raise CalibrationError(
            f"enlargement factors are distinct numbers above 1 and at most "
            f"{MAX_LADDER_ENLARGEMENT:g} (4 decimals at most), not " + ", ".join(map(repr, factors))
        )


def check_chains(chains: Sequence[tuple[float, int]]) -> None:
    """Refuse chains that are not distinct (enlargement factor, JPEG quality) pairs, each as
    :func:`check_enlargement_factors` and :func:`check_jpeg_qualities` take them.

    >>> check_chains([(1.5, 85), (1.5, 70)])
    >>> check_chains([(1.5, 85), (1.5, 85)])
    Traceback (most recent call last):
    aedr.decide.calibration.CalibrationError: chains are distinct (factor, quality) pairs, not (1.5, 85), (1.5, 85)
    """
    for chain in chains:
        if not isinstance(chain, tuple) or len(chain) != 2:
            raise CalibrationError(f"a chain is a (factor, quality) pair, not {chain!r}")
        check_enlargement_factors([chain[0]])
        check_jpeg_qualities([chain[1]])
    if len(set(chains)) != len(chains):
        raise CalibrationError(
            "chains are distinct (factor, quality) pairs, not " + ", ".join(map(repr, chains))
        )


def check_jpeg_qualities(qualities: Sequence[int]) -> None:
    """Refuse JPEG qualities that are not distinct whole numbers from 1 to 100 (IJG's scale)."""
    bad = [q for q in qualities if not isinstance(q, int) or not 1 <= q <= 100]
    if bad or len(set(qualities)) != len(qualities):
        raise CalibrationError(
            "JPEG qualities are distinct whole numbers from 1 to 100, not "
            + ", ".join(map(repr, qualities))
        )


def fit_size_thresholds(
    calibration: Calibration,
    records: Mapping[int, Sequence[Mapping[str, Any]]],
    side: float,
) -> Calibration:
    """A copy of ``calibration`` with thresholds for smaller images: ``records[s]`` measure
    centre crops of side s of the calibration's own images, whose median side is ``side``
    (:meth:`Calibration.at_size` interpolates between them). Same statistic, parameters and
    alpha; measurements made another way are refused."""
    reader = get_statistic(calibration.statistic)
    crops = {}
    for crop, crop_records in sorted(records.items()):
        if not 0 < crop < side:
            raise CalibrationError(f"a crop of {crop} px is not smaller than the images' {side:g}")
        usable = [r for r in crop_records if reader.usable(r)]
        if len(usable) < 2:
            raise CalibrationError(
                f"{len(usable)} usable measurements of {crop} px centre crops: need at least 2"
            )
        _check_same_provenance(calibration, usable, f"centre crops of {crop} px")
        signals = [calibration.value(r) for r in usable]
        crops[str(crop)] = {"threshold": kde_threshold(signals, calibration.alpha),
                            "n": len(signals), "signals": signals,
                            "summary": signal_summary(signals)}  # fmt: skip
    return replace(calibration, sizes={"side": float(side), "crops": crops}, digest="")


def capped_threshold(threshold: float, negatives: Mapping[str, Any], share: float) -> float:
    """``threshold``, lowered where needed so that it accepts at most ``share`` of the
    ``negatives`` section's signals (a negative with a shortfall is never accepted).

    >>> negatives = {"signals": [0.1, 0.2, 0.3, 0.4], "shortfalls": ["", "", "", ""]}
    >>> capped_threshold(0.5, negatives, 0.25), capped_threshold(0.15, negatives, 0.25)
    (0.2, 0.15)
    """
    signals = np.asarray(negatives.get("signals", ()), dtype=np.float64)
    if not signals.size:
        return threshold
    shortfalls = negatives.get("shortfalls") or [""] * signals.size
    eligible = np.sort([v for v, why in zip(signals, shortfalls, strict=True) if not why])
    allowed = int(np.floor(share * signals.size + 1e-9))
    return threshold if allowed >= eligible.size else min(threshold, float(eligible[allowed]))


def jpeg_statistic(quality: int, statistic: str) -> str:
    """The statistic the default JPEG thresholds at ``quality`` read for a calibration on
    ``statistic``: ``ac`` below :data:`JPEG_AC_BELOW` for the default statistic (the pair
    measured against each other), else ``statistic`` itself.

    >>> jpeg_statistic(70, "highpass"), jpeg_statistic(95, "highpass"), jpeg_statistic(70, "aedr")
    ('ac', 'highpass', 'aedr')
    """
    return "ac" if quality < JPEG_AC_BELOW and statistic == DEFAULT_STATISTIC else statistic


def check_jpeg_statistic(own: str, statistic: str | None) -> None:
    """Refuse JPEG thresholds on ``statistic`` for a calibration on ``own`` where it reads
    another measurement kind (None: each quality's :func:`jpeg_statistic`, always allowed)."""
    if statistic is None:
        return
    reader = get_statistic(statistic)
    if reader.measurement != get_statistic(own).measurement:
        raise CalibrationError(
            f"JPEG thresholds on {reader.name} need {reader.measurement} measurements, but "
            f"the calibration's statistic {own} reads {get_statistic(own).measurement}"
        )


def fit_jpeg_thresholds(
    calibration: Calibration,
    records: Mapping[int, Sequence[Mapping[str, Any]]],
    negatives: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    negative_sources: Sequence[str] = (),
    statistic: str | None = None,
) -> Calibration:
    """A copy of ``calibration`` with a threshold per JPEG quality: ``records[q]`` measure the
    calibration's own images re-encoded at quality q (``negatives[q]`` its negatives, where they
    could be re-encoded). The threshold keeps the same alpha; measurements made another way are
    refused.

    Each threshold is capped on the re-encoded negatives in colour (a grey JPEG is decided at the
    thresholds for grey images): the grey ones score lowest once re-encoded and, counted in the
    cap, held it below most of the model's own JPEGs (docs/results/zero-setup.md#jpeg-files).
    The thresholds read ``statistic`` at every quality; by default (None) each quality's
    :func:`jpeg_statistic`. The calibration's own statistic keeps the parameters fitted on the
    clean images; another statistic must read the same measurement kind, its parameters (if it
    has any) are fitted on each quality's records, and JPEG files are then decided by it
    (:meth:`Calibration.at_jpeg_quality`)."""
    check_jpeg_qualities(list(records))
    check_jpeg_statistic(calibration.statistic, statistic)
    own = calibration.statistic
    fitted = {}
    for quality, quality_records in sorted(records.items()):
        fitted[str(quality)] = _condition_thresholds(
            calibration, get_statistic(statistic or jpeg_statistic(quality, own)),
            quality_records, [(negatives or {}).get(quality, ())], negative_sources,
            f"images re-encoded at JPEG quality {quality}", f"re-encoded at JPEG quality {quality}",
            capped_on_colour=True,
        )  # fmt: skip
    return replace(calibration, jpeg=fitted, digest="")


def fit_enlargement_thresholds(
    calibration: Calibration,
    records: Mapping[float, Sequence[Mapping[str, Any]]],
    negatives: Mapping[float, Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    negative_sources: Sequence[str] = (),
) -> Calibration:
    """A copy of ``calibration`` with a threshold per enlargement factor: ``records[f]``
    measure the calibration's own images enlarged by f, ``negatives[f][name]`` its negatives
    enlarged by f with the filter ``name``, each measured as any image is, the enlargement found
    and undone. Only the records whose enlargement was found are fitted on (the others would be
    decided at the clean threshold, as they are); same statistic, parameters and alpha;
    measurements made another way are refused (:meth:`Calibration.at_enlargement` applies
    them). The threshold is capped on each filter's negatives on their own: pooled, the
    negatives of one filter hide the photos the other lets through
    (docs/results/robustness.md#thresholds-for-enlarged-images)."""
    check_enlargement_factors(list(records))
    reader = get_statistic(calibration.statistic)
    fitted = {}
    for factor, factor_records in sorted(records.items()):
        groups = (negatives or {}).get(factor, {})
        fitted[f"{factor:g}"] = _condition_thresholds(
            calibration, reader, [r for r in factor_records if record_enlargement(r)],
            [[r for r in group if record_enlargement(r)] for group in groups.values()],
            negative_sources, f"images enlarged x{factor:g} (enlargement found)",
            f"enlarged x{factor:g}",
        )  # fmt: skip
    return replace(calibration, enlargements=fitted, digest="")


def fit_chain_thresholds(
    calibration: Calibration,
    records: Mapping[tuple[float, int], Sequence[Mapping[str, Any]]],
    negatives: Mapping[tuple[float, int], Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    negative_sources: Sequence[str] = (),
) -> Calibration:
    """A copy of ``calibration`` with a threshold per chain (factor, quality):
    ``records[chain]`` measure the calibration's own images enlarged by the factor, then
    re-encoded at the quality, ``negatives[chain][name]`` its negatives so degraded with the
    filter ``name``, each measured as any image is (the enlargement found and undone through
    the file's tables). Only the records whose enlargement was found are fitted on (the others
    are decided at their quality's thresholds). Each threshold reads the quality's
    :func:`jpeg_statistic` and is capped, as the JPEG thresholds are, on the negatives in colour
    (a grey JPEG is decided at the thresholds for grey images), and on each filter's on their
    own, as the enlargement thresholds are (:meth:`Calibration.at_chain` applies them)."""
    check_chains(list(records))
    fitted: dict[str, Any] = {}
    for (factor, quality), chain_records in sorted(records.items()):
        groups = (negatives or {}).get((factor, quality), {})
        done = f"enlarged x{factor:g}, then re-encoded at JPEG quality {quality}"
        fitted.setdefault(f"{factor:g}", {})[str(quality)] = _condition_thresholds(
            calibration, get_statistic(jpeg_statistic(quality, calibration.statistic)),
            [r for r in chain_records if record_enlargement(r)],
            [[r for r in group if record_enlargement(r)] for group in groups.values()],
            negative_sources, f"images {done} (enlargement found)", done, capped_on_colour=True,
        )  # fmt: skip
    return replace(calibration, chains=fitted, digest="")


def fit_grey_thresholds(
    calibration: Calibration,
    records: Sequence[Mapping[str, Any]],
    negatives: Sequence[Mapping[str, Any]] = (),
    negative_sources: Sequence[str] = (),
) -> Calibration:
    """A copy of ``calibration`` with a threshold for grey images: ``records`` measure the
    calibration's own images made grey, ``negatives`` its negatives made grey. Same statistic,
    parameters and alpha; capped so that it accepts at most alpha of the grey negatives: the
    calibration's own false acceptance is no bound here, since it counts the grey negatives
    among the rest (docs/results/robustness.md#grey-images). Records that are not grey are
    left out; measurements made another way are refused (:meth:`Calibration.at_grey`)."""
    if not any(record_grey(r) for r in negatives):
        raise CalibrationError(
            "thresholds for grey images need negatives made grey: uncapped, they accept most "
            "grey photos"
        )
    grey = _condition_thresholds(
        calibration, get_statistic(calibration.statistic),
        [r for r in records if record_grey(r)], [[r for r in negatives if record_grey(r)]],
        negative_sources, "images made grey", "made grey", limit=calibration.alpha,
    )  # fmt: skip
    return replace(calibration, grey=grey, digest="")


def _condition_thresholds(
    calibration: Calibration,
    reader: Statistic,
    records: Sequence[Mapping[str, Any]],
    negative_groups: Sequence[Sequence[Mapping[str, Any]]],
    negative_sources: Sequence[str],
    what: str,
    done: str,
    limit: float | None = None,
    capped_on_colour: bool = False,
) -> dict[str, Any]:
    """The threshold, signals and negatives of ``calibration`` for one condition of the image
    (a JPEG quality, an enlargement, grey): fitted on ``records``, the calibration's own images
    so degraded, at its alpha, read by ``reader`` (its parameters fitted on them where it is not
    the calibration's statistic), and capped so that it accepts at most ``limit`` of each of
    the ``negative_groups`` so degraded (by default the share of its negatives the calibration
    accepts, or alpha if that is larger), counting every negative, grey or in colour: capped on
    those in colour alone, the thresholds for enlarged images attributed more photos
    (docs/results/zero-setup.md#negatives-like-the-image). With ``capped_on_colour`` (JPEG
    files) the cap counts the negatives in colour alone, at the share of them the calibration
    accepts (or alpha); the section keeps every negative."""
    usable = [r for r in records if reader.usable(r)]
    if len(usable) < 2:
        raise CalibrationError(f"{len(usable)} usable measurements of the {what}: need at least 2")
    _check_same_provenance(calibration, usable, what)
    entry: dict[str, Any] = {}
    deciding = calibration
    if reader.name != calibration.statistic:
        try:
            parameters = reader.fit_parameters(usable)
        except StatisticError as exc:
            raise CalibrationError(str(exc)) from None
        entry = {"statistic": reader.name, "parameters": parameters}
        deciding = replace(calibration, statistic=reader.name, parameters=parameters)
    signals = [deciding.value(r) for r in usable]
    entry.update(threshold=kde_threshold(signals, calibration.alpha), n=len(signals),
                 signals=signals, summary=signal_summary(signals))  # fmt: skip
    groups = [[r for r in group if reader.usable(r)] for group in negative_groups]
    kept = [r for group in groups for r in group]
    if kept:
        _check_same_provenance(calibration, kept, f"negatives of the {what}")
        sources = [f"{s}, {done}" for s in negative_sources or ["unnamed"]]
        values = [[deciding.value(r) for r in group] for group in groups]
        capping = calibration.negatives_like(False) if capped_on_colour else calibration
        for group, group_signals in zip(groups, values, strict=True):
            section = _negatives_section(reader, group, group_signals, sources)
            capped = negatives_of_kind(section, False) if capped_on_colour else section
            if capped["n"]:
                entry["threshold"] = capped_threshold(
                    entry["threshold"], capped,
                    capping.false_acceptance_limit if limit is None else limit,
                )  # fmt: skip
        entry["negatives"] = _negatives_section(
            reader, kept, [v for group in values for v in group], sources
        )
    return entry


def _check_same_provenance(
    calibration: Calibration, records: Sequence[Mapping[str, Any]], what: str
) -> None:
    provenance, _ = provenance_of_records(records)
    # strict, robust included: a JPEG threshold holds for one way of measuring JPEG files
    differences = calibration.measurement_provenance.differences(provenance, version=True)
    if differences:
        raise CalibrationError(
            f"the measurements of the {what} were made differently from the calibration's "
            f"({'; '.join(differences)})"
        )


def choose_alpha(
    positives: Sequence[float], negatives: Sequence[float], grid: Sequence[float] = ALPHA_GRID
) -> tuple[float, float]:
    """The alpha whose threshold (fitted on ``positives``) classifies ``positives`` (below) and
    ``negatives`` (not below) most accurately, as the paper tunes it per model; ties go to the
    smaller alpha. Returns (alpha, accuracy)."""
    positive, negative = np.asarray(positives, float), np.asarray(negatives, float)
    if positive.size < 2 or negative.size < 1:
        raise CalibrationError("alpha auto needs belonging and non-belonging tuning scores")
    best = (0.0, -1.0)
    for alpha in grid:
        threshold = kde_threshold(positive, alpha)
        correct = (positive < threshold).sum() + (negative >= threshold).sum()
        accuracy = float(correct / (positive.size + negative.size))
        if accuracy > best[1]:
            best = (alpha, accuracy)
    return best
