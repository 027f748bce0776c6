"""Where a measurement's numbers come from: the exact weights, and everything that moves them.

A :class:`Provenance` names the autoencoder (its identity: a content hash of local weight files,
the revision of a hub snapshot), the precision and device kind the passes really ran in, the
measurement settings (``aedr.measure.settings``, canonical: settings that cannot matter at their
defaults) and the measurement version. Two measurements with equal provenance are
interchangeable; the score store keys on it, and a calibration is applied only to measurements
of the same provenance (the lenient settings and the version aside, see
:meth:`Provenance.differences`). The package version that measured is kept for information; it
keys nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from aedr.errors import AedrError
from aedr.measure.settings import MEASUREMENT_VERSION, ScoreSettings, SettingsError, declarations
from aedr.seals import digest_of

VERSION_FIELD = "measurement_version"
PACKAGE_FIELD = "aedr_version"
LENIENT_FIELDS = (
    VERSION_FIELD, PACKAGE_FIELD, *(d.name for d, s in declarations() if s.lenient),
)  # fmt: skip
"""Fields that do not stop a calibration from applying: another version, and the degradation
corrections, which change nothing on the clean images calibrations are fitted on and exist to
bring degraded images back to them."""


class ProvenanceError(AedrError, ValueError):
    """A provenance that is malformed, or measurements whose provenances do not agree."""


@dataclass(frozen=True)
class Provenance:
    """How one model's measurements were made; see the module docstring."""

    identity: str
    settings: ScoreSettings = field(default_factory=lambda: ScoreSettings().canonical())
    dtype: str = "fp32"
    device: str = "cpu"  # the device kind: cpu, cuda, mps, ...
    measurement_version: int = MEASUREMENT_VERSION
    aedr_version: str = ""  # the package that measured: information only

    def __post_init__(self):
        object.__setattr__(self, "settings", self.settings.canonical())

    def as_dict(self) -> dict[str, Any]:
        """The flat record written to files: weights, the recorded settings, precision, device
        and versions (the measurement version only where it is known)."""
        values = {"identity": self.identity, **self.settings.recorded(), "dtype": self.dtype,
                  "device": self.device, PACKAGE_FIELD: self.aedr_version}  # fmt: skip
        if self.measurement_version:
            values[VERSION_FIELD] = self.measurement_version
        return values

    @classmethod
    def from_dict(
        cls, values: Any, source: str = "provenance", *, from_text: bool = False
    ) -> Provenance:
        """Validate a provenance read from a file (records, calibrations), or typed by a user
        (``from_text``: numbers may come as strings). A provenance written before measurement
        versions were kept reads as version 0."""
        from pydantic import ValidationError

        from aedr.schemas import provenance_schema, validation_message

        try:
            valid = provenance_schema().model_validate(values, strict=not from_text).model_dump()
            fixed = {name: valid.pop(name) for name in ("identity", "dtype", "device",
                                                        VERSION_FIELD, PACKAGE_FIELD)}  # fmt: skip
            return cls(settings=ScoreSettings.from_recorded(valid), **fixed)
        except ValidationError as exc:
            raise ProvenanceError(f"{source}: provenance {validation_message(exc)}") from None
        except SettingsError as exc:
            raise ProvenanceError(f"{source}: provenance {exc}") from None

    def digest(self) -> str:
        """A short digest of what decides the numbers (the score store's key): every field but
        the package version."""
        return digest_of({k: v for k, v in self.as_dict().items() if k != PACKAGE_FIELD})[:20]

    def differences(self, other: Provenance, *, version: bool = False) -> list[str]:
        """``field: mine vs theirs`` for each recorded field that differs (``LENIENT_FIELDS``
        only if asked; the package version never): a calibration made by an older release, or
        without degradation corrections, still applies when nothing else changed."""
        mine, theirs = self._compared(), other._compared()
        return [
            f"{name}: {mine.get(name)!r} vs {theirs.get(name)!r}"
            for name in dict.fromkeys([*mine, *theirs])
            if name != PACKAGE_FIELD
            and (version or name not in LENIENT_FIELDS)
            and mine.get(name) != theirs.get(name)
        ]

    def _compared(self) -> dict[str, Any]:
        return {**self.as_dict(), "robust": self.settings.robust,
                VERSION_FIELD: self.measurement_version}  # fmt: skip

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
