"""One image measured by one model: the numbers the autoencoder passes produced, no decision.

A :class:`Measurement` holds loss1 and loss2 of the double reconstruction (or LatentTracer's
inversion loss), the evidence numbers taken from the same reconstructions, the image's
homogeneity and size, and its :class:`~aedr.measure.provenance.Provenance`. Every decision
statistic (``aedr.decide.statistics``) is computed from it later, so one scoring run serves them
all. ``MEASUREMENT_FIELDS`` is the order its records are written in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from aedr.measure.provenance import Provenance

MEASUREMENT_FIELDS = (
    "path", "model", "group", "measurement", "loss1", "loss2", "ratio", "highpass_log_ratio",
    "highpass_weight", "ac_log_ratio", "inversion_loss", "homogeneity", "width", "height",
    "content_sha256", "provenance", "jpeg_quality", "grey", "degradation", "error",
)  # fmt: skip


@dataclass
class Measurement:
    """One image measured by one model: numbers and provenance, no decision."""

    path: str
    model: str
    group: str = ""
    measurement: str = "reconstruction"
    loss1: float | None = None
    loss2: float | None = None
    ratio: float | None = None  # loss1 / loss2, checked finite when measured
    # the whole image's weighted high-pass log ratio (``aedr.measure.evidence``)
    highpass_log_ratio: float | None = None
    # the share of the image that carries that evidence: the mean weight of its pixels, from 0
    # (every pixel flat, reproduced by any decoder) to 1 (``aedr.measure.evidence``)
    highpass_weight: float | None = None
    # the log ratio of the residuals' AC energies in 8 x 8 blocks (``aedr.measure.reconstruction``)
    ac_log_ratio: float | None = None
    inversion_loss: float | None = None
    homogeneity: float | None = None
    width: int | None = None
    height: int | None = None
    content_sha256: str = ""
    provenance: Provenance | None = None
    # a colour JPEG's quality (IJG scale, from its luminance table): which of a calibration's
    # JPEG thresholds applies (``aedr.decide.calibration``); None for any other file
    jpeg_quality: int | None = None
    # whether no pixel has colour (``aedr.measure.images.is_grey``): made grey after generation,
    # decided at a calibration's thresholds for grey images; None where not known (older records)
    grey: bool | None = None
    # robust measurement: what was found and undone (``Degradation.as_record``), e.g.
    # {"resized_by": 1.5, "jpeg_quality": 75, "subsampling": "4:2:0"}
    degradation: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    # (2, H, W) per-pixel weighted evidence and weight on the model input's grid, kept only when
    # the Scorer was asked for local maps (``aedr.measure.evidence``); never saved with it
    evidence: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        values["provenance"] = self.provenance.as_dict() if self.provenance else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Measurement:
        known = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        if isinstance(known.get("provenance"), Mapping):
            known["provenance"] = Provenance.from_dict(known["provenance"])
        if not isinstance(known.get("degradation", {}), Mapping):
            known["degradation"] = {}  # a description in words (records before 0.5), or none
        known["degradation"] = dict(known.get("degradation") or {})
        known["grey"] = read_grey(known.get("grey"))
        return cls(**known)


def read_grey(value: Any) -> bool | None:
    """A record's ``grey``: a bool, or its text in a CSV cell ("True", "False"); None where
    the record does not say (written before it existed).

    >>> read_grey(True), read_grey("False"), read_grey(" true"), read_grey(None), read_grey("")
    (True, False, True, None, None)
    """
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False}.get(text)


def display_path(path: str | os.PathLike) -> str:
    """A printable path: undecodable bytes in file names become backslash escapes, not errors."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
