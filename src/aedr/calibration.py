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
    aedr_version: str = ""
    created: str = ""
    format: int = CALIBRATION_FORMAT

    def belongs(self, signal: float) -> bool:
        return signal < self.threshold

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
        aedr_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def signal_of_record(record: Mapping[str, Any]) -> float:
    """A record's signal, or one computed from its loss1, loss2 and homogeneity columns."""
    if record.get("signal") is not None:
        return float(record["signal"])
    try:
        ratio = loss_ratio(float(record["loss1"]), float(record["loss2"]))
        return calibrated_signal(ratio, float(record["homogeneity"]))
    except (KeyError, TypeError) as exc:
        raise CalibrationError(
            "record has neither a signal nor loss1, loss2 and homogeneity"
        ) from exc


def signals_from_records(
    records: Iterable[Mapping[str, Any]], model: str | None = None
) -> tuple[str | None, list[float], int]:
    """(model, signals, skipped errors) from score records of belonging images.

    Records of other models are ignored when ``model`` is given; without it the records must all be
    of one model (or carry no model column, like the authors' loss files).
    """
    signals, skipped, models = [], 0, set()
    for record in records:
        record_model = record.get("model")
        if model is not None and record_model not in (None, model):
            continue
        if record.get("error"):
            skipped += 1
            continue
        try:
            signals.append(signal_of_record(record))
        except SignalError:
            skipped += 1
            continue
        if record_model is not None:
            models.add(record_model)
    if model is None and len(models) > 1:
        raise CalibrationError(
            f"records hold several models ({', '.join(sorted(models))}); choose one with --model"
        )
    return model or (models.pop() if models else None), signals, skipped
