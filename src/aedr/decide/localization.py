"""Deciding on local maps: the calibrated local threshold and the regions consistent with a model.

A map (``aedr.measure.evidence``) is low where the image lies on the model's decoder
manifold. Its threshold is the (1 - alpha) quantile of the map's values over the model's own
images, so a window of an image the model made is called inconsistent with it at rate alpha.
Regions are the connected areas below the threshold; ``partial`` (``aedr attribute``) names a
model when such a region covers at least ``PARTIAL_MIN_SHARE`` of an image that the model does not
accept as a whole.

>>> import numpy as np
>>> statistic = np.ones((10, 10), np.float32)
>>> statistic[2:6, 3:8] = -1.0
>>> [r.box for r in consistent_regions(statistic, 0.0)]
[(3, 2, 8, 6)]
>>> consistent_share(statistic, 0.0)
0.2
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from aedr.decide.calibration import DEFAULT_ALPHA
from aedr.errors import AedrError
from aedr.measure.evidence import check_window, image_map, local_map

if TYPE_CHECKING:
    from aedr.measure.record import Measurement

PARTIAL_MIN_SHARE = 0.05
"""Smallest share of the image a consistent region must cover for a ``partial`` verdict."""
MIN_REGION_SHARE = 0.01
"""Smallest share of the image reported as a region."""
SAMPLES_PER_IMAGE = 4096
"""Map values each calibration image contributes, on a regular grid (so images weigh alike)."""


class LocalCalibrationError(AedrError, ValueError):
    """Local maps that cannot be calibrated; the message says why."""


@dataclass(frozen=True)
class Region:
    """A connected area below the local threshold: its box (left, top, right, bottom), pixels
    right and bottom exclusive, and the share of the image it covers."""

    box: tuple[int, int, int, int]
    share: float

    def as_dict(self) -> dict:
        return asdict(self)


def map_samples(statistic: np.ndarray, count: int = SAMPLES_PER_IMAGE) -> np.ndarray:
    """About ``count`` values of a map on a regular grid."""
    step = max(1, int(np.sqrt(statistic.size / count)))
    return statistic[step // 2 :: step, step // 2 :: step].ravel()


def fit_local_threshold(
    samples: Iterable[np.ndarray], window: float, alpha: float = DEFAULT_ALPHA
) -> dict[str, float | int]:
    """The local section of a calibration, fitted on ``map_samples`` of the model's own images'
    maps (one array per image)."""
    if not 0.0 < alpha < 1.0:
        raise LocalCalibrationError(f"alpha must lie strictly between 0 and 1, not {alpha}")
    samples = [np.asarray(values, np.float32).ravel() for values in samples]
    if len(samples) < 2:
        raise LocalCalibrationError(
            f"a local threshold needs maps of at least 2 images, not {len(samples)}"
        )
    values = np.concatenate(samples)
    if not np.isfinite(values).all():
        raise LocalCalibrationError("a local map holds non-finite values")
    return {
        "window": check_window(window), "alpha": alpha,
        "threshold": float(np.quantile(values, 1.0 - alpha)),
        "n_images": len(samples), "n_values": int(values.size),
    }  # fmt: skip


def consistent_share(statistic: np.ndarray, threshold: float) -> float:
    """The share of the image whose local statistic is below the threshold."""
    return float(np.mean(statistic < threshold))


def consistent_regions(
    statistic: np.ndarray, threshold: float, min_share: float = MIN_REGION_SHARE
) -> list[Region]:
    """Connected regions below ``threshold`` covering at least ``min_share``, largest first."""
    from scipy.ndimage import find_objects, label

    labels, count = label(statistic < threshold)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    regions = []
    for index, box in enumerate(find_objects(labels)):
        share = float(sizes[index] / statistic.size)
        if box is not None and share >= min_share:
            rows, columns = box
            regions.append(Region((columns.start, rows.start, columns.stop, rows.stop), share))
    return sorted(regions, key=lambda r: -r.share)


def measurement_map(record: Measurement, window: float) -> np.ndarray:
    """The local statistic of a measurement kept with its evidence, on the image's pixels."""
    if record.evidence is None:
        raise LocalCalibrationError(f"{record.path}: measured without local maps")
    alignment = record.provenance.settings.alignment if record.provenance else "crop"
    if record.width is None or record.height is None:
        raise LocalCalibrationError(f"{record.path}: measured without its size")
    statistic = local_map(record.evidence, window)
    return image_map(statistic, record.width, record.height, alignment)
