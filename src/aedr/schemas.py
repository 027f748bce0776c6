"""The file formats aedr reads back, as validation schemas (pydantic): types, ranges, sizes.

A calibration or a measurement's provenance read from a file is validated here before anything
uses it, so a malformed field is an error that names the field rather than a crash later. Only
the modules that read files import this one (pydantic costs a little start-up time).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    create_model,
    model_validator,
)

from aedr.decide.statistics import STATISTIC_NAMES
from aedr.measure.settings import declarations

MAX_SIGNALS = 1_000_000
"""Largest calibration kept (signals): a file beyond it is refused rather than loaded for minutes."""
MAX_CALIBRATION_BYTES = 64 * 2**20
"""Largest calibration file read (about three times what MAX_SIGNALS signals take)."""

Name = Annotated[str, Field(min_length=1, max_length=1000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@functools.cache
def provenance_schema() -> type[BaseModel]:
    """A measurement's provenance (``aedr.measure.provenance.Provenance``), derived from the
    measurement settings' declarations (``aedr.measure.settings``): a setting may be absent or
    null (its default, or the value provenances meant before it existed)."""
    fixed: dict[str, Any] = {
        "identity": (Name, ...),
        "dtype": (Literal["fp32", "bf16", "fp16"], "fp32"),
        "device": (Annotated[str, Field(min_length=1, max_length=32)], "cpu"),
        "aedr_version": (Annotated[str, Field(max_length=100)], ""),
        "measurement_version": (Annotated[int, Field(ge=0)], 0),
    }
    for declared, setting in declarations():
        if setting.choices:
            values = tuple(choice for choice in setting.choices if choice is not None)
            kind: Any = Literal[values]  # type: ignore[valid-type]
        else:
            kind = Annotated[setting.kind, Field(ge=setting.minimum, le=setting.maximum)]
        fixed[declared.name] = (kind | None, None)
    return create_model("ProvenanceFile", __base__=_Strict, **fixed)


class LocalCalibrationFile(_Strict):
    """A calibration's local-map threshold (``aedr calibrate --local``)."""

    window: Annotated[float, Field(gt=0.0, le=10_000.0)]
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)]
    threshold: FiniteFloat
    n_images: Annotated[int, Field(ge=2)]
    n_values: Annotated[int, Field(ge=2)]


class NegativesFile(_Strict):
    """A calibration's measurements of images the model did not make."""

    sources: Annotated[list[Name], Field(min_length=1, max_length=100)]
    n: Annotated[int, Field(ge=1)]
    signals: Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_SIGNALS)]
    keys: list[Annotated[str, Field(max_length=64)]]
    # why each negative has too little evidence to be accepted ("" where it has enough); left
    # out when none falls short
    shortfalls: list[Annotated[str, Field(max_length=1000)]] | None = None
    # whether each negative is grey (no pixel has colour); left out when none is
    grey: list[bool] | None = None

    @model_validator(mode="after")
    def _counts_agree(self) -> NegativesFile:
        if not self.n == len(self.signals) == len(self.keys):
            raise ValueError(
                f"n is {self.n} but there are {len(self.signals)} signals and {len(self.keys)} keys"
            )
        if self.shortfalls is not None and len(self.shortfalls) != self.n:
            raise ValueError(f"n is {self.n} but there are {len(self.shortfalls)} shortfalls")
        if self.grey is not None and len(self.grey) != self.n:
            raise ValueError(f"n is {self.n} but there are {len(self.grey)} grey flags")
        return self


class _Signals(_Strict):
    """A fitted threshold's signals, counted by ``n``."""

    n: Annotated[int, Field(ge=2)]
    signals: Annotated[list[FiniteFloat], Field(min_length=2, max_length=MAX_SIGNALS)]

    @model_validator(mode="after")
    def _counts_agree(self):
        if self.n != len(self.signals):
            raise ValueError(f"n is {self.n} but there are {len(self.signals)} signals")
        return self


class ConditionThresholdFile(_Signals):
    """A calibration's threshold for images in one condition: JPEG files of one quality
    (``aedr calibrate --jpeg-qualities``), images enlarged by one factor (``--enlargements``),
    JPEG files enlarged by one factor, then re-encoded at one quality (``--chains``), grey
    images."""

    threshold: FiniteFloat
    summary: dict[str, float]
    negatives: NegativesFile | None = None
    # where the JPEG thresholds read another statistic than the calibration's, and its parameters
    statistic: Literal[STATISTIC_NAMES] | None = None  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = None


JpegQuality = Annotated[str, Field(pattern=r"^(100|[1-9][0-9]?)$")]
EnlargementFactor = Annotated[str, Field(pattern=r"^(1\.[0-9]{0,3}[1-9]|2)$")]  # above 1, at most 2


ChainFile = Annotated[
    dict[JpegQuality, ConditionThresholdFile], Field(min_length=1, max_length=100)
]
"""A calibration's thresholds for JPEG files enlarged by one factor, by quality."""


class SizeThresholdFile(_Signals):
    """A calibration's threshold for centre crops of one side of its own images."""

    threshold: FiniteFloat
    summary: dict[str, float]


class SizesFile(_Strict):
    """A calibration's thresholds for smaller images (``Calibration.at_size``)."""

    side: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    crops: Annotated[
        dict[Annotated[str, Field(pattern=r"^[1-9][0-9]{0,4}$")], SizeThresholdFile],
        Field(min_length=1, max_length=20),
    ]


class CalibrationFile(_Signals):
    """A calibration file (``aedr calibrate --out``), format 2."""

    format: Literal[2]
    model: Name
    statistic: Literal[STATISTIC_NAMES]  # type: ignore[valid-type]
    threshold: FiniteFloat
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)]
    summary: dict[str, float]
    provenance: dict[str, Any]  # validated by provenance_schema when read
    parameters: dict[str, Any] = {}
    provenance_assumed: bool = False
    tuning: dict[str, Any] = {}
    local: LocalCalibrationFile | None = None
    negatives: NegativesFile | None = None
    jpeg: Annotated[dict[JpegQuality, ConditionThresholdFile], Field(max_length=100)] | None = None
    sizes: SizesFile | None = None
    enlargements: (
        Annotated[dict[EnlargementFactor, ConditionThresholdFile], Field(max_length=20)] | None
    ) = None
    grey: ConditionThresholdFile | None = None
    chains: Annotated[dict[EnlargementFactor, ChainFile], Field(max_length=20)] | None = None
    aedr_version: Annotated[str, Field(max_length=100)] = ""
    created: Annotated[str, Field(max_length=100)] = ""
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    signature: dict[str, Annotated[str, Field(max_length=200)]] | None = None


def validation_message(error: ValidationError, limit: int = 4) -> str:
    """The first few problems of ``error``, each as ``field: what is wrong``."""
    problems = [
        f"{'.'.join(map(str, item['loc'])) or 'file'}: {item['msg']}"
        for item in error.errors()[:limit]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
