"""The measurement settings, declared once.

Every field of :class:`ScoreSettings` carries its :class:`Setting`: the values it takes, when it
changes a measurement, how a provenance records it and how the command line offers it. The
settings' validation, the provenance (``aedr.measure.provenance``), the provenance's file schema
(``aedr.schemas``) and the CLI flags (``aedr.cli``) are all derived from these declarations: a
new setting is one field here plus the code that uses it.

``MEASUREMENT_VERSION`` says which numbers this code measures for given settings and weights. It
changes only when the numbers do, and keys the score store (not the package version: a release
that changes no number keeps every stored measurement).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, get_args

from aedr.errors import AedrError
from aedr.measure.degradation import Robust
from aedr.measure.distances import Distance
from aedr.measure.homogeneity import LEVELS
from aedr.measure.images import RESIZE_FILTER, RESIZE_FILTERS

if TYPE_CHECKING:
    from aedr.measure.provenance import Provenance

MEASUREMENT_VERSION = 1
"""1: the numbers of aedr 0.4.0 (records made before versions were kept read as 0)."""
MeasurementKind = Literal["reconstruction", "inversion"]
EnlargementMode = Literal["estimate", "off"]
MEASUREMENT_KINDS: tuple[str, ...] = get_args(MeasurementKind)
"""``reconstruction``: AEDR's double reconstruction (loss1, loss2); ``inversion``: LatentTracer's
optimisation of a latent against the decoder (the smallest loss)."""
PAPER_SEED = 1
EVERY_PIXEL = 0
"""The ``border`` of measurements of every pixel: all made before aedr 0.12, and ``--paper``."""
Group = Literal["measurement", "evidence", "correction", "paper", "ablation", "sampling"]
GROUP_TITLES: dict[str, str] = {
    "measurement": "measurement (how images are measured; recorded in every provenance)",
    "evidence": "the high-pass evidence (what highpass reads)",
    "correction": "degradation-aware measurement (what --robust auto looks for)",
    "paper": "paper reproduction (each part of --paper on its own)",
    "ablation": "the paper's ablations (research settings; the defaults decide best)",
    "sampling": "crops of large images",
}


class SettingsError(AedrError, ValueError):
    """Scoring settings that cannot be run (a negative crop, an unknown latent mode, ...)."""


@dataclass(frozen=True)
class Setting:
    """How one measurement setting is validated, recorded and offered.

    ``applies`` says when the setting changes a measurement; elsewhere a provenance records
    ``unused`` for it (so settings that cannot matter never split the store), and where
    ``requires`` names the condition, a value other than the default is refused. ``lenient``
    settings do not stop a calibration from applying (corrections that change nothing on the
    clean images calibrations are fitted on); values in ``omit`` are left out of a recorded
    provenance, so that provenances written before the setting existed keep their meaning and
    key.
    """

    help: str
    kind: type = str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], bool] | None = None
    applies: Callable[[ScoreSettings], bool] | None = None
    unused: Any = None
    requires: str = ""
    lenient: bool = False
    omit: tuple[Any, ...] = ()
    flag: str | None = None  # None: set through another option (--statistic, --paper)
    shortcut: tuple[str, Any, str] | None = None  # (flag, value, help): one value, one flag
    group: Group = "measurement"
    metavar: str | None = None

    def allowed(self, value: Any) -> bool:
        """Whether ``value`` is one this setting takes (its type, choices, bounds and check)."""
        if self.choices:
            return value in self.choices
        if value is None:
            return False
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
        elif not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        return self.check is None or self.check(value)

    def describe(self) -> str:
        """The values allowed, in words (for error messages)."""
        if self.choices:
            return "one of " + ", ".join(str(choice) for choice in self.choices)
        bounds = {int: "a whole number", float: "a number", bool: "true or false"}
        words = bounds.get(self.kind, "text")
        if self.minimum is not None and self.maximum is not None:
            words += f" from {_number(self.minimum)} to {_number(self.maximum)}"
        elif self.minimum is not None:
            words += f" of at least {_number(self.minimum)}"
        return words


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def declare(default: Any, **declaration: Any) -> Any:
    """A ScoreSettings field with its :class:`Setting`."""
    return field(default=default, metadata={"setting": Setting(**declaration)})


def _resize(settings: ScoreSettings) -> bool:
    return settings.alignment == "resize"


def _sampled(settings: ScoreSettings) -> bool:
    return settings.latent == "sample"


def _enlargement_applies(settings: ScoreSettings) -> bool:
    return settings.robust_mode() != "off" and settings.resized_by is None


@dataclass(frozen=True)
class ScoreSettings:
    """Everything besides the autoencoder and its precision that changes a measurement.

    Each field's declaration says what it does (``aedr settings`` prints them; docs/usage.md).
    ``robust=None`` (the default) means ``auto`` where it applies (the whole image's double
    reconstruction, crop alignment, no ``crop`` sampling, no local maps) and ``off`` elsewhere
    (paper mode among them): :meth:`resolved` decides, and a scorer measures resolved settings.
    On clean images on the grid ``auto`` measures exactly what ``off`` does. :meth:`paper` is
    the authors' pipeline.
    """

    measurement: MeasurementKind = declare(
        "reconstruction",
        help="reconstruction (AEDR's double reconstruction) or inversion (LatentTracer's "
        "latent optimisation); chosen by the statistic",
    )  # fmt: skip
    latent: Literal["mode", "sample"] = declare(
        "mode", flag="--latent", group="paper",
        help="posterior mode (deterministic, default) or a seeded sample like the authors' script",
    )  # fmt: skip
    seed: int = declare(
        0, kind=int, minimum=0, maximum=2**63 - 1, applies=_sampled, flag="--seed", group="paper",
        help="seed of the sampled latents (default 0)",
    )  # fmt: skip
    alignment: Literal["crop", "resize"] = declare(
        "crop", flag="--alignment", group="paper",
        shortcut=("--resize", "resize", "same as --alignment resize"),
        help="crop each side to the model's size multiple (default) or resize to the nearest one",
    )  # fmt: skip
    homogeneity_levels: int = declare(
        LEVELS, kind=int, choices=(2, 4, 8, 16, 32, 64, 128, 256),
        help="grey levels of the GLCM behind the homogeneity H (default 32, the authors')",
    )  # fmt: skip
    crop: int | None = declare(
        None, kind=int, minimum=1, flag="--crop", group="sampling", metavar="N",
        help="measure N x N crops on the autoencoder's grid instead of the whole image",
    )  # fmt: skip
    crops: int = declare(
        1, kind=int, minimum=1, applies=lambda s: s.crop is not None, unused=1,
        flag="--crops", group="sampling", metavar="K",
        help="with --crop: K crops spread evenly (default 1)",
    )  # fmt: skip
    resize_filter: str = declare(
        RESIZE_FILTER, choices=tuple(RESIZE_FILTERS), applies=_resize, flag="--resize-filter",
        group="paper",
        help="with --resize: the filter (default bilinear; the authors' Pillow default is bicubic)",
    )  # fmt: skip
    grid: Literal["model", "paper"] = declare(
        "model", applies=_resize, flag="--grid", group="paper",
        help="with --resize: round to the model's grid (default) or, like the authors, to "
        "multiples of 8 with Kandinsky 2.1 forced to 512x512",
    )  # fmt: skip
    noise: Literal["batch", "image"] = declare(
        "batch", applies=_sampled, flag="--noise", group="paper",
        help="with --latent sample: noise drawn per batch on the model's device (default), or "
        "per image in input order from one CPU generator (independent of batch size and device)",
    )  # fmt: skip
    exif: Literal["transpose", "ignore"] = declare(
        "transpose", flag="--exif", group="paper",
        help="apply the EXIF orientation to the pixels (default) or not (the authors' PIL path)",
    )  # fmt: skip
    loss_dtype: Literal["fp64", "model"] = declare(
        "fp64", flag="--loss-dtype", group="paper",
        help="reduce the MSEs in float64 (default) or in the model's precision (nn.MSELoss)",
    )  # fmt: skip
    distance: Distance = declare(
        "l2", omit=("l2", None), flag="--distance", group="ablation",
        applies=lambda s: s.measurement == "reconstruction",
        requires="to the reconstruction measurement",
        help="what loss1 and loss2 measure, with the authors' criteria: l2 (MSE, the paper's, "
        "default), l1, ssim (1 - SSIM), psnr (-PSNR) or lpips (AlexNet; its weights must be "
        "local, docs/method.md). Read by the statistics of the losses (aedr, fitted, ratio, "
        "single-loss), not by highpass or ac; robust measurement needs l2",
    )  # fmt: skip
    border: int = declare(
        16, kind=int, minimum=0, maximum=4096, omit=(EVERY_PIXEL,), unused=EVERY_PIXEL,
        flag="--border", metavar="PX",
        group="evidence", applies=lambda s: s.measurement == "reconstruction",
        help="leave the PX pixels along each edge of the measured image (at most a quarter of "
        "a side) out of highpass's means: a decoder reconstructs a crop worst at its edges, so "
        "they make a smaller view of its image read less like it (default 16; 0: every pixel, "
        "as before aedr 0.12 and in --paper)",
    )  # fmt: skip
    inversion_resize: bool = declare(
        False, kind=bool, applies=lambda s: s.measurement == "inversion", unused=False,
        requires="to the inversion measurement (--statistic latenttracer)",
        flag="--inversion-resize", group="paper",
        help="with --statistic latenttracer: LatentTracer's input resizing (512x512 by area, "
        "then the family's native size)",
    )  # fmt: skip
    preset: Literal["paper"] | None = declare(
        None, help="paper when the settings came from --paper"
    )
    robust: Robust | None = declare(
        None, lenient=True, omit=("off",), flag="--robust",
        help="auto: JPEG files compared through their own quantisation tables, images off the "
        "decoder's grid measured at the grid phase found by search (docs/method.md); on clean "
        "images on the grid the same as off. off: every image as it is. Default: auto where it "
        "applies, off with --paper, --resize, --crop, a --distance other than l2, --statistic "
        "latenttracer and local maps",
    )  # fmt: skip
    resized_by: float | None = declare(
        None, kind=float, minimum=0.1, maximum=10.0, check=lambda f: f != 1, lenient=True,
        omit=(None,), applies=lambda s: s.robust_mode() != "off",
        requires="to robust measurement (the whole image's double reconstruction with crop "
        "alignment, no --crop sampling)", flag="--resized-by", metavar="FACTOR",
        help="the images were resized by FACTOR (0.1 to 10, not 1) after generation: each is "
        "mapped back onto the decoder's grid, measured there and mapped forward again; "
        "calibrate resizes its images by FACTOR first",
    )  # fmt: skip

    enlargement: EnlargementMode = declare(
        "estimate", lenient=True, omit=("estimate",), unused="estimate",
        applies=_enlargement_applies, flag="--enlargement", group="correction",
        help="estimate (default): an image enlarged after generation (by 1.09 to 2) is found by "
        "its interpolation's periodic trace and mapped back by the factor found, as "
        "--resized-by does; off: only a stated --resized-by is undone. With robust measurement "
        "and no --resized-by (docs/method.md)",
    )  # fmt: skip

    def __post_init__(self):
        for declared, setting in declarations():
            value = getattr(self, declared.name)
            if value is None and declared.default is None:
                continue
            if not setting.allowed(value):
                raise SettingsError(f"{declared.name} must be {setting.describe()}, not {value!r}")
        for declared, setting in declarations():
            value = getattr(self, declared.name)
            if setting.requires and value != declared.default and not setting.applies(self):
                raise SettingsError(f"{declared.name} applies only {setting.requires}")
        if self.robust == "auto" and not self._robust_applies():
            raise SettingsError(
                "robust measurement corrects the double reconstruction of the whole image on the "
                "decoder's grid: it needs the reconstruction measurement with crop alignment, "
                "no --crop sampling and the l2 distance"
            )

    def _robust_applies(self) -> bool:
        return (self.measurement, self.alignment, self.crop, self.distance) == (
            "reconstruction", "crop", None, "l2",
        )  # fmt: skip

    def estimates_enlargement(self) -> bool:
        """Whether a measurement with these settings looks for an enlargement to undo.

        >>> ScoreSettings().estimates_enlargement(), ScoreSettings.paper().estimates_enlargement()
        (True, False)
        """
        return self.enlargement == "estimate" and _enlargement_applies(self)

    def searches_phase(self) -> bool:
        """Whether a measurement with these settings searches the grid phase of an image off the
        decoder's grid (robust measurement, no stated resize).

        >>> ScoreSettings().searches_phase(), ScoreSettings(resized_by=1.5).searches_phase()
        (True, False)
        """
        return _enlargement_applies(self)

    def robust_mode(self, local_maps: bool = False) -> Robust:
        """``robust`` as measured: as given, or (``None``) auto where it applies."""
        if self.robust is not None:
            return self.robust
        return "auto" if self._robust_applies() and not local_maps else "off"

    def resolved(self, local_maps: bool = False) -> ScoreSettings:
        """These settings with ``robust`` decided: as given, or (``None``) ``auto`` where it
        applies and ``off`` where it does not: resize alignment (paper mode), ``crop`` sampling,
        the inversion measurement, and ``local_maps``, which are drawn on the image's own grid.

        >>> ScoreSettings().resolved().robust, ScoreSettings.paper().resolved().robust
        ('auto', 'off')
        >>> ScoreSettings().resolved(local_maps=True).robust
        'off'
        """
        return replace(self, robust=self.robust_mode(local_maps))

    def canonical(self) -> ScoreSettings:
        """These settings as a provenance records them: ``robust`` resolved, and every setting
        that does not apply at its default (a seed without sampling changes nothing).

        >>> ScoreSettings(seed=5) == ScoreSettings(seed=5).canonical()
        False
        >>> ScoreSettings(seed=5).canonical() == ScoreSettings().canonical()
        True
        """
        resolved = self.resolved()
        unused: dict[str, Any] = {
            declared.name: declared.default
            for declared, setting in declarations()
            if setting.applies is not None and not setting.applies(resolved)
        }
        return replace(resolved, **unused)

    def recorded(self) -> dict[str, Any]:
        """The settings as a provenance writes them: canonical, with each setting that does not
        apply as its ``unused`` value and values in a setting's ``omit`` left out."""
        canonical = self.canonical()
        values = {}
        for declared, setting in declarations():
            value = getattr(canonical, declared.name)
            if setting.applies is not None and not setting.applies(canonical):
                value = setting.unused
            if value in setting.omit:
                continue
            values[declared.name] = value
        return values

    @classmethod
    def from_recorded(cls, values: dict[str, Any]) -> ScoreSettings:
        """The settings a provenance recorded (``recorded``'s inverse): a setting absent or null
        takes its default, or the value of its ``omit``."""
        given = {}
        for declared, setting in declarations():
            value = values.get(declared.name)
            if value is not None:
                given[declared.name] = value
            elif setting.omit:  # absent: what provenances meant before the setting existed
                given[declared.name] = setting.omit[0]
        return cls(**given).canonical()

    def provenance(self, identity: str, dtype: str = "fp32", device: str = "cpu") -> Provenance:
        """The provenance of measurements made with these settings on those weights, by this
        package."""
        from aedr import __version__
        from aedr.measure.provenance import Provenance

        return Provenance(identity, self, dtype, device, MEASUREMENT_VERSION, __version__)

    @classmethod
    def paper(cls, measurement: MeasurementKind = "reconstruction") -> ScoreSettings:
        """The authors' ``cal_loss_ratio.py``: bicubic resize to multiples of 8, latents sampled
        from one CPU generator seeded 1 per image in order, pixels as PIL stores them, MSE in the
        model's precision. (Their fp32/bf16 choice and codebook decoding are load options:
        ``dtype="paper"``, ``quantize=True``; their statistic is ``aedr``.) For the inversion
        measurement it is LatentTracer's published input resizing."""
        if measurement == "inversion":
            return cls(measurement="inversion", inversion_resize=True, preset="paper")
        return cls(
            measurement=measurement, latent="sample", seed=PAPER_SEED, alignment="resize",
            resize_filter="bicubic", grid="paper", noise="image", exif="ignore",
            loss_dtype="model", border=EVERY_PIXEL, preset="paper",
        )  # fmt: skip


@functools.cache
def declarations() -> tuple[tuple[Field, Setting], ...]:
    """Each measurement setting's dataclass field and declaration, in declaration order; a
    setting typed as a ``Literal`` takes its values from the type."""
    hints = typing.get_type_hints(ScoreSettings)
    declared = []
    for setting_field in fields(ScoreSettings):
        setting = setting_field.metadata["setting"]
        if not setting.choices:
            values = [a for arm in _arms(hints[setting_field.name]) for a in get_args(arm)
                      if typing.get_origin(arm) is Literal]  # fmt: skip
            if values:
                optional = type(None) in _arms(hints[setting_field.name])
                setting = replace(setting, choices=(None, *values) if optional else tuple(values))
        declared.append((setting_field, setting))
    return tuple(declared)


def _arms(hint: Any) -> tuple[Any, ...]:
    """The members of a union type (the type itself when it is not one)."""
    return get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
