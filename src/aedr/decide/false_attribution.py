"""False attribution measured on negatives: how often a set of candidates names a model for an
image none of them made, and thresholds that keep it under a stated rate.

Each candidate's own threshold controls only how often it rejects its own images (alpha). With K
candidates the chance that *some* candidate accepts a real photo grows with K. A calibration that
carries negatives (``Calibration.negatives``) measures its own false acceptance; candidates that
carry the same negatives (the shipped default photos, matched by content) measure the run's
family-wise false attribution exactly: the share of those images that at least one candidate
accepts. Otherwise it is bounded by the sum of the candidates' rates (Bonferroni).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from aedr.decide.calibration import Calibration, CalibrationError

LEVELS = 401  # negative-quantile levels searched when thresholds are tightened


@dataclass(frozen=True)
class FalseAttribution:
    """The run's false-attribution rate on negatives: ``rate`` of ``n`` images (``exact``: counted
    on images every candidate measured; otherwise the Bonferroni bound over ``n`` in all)."""

    rate: float
    n: int
    exact: bool
    sources: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Every field, and the words (what a result carries)."""
        return {**asdict(self), "sources": list(self.sources), "description": self.describe()}

    def describe(self) -> str:
        """In words, for a row or a page."""
        what = "; ".join(self.sources)
        if self.exact:
            count = round(self.rate * self.n)
            return (f"{count} of {self.n} negative images ({self.rate:.0%}) are attributed to some "
                    f"candidate at these thresholds ({what})")  # fmt: skip
        return (f"at most {self.rate:.0%} of images no candidate made are attributed to one "
                f"(sum of the candidates' rates on their negatives: {what})")  # fmt: skip


def _common_keys(calibrations: Sequence[Calibration]) -> set[str]:
    """The negatives every candidate measured (by content key)."""
    keys = [set(filter(None, c.negatives.get("keys", []))) for c in calibrations]
    return set.intersection(*keys) if keys else set()


def _rate(
    calibrations: Sequence[Calibration], thresholds: Sequence[float], common: set[str]
) -> float:
    """The false attribution at ``thresholds``: exact on ``common``, else the Bonferroni bound."""
    pairs = list(zip(calibrations, thresholds, strict=True))
    if common:
        accepted = set().union(*(c.accepted_negatives(t) for c, t in pairs)) & common
        return len(accepted) / len(common)
    return min(1.0, sum(float(c.negatives_accepted(t).mean()) for c, t in pairs))


def false_attribution(calibrations: Sequence[Calibration]) -> FalseAttribution | None:
    """The candidates' false attribution on their negatives; None when one has none."""
    if not calibrations or any(not c.negatives for c in calibrations):
        return None
    sources = tuple(dict.fromkeys(s for c in calibrations for s in c.negatives["sources"]))
    common = _common_keys(calibrations)
    rate = _rate(calibrations, [c.threshold for c in calibrations], common)
    n = len(common) or sum(c.negatives["n"] for c in calibrations)
    return FalseAttribution(rate, n, bool(common), sources)


def limit_false_attribution(calibrations: Sequence[Calibration], rate: float) -> list[Calibration]:
    """Copies of ``calibrations`` whose thresholds are lowered, where needed, so that their false
    attribution on the negatives is at most ``rate``.

    Every candidate's threshold becomes the lower of its own and the same quantile level of its
    negatives' signals, the level being the highest that keeps the rate: one level for all, so
    no candidate is singled out. Lowered calibrations say so in ``tuning``.
    """
    if not 0.0 <= rate < 1.0:
        raise CalibrationError(f"the false-attribution rate must lie in [0, 1), not {rate}")
    missing = [c.model for c in calibrations if not c.negatives]
    if missing:
        raise CalibrationError(
            f"calibrations for {', '.join(missing)} carry no negatives, so their false "
            "attribution cannot be measured: recalibrate with negatives"
        )
    current = false_attribution(calibrations)
    if current is None or current.rate <= rate:
        return list(calibrations)
    common, levels = _common_keys(calibrations), np.linspace(1.0, 0.0, LEVELS)
    quantiles = np.array([np.quantile(c.negative_signals, levels) for c in calibrations])
    own = np.array([c.threshold for c in calibrations])
    for index in range(LEVELS):  # the last level, 0, accepts no negative: the loop always ends
        thresholds = np.minimum(own, quantiles[:, index])
        if _rate(calibrations, thresholds, common) <= rate:
            break
    note = {"max_false_attribution": rate, "negative_level": float(levels[index])}
    return [
        replace(c, threshold=float(t), tuning={**c.tuning, **note, "own_threshold": c.threshold})
        if t < c.threshold
        else c
        for c, t in zip(calibrations, thresholds, strict=True)
    ]
