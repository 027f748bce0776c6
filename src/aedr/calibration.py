"""Per-model decision thresholds: a Gaussian KDE over the signals of images the model made.

The threshold is the (1 - alpha) quantile of that KDE, computed exactly as the paper's authors do:
Scott bandwidth, density on 10,000 evenly spaced points over [min - s, max + s] (s: sample standard
deviation), cumulative sum normalised to 1, linear interpolation at 1 - alpha.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from aedr.signal import SignalError, calibrated_signal, loss_ratio

GRID_SIZE = 10_000
CALIBRATION_FORMAT = 1
METHODS = ("aedr", "ratio", "fitted", "single-loss", "latenttracer")
"""Decision statistics (lower = belongs): the paper's ratio * H; the ratio alone;
log(ratio) + beta * log(H) with beta fitted per model; the first reconstruction loss alone;
LatentTracer's inversion loss."""
DEFAULT_METHOD = "fitted"
"""Chosen by measurement (README, Complexity calibration): best mean accuracy and AUC on the tiny
autoencoder benchmark and on the authors' SD 1.5 files. ``aedr`` is the paper's exact statistic."""
ALPHA_GRID = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3)


class CalibrationError(ValueError):
    """A calibration that cannot be fitted, read or applied."""


def kde_threshold(
    signals: Sequence[float], alpha: float = 0.05, grid_size: int = GRID_SIZE
) -> float:
    """The (1 - alpha) quantile of a Gaussian KDE (Scott's rule) fitted on ``signals``."""
    from scipy.stats import gaussian_kde

    values = np.asarray(signals, dtype=np.float64)
    if not 0.0 < alpha < 1.0:
        raise CalibrationError(f"alpha must lie in (0, 1), got {alpha}")
    if values.ndim != 1 or values.size < 2:
        raise CalibrationError(f"need at least 2 signals to fit a KDE, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise CalibrationError("signals contain NaN or infinite values")
    spread = values.std(ddof=1)
    if spread == 0.0:
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
    """A fitted threshold for one model, with what is needed to apply it safely later."""

    model: str
    threshold: float
    alpha: float
    n: int
    signals: list[float]
    summary: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)
    autoencoder_identity: str | None = None
    beta: float | None = None  # method "fitted": the homogeneity exponent fitted here
    tuning: dict[str, Any] = field(default_factory=dict)
    aedr_version: str = ""
    created: str = ""
    format: int = CALIBRATION_FORMAT

    def belongs(self, signal: float) -> bool:
        return signal < self.threshold

    def p_value(self, signal: float) -> float:
        """Upper tail at ``signal`` of the fitted KDE, restricted like the threshold to the
        paper's grid range [min - s, max + s]: the share of this model's own images expected to
        score at least this high. Comparable across models, and p > alpha exactly when the signal
        is below the threshold (up to the grid's resolution)."""
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

    @property
    def method(self) -> str:
        return self.settings.get("method", "aedr")  # files from before methods were recorded

    def statistic(self, record: Mapping[str, Any]) -> float:
        """The decision statistic of a score record under this calibration's method (and beta)."""
        return signal_of_record(record, self.method, self.beta)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        try:
            with open(path, "w" if overwrite else "x", encoding="utf-8") as stream:
                json.dump(asdict(self), stream, indent=2)
                stream.write("\n")
        except FileExistsError:
            raise CalibrationError(f"{path} exists; pass --overwrite to replace it") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except OSError as exc:
            raise CalibrationError(
                f"cannot read calibration {path}: {exc.strerror or exc}"
            ) from None
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path} is not a JSON calibration file: {exc.msg}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "calibration") -> Calibration:
        missing = [name for name in ("model", "threshold", "alpha", "n") if name not in data]
        if missing:
            raise CalibrationError(f"{source} lacks {', '.join(missing)}")
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        calibration = cls(**{"signals": [], "summary": {}, **known})
        if not isinstance(calibration.threshold, (int, float)) or not math.isfinite(
            calibration.threshold
        ):
            raise CalibrationError(f"{source}: threshold is not a finite number")
        if calibration.signals and abs(
            kde_threshold(calibration.signals, calibration.alpha) - calibration.threshold
        ) > 1e-9 * max(1.0, abs(calibration.threshold)):
            raise CalibrationError(
                f"{source}: threshold does not match its own signals and alpha (edited or corrupt)"
            )
        return calibration


def fit_calibration(
    signals: Sequence[float],
    model: str,
    alpha: float = 0.05,
    settings: Mapping[str, Any] | None = None,
    autoencoder_identity: str | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit the threshold on the signals of images that ``model`` made."""
    from aedr import __version__

    values = [float(s) for s in signals]
    return Calibration(
        model=model,
        threshold=kde_threshold(values, alpha),
        alpha=alpha,
        n=len(values),
        signals=values,
        summary=signal_summary(values),
        settings=dict(settings or {}),
        autoencoder_identity=autoencoder_identity,
        tuning=dict(tuning or {}),
        aedr_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def signal_of_record(
    record: Mapping[str, Any], method: str = "aedr", beta: float | None = None
) -> float:
    """A record's decision statistic under ``method`` (``beta`` for ``fitted``).

    aedr, ratio, fitted and single-loss come from the loss columns of any AEDR score record (so one
    scoring run compares them all); latenttracer needs records scored with that method.
    """
    if method not in METHODS:
        raise CalibrationError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    try:
        if method == "latenttracer":
            if record.get("loss2") not in (None, ""):
                raise CalibrationError(
                    "latenttracer needs records scored with --method latenttracer"
                )
            return float(record["loss1"])
        if method == "single-loss":
            return float(record["loss1"])
        ratio = loss_ratio(float(record["loss1"]), float(record["loss2"]))
        if method == "ratio":
            return ratio
        if method == "fitted":
            if beta is None:
                raise CalibrationError("method fitted needs a beta (fit it on calibration scores)")
            return math.log(ratio) + beta * math.log(float(record["homogeneity"]))
        return calibrated_signal(ratio, float(record["homogeneity"]))
    except (KeyError, TypeError) as exc:
        if method == "aedr" and record.get("signal") is not None:
            return float(record["signal"])  # e.g. a file of signals alone
        raise CalibrationError(
            f"record lacks the columns {method} needs (loss1, loss2, homogeneity)"
        ) from exc


def defining_method(method: str) -> str:
    """The method whose statistic must be defined for a record to be usable under ``method``
    (``fitted`` needs a calibration's beta, but only the ratio from the record)."""
    return "ratio" if method == "fitted" else method


def fit_beta(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The homogeneity exponent that best cancels image complexity in a model's own images.

    Least squares of log(ratio) on log(H) over belonging images: beta = -slope, so that
    log(ratio) + beta * log(H) no longer trends with H. Needs only belonging images, like the
    threshold. Returns beta with the fit's slope, intercept, R^2 and n.
    """
    ratios = np.array([signal_of_record(r, "ratio") for r in records])
    homogeneity = np.array([float(r["homogeneity"]) for r in records])
    if ratios.size < 3:
        raise CalibrationError(f"fitting beta needs at least 3 scores, got {ratios.size}")
    x, y = np.log(homogeneity), np.log(ratios)
    if np.ptp(x) == 0:
        raise CalibrationError(
            "all calibration images have the same homogeneity: no beta to fit "
            "(use --method ratio or aedr)"
        )
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1 - residual.var() / y.var() if y.var() > 0 else 0.0
    return {"beta": float(-slope), "slope": float(slope), "intercept": float(intercept),
            "r2": float(r2), "n": int(ratios.size)}  # fmt: skip


def calibrate_records(
    records: Sequence[Mapping[str, Any]],
    model: str,
    alpha: float = 0.05,
    method: str = DEFAULT_METHOD,
    settings: Mapping[str, Any] | None = None,
    autoencoder_identity: str | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit a calibration from score records of belonging images (beta first, for ``fitted``)."""
    beta, tuning = None, dict(tuning or {})
    if method == "fitted":
        fit = fit_beta(records)
        beta, tuning["beta_fit"] = fit["beta"], fit
    signals = [signal_of_record(r, method, beta) for r in records]
    calibration = fit_calibration(
        signals, model, alpha, {**(settings or {}), "method": method}, autoencoder_identity, tuning
    )
    calibration.beta = beta
    return calibration


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


def records_of_model(
    records: Iterable[Mapping[str, Any]], model: str | None = None, method: str = "aedr"
) -> tuple[str | None, list[Mapping[str, Any]], int]:
    """(model, usable records, skipped) from score records of belonging images.

    Records of other models are ignored when ``model`` is given; without it the records must all be
    of one model (or carry no model column, like the authors' loss files). Error records, and
    records whose statistic is undefined, are skipped.
    """
    kept, skipped, models = [], 0, set()
    for record in records:
        record_model = record.get("model")
        if model is not None and record_model not in (None, model):
            continue
        if record.get("error"):
            skipped += 1
            continue
        try:
            signal_of_record(record, defining_method(method))
        except SignalError:
            skipped += 1
            continue
        kept.append(record)
        if record_model is not None:
            models.add(record_model)
    if model is None and len(models) > 1:
        raise CalibrationError(
            f"records hold several models ({', '.join(sorted(models))}); choose one with --model"
        )
    return model or (models.pop() if models else None), kept, skipped
