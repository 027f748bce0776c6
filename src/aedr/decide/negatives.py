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
from dataclasses import dataclass, replace

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

    def describe(self) -> str:
        """In words, for a row or a page."""
        what = "; ".join(self.sources)
        if self.exact:
            count = round(self.rate * self.n)
            return (f"{count} of {self.n} negative images ({self.rate:.0%}) are attributed to some "
                    f"candidate at these thresholds ({what})")  # fmt: skip
        return (f"at most {self.rate:.0%} of images no candidate made are attributed to one "
                f"(sum of the candidates' rates on their negatives: {what})")  # fmt: skip


def _common_keys(calibrations: Sequence[Calibration]) -> list[str]:
    keys = [set(filter(None, c.negatives.get("keys", []))) for c in calibrations]
    return sorted(set.intersection(*keys)) if keys else []


def false_attribution(calibrations: Sequence[Calibration]) -> FalseAttribution | None:
    """The candidates' false attribution on their negatives; None when one has none."""
    if not calibrations or any(not c.negatives for c in calibrations):
        return None
    sources = tuple(dict.fromkeys(s for c in calibrations for s in c.negatives["sources"]))
    common = _common_keys(calibrations)
    if common:
        accepted = set().union(*(c.accepted_negatives() for c in calibrations)) & set(common)
        return FalseAttribution(len(accepted) / len(common), len(common), True, sources)
    bound = min(1.0, sum(c.false_acceptance for c in calibrations))
    return FalseAttribution(bound, sum(c.negatives["n"] for c in calibrations), False, sources)


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
    for level in np.linspace(1.0, 0.0, LEVELS):
        tightened = [
            replace(c, threshold=min(c.threshold, float(np.quantile(c.negative_signals, level))))
            for c in calibrations
        ]
        found = false_attribution(tightened)
        if found is not None and found.rate <= rate:
            break
    note = {"max_false_attribution": rate, "negative_level": float(level)}
    return [
        replace(t, tuning={**c.tuning, **note, "own_threshold": c.threshold})
        if t.threshold < c.threshold
        else c
        for c, t in zip(calibrations, tightened, strict=True)
    ]
