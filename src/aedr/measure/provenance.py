"""Where a measurement's numbers come from: the exact weights, and everything that moves them.

A :class:`Provenance` names the autoencoder (its identity: a content hash of local weight files,
the revision of a hub snapshot), the measurement kind, the precision and device kind the passes
really ran in, every scoring setting that changes numbers, and the package version. Two
measurements with equal provenance are interchangeable; the score store keys on it, and a
calibration is applied only to measurements of the same provenance (the version aside, see
:meth:`Provenance.differences`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

MeasurementKind = Literal["reconstruction", "inversion"]
MEASUREMENT_KINDS: tuple[str, ...] = get_args(MeasurementKind)
"""``reconstruction``: AEDR's double reconstruction (loss1, loss2); ``inversion``: LatentTracer's
optimisation of a latent against the decoder (the smallest loss)."""

VERSION_FIELD = "aedr_version"
OMITTED_AT_DEFAULT = {"robust": "off", "resized_by": None}
"""Fields newer than most stored provenances, written only when set so that those stay as they
were (their records, calibration files and store keys)."""
LENIENT_FIELDS = (VERSION_FIELD, *OMITTED_AT_DEFAULT)
"""Fields that do not stop a calibration from applying: a newer release, and the degradation
corrections, which change nothing on the clean images calibrations are fitted on and exist to
bring degraded images back to them."""


class ProvenanceError(ValueError):
    """A provenance that is malformed, or measurements whose provenances do not agree."""


@dataclass(frozen=True)
class Provenance:
    """How one model's measurements were made; see the module docstring."""

    identity: str
    measurement: str = "reconstruction"
    dtype: str = "fp32"
    device: str = "cpu"  # the device kind: cpu, cuda, mps, ...
    latent: str = "mode"
    seed: int | None = None  # only with latent "sample": the mode draws no noise
    alignment: str = "crop"
    resize_filter: str | None = None  # only with alignment "resize"
    crop: int | None = None
    crops: int = 1
    homogeneity_levels: int = 32
    aedr_version: str = ""
    grid: str | None = None  # only with alignment "resize": "model" or "paper" (multiples of 8)
    noise: str | None = None  # only with latent "sample": "batch" or "image" (see ScoreSettings)
    exif: str = "transpose"  # or "ignore": pixels as stored, the authors' PIL path
    loss_dtype: str = "fp64"  # or "model": MSE reduced in the model's precision (nn.MSELoss)
    inversion_resize: bool = False  # inversion only: LatentTracer's 512 then native-size resize
    preset: str | None = None  # "paper" when the settings came from ``--paper``
    robust: str = "off"  # or "auto": degradation-aware measurement (aedr.measure.degradation)
    resized_by: float | None = None  # robust: the known factor images were resized by

    def __post_init__(self):
        # Settings that only exist with another one take their defaults there, so provenances
        # written before they existed (or stated by a user) compare equal to what they meant.
        implied = {"resize_filter": ("alignment", "resize", "bilinear"),
                   "grid": ("alignment", "resize", "model"),
                   "noise": ("latent", "sample", "batch")}  # fmt: skip
        for name, (owner, value, default) in implied.items():
            if getattr(self, owner) == value and getattr(self, name) is None:
                object.__setattr__(self, name, default)

    def as_dict(self) -> dict[str, Any]:
        """Every field, but the degradation settings only when set: records, calibrations and
        store keys written before they existed stay as they were."""
        return {
            name: value for name, value in asdict(self).items()
            if name not in OMITTED_AT_DEFAULT or value != OMITTED_AT_DEFAULT[name]
        }  # fmt: skip

    @classmethod
    def from_dict(
        cls, values: Any, source: str = "provenance", *, from_text: bool = False
    ) -> Provenance:
        """Validate a provenance read from a file (records, calibrations), or typed by a user
        (``from_text``: numbers may come as strings)."""
        from pydantic import ValidationError

        from aedr.schemas import ProvenanceFile, validation_message

        try:
            valid = ProvenanceFile.model_validate(values, strict=not from_text)
            return cls(**valid.model_dump())
        except ValidationError as exc:
            raise ProvenanceError(f"{source}: provenance {validation_message(exc)}") from None

    def digest(self) -> str:
        """A short digest of every field (the score store's key)."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]

    def differences(self, other: Provenance, *, version: bool = False) -> list[str]:
        """``field: mine vs theirs`` for each field that differs (``LENIENT_FIELDS`` only if
        asked): a calibration made by an older release, or without degradation corrections,
        still applies when nothing else changed."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
            for f in fields(self)
            if (version or f.name not in LENIENT_FIELDS)
            and getattr(self, f.name) != getattr(other, f.name)
        ]

    def without_identity(self) -> Provenance:
        return replace(self, identity="")


def common_provenance(provenances: list[Provenance]) -> Provenance:
    """The one provenance of records' ``provenances``; mixed ones are an error naming the
    difference."""
    if not provenances:
        raise ProvenanceError("no records with a provenance")
    first = provenances[0]
    for other in provenances[1:]:
        differences = first.differences(other, version=True)
        if differences:
            raise ProvenanceError(
                f"records of mixed provenance ({'; '.join(differences)}): fit each on records "
                "made one way"
            )
    return first
