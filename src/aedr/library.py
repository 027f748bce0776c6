"""The calibration library: calibrations kept for the user, found by how they were measured.

``aedr attribute`` without ``--calibration`` decides each candidate with the library's
calibration of its exact weights, settings and statistic, and builds a missing one from the
autoencoder alone (``build_calibration``: decoder-made images of the reference photos, see
``aedr.measure.default_photos.reference_crops``). A calibration made from the model's own images
and added by the user (``aedr calibrate ... --add``) takes precedence over a built one.

A calibration is filed as ``<model>.<statistic>.<key>.<origin>.json``: ``key`` is the digest of
the provenance its measurements had (weights identity, precision, device kind, measurement
settings and version), so changed weights or settings find no calibration and get a new one,
never the old; ``origin`` is ``own`` or ``built``. Files are written atomically; one that no
longer loads (edited, torn) is refused with the command that removes it, or, when built, built
again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from aedr.decide.calibration import Calibration, CalibrationError
from aedr.decide.statistics import DEFAULT_STATISTIC
from aedr.errors import AedrError
from aedr.measure.provenance import Provenance
from aedr.measure.settings import EVERY_PIXEL

if TYPE_CHECKING:
    from aedr.measure.record import Measurement
    from aedr.measure.scorer import Scorer
    from aedr.workflows import CalibrationRun

LIBRARY_ENV = "AEDR_CALIBRATIONS"
ORIGINS = ("own", "built")
"""Where a calibration's belonging images came from, in order of precedence."""
BUILT_IMAGES = 40
"""Decoder-made images a built calibration is fitted on (docs/results/zero-setup.md)."""


class LibraryError(AedrError):
    """A library calibration that cannot be used (damaged, or not this model's)."""


def own_provenance(calibration: Calibration) -> Provenance:
    """The provenance a calibration from the user's images is filed under: its measurements'
    own. One whose provenance was assumed (records without one) names no weights to file it by."""
    if calibration.provenance_assumed:
        raise LibraryError(
            f"the calibration of {calibration.model!r} was fitted on records whose provenance was "
            "assumed: the library files calibrations by the weights they were measured with",
            hint="calibrate from the model's images (PATHS with --model) to add it",
        )
    return calibration.measurement_provenance


def default_library_folder() -> Path:
    """``$AEDR_CALIBRATIONS``, else ``calibrations`` beside the score store
    (``$XDG_CACHE_HOME/aedr``, else ``~/.cache/aedr``)."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV])
    from aedr.measure.store import default_store_path

    return default_store_path().parent / "calibrations"


@dataclass(frozen=True)
class LibraryEntry:
    """One calibration file of the library, as its name describes it."""

    path: Path
    model: str
    statistic: str
    key: str
    origin: str

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def of_path(cls, path: Path) -> LibraryEntry | None:
        match = re.fullmatch(r"(.+)\.([a-z-]+)\.([0-9a-f]{20})\.(own|built)\.json", path.name)
        return cls(path, *match.groups()) if match else None


def _file_name(model: str, statistic: str, key: str, origin: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", model).strip("_") or "model"
    return f"{safe}.{statistic}.{key}.{origin}.json"


class CalibrationLibrary:
    """The calibrations in ``folder`` (default: ``default_library_folder()``)."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_library_folder()

    def entries(self) -> list[LibraryEntry]:
        """Every calibration file, by model, statistic and precedence."""
        if not self.folder.is_dir():
            return []
        found = [LibraryEntry.of_path(p) for p in self.folder.iterdir() if p.is_file()]
        entries = [e for e in found if e is not None]
        return sorted(entries, key=lambda e: (e.model, e.statistic, ORIGINS.index(e.origin)))

    def find(
        self,
        model: str,
        provenance: Provenance,
        statistic: str = DEFAULT_STATISTIC,
        on_damaged: Callable[[str], None] | None = None,
        origins: Sequence[str] = ORIGINS,
    ) -> tuple[Calibration, LibraryEntry] | None:
        """The calibration of ``model`` measured with ``provenance`` and read by ``statistic``:
        the user's own before a built one (of ``origins``); None when there is none. A built
        file that no longer loads, or was built before calibrations carried thresholds for
        smaller, enlarged or grey images or JPEG files (enlarged or not), or told its grey negatives apart, is removed (and
        ``on_damaged`` told why), so that it is built again; a damaged own file is an error
        naming it (an own file from before those decides as it did then, with a caution where
        its thresholds lack: ``Calibration.predates_size_thresholds``,
        ``predates_enlargement_thresholds``, ``predates_grey_thresholds``,
        ``predates_jpeg_thresholds``, ``predates_chain_thresholds``,
        ``predates_negative_kinds``)."""
        key = provenance.digest()
        for origin in origins:
            path = self.folder / _file_name(model, statistic, key, origin)
            if not path.is_file():
                continue
            entry = LibraryEntry(path, model, statistic, key, origin)
            try:
                calibration = Calibration.load(path)
                calibration.check_provenance(provenance)
                if (calibration.model, calibration.statistic) != (model, statistic):
                    raise CalibrationError(
                        f"{path} holds the {calibration.statistic} calibration of "
                        f"{calibration.model!r}, not {statistic} of {model!r}"
                    )
                missing = [
                    what for what, lacks in (
                        ("thresholds for smaller images", calibration.predates_size_thresholds),
                        ("thresholds for enlarged images",
                         calibration.predates_enlargement_thresholds),
                        ("thresholds for grey images", calibration.predates_grey_thresholds),
                        ("thresholds for JPEG files", calibration.predates_jpeg_thresholds),
                        ("thresholds for JPEG files found enlarged",
                         calibration.predates_chain_thresholds),
                        ("its grey negatives told apart", calibration.predates_negative_kinds),
                    ) if lacks
                ]  # fmt: skip
                if origin == "built" and missing:
                    version = calibration.aedr_version or "before 0.2"
                    raise CalibrationError(
                        f"built by aedr {version}, without {' or '.join(missing)}"
                    )
            except CalibrationError as exc:
                if origin == "own":
                    raise LibraryError(
                        f"the library's calibration {path} cannot be used: {exc}",
                        hint=f"remove it (aedr calibrations remove {path.name}) and add it again",
                    ) from None
                if on_damaged is not None:
                    on_damaged(f"{path.name} cannot be used ({exc}); building it again")
                path.unlink(missing_ok=True)
                continue
            return calibration, entry
        return None

    def add(self, calibration: Calibration, provenance: Provenance, origin: str) -> Path:
        """File ``calibration`` (measured with ``provenance``) as ``origin``, replacing the one
        filed so before (atomically, as every calibration is saved)."""
        if origin not in ORIGINS:
            raise LibraryError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
        calibration.check_provenance(provenance)
        name = _file_name(calibration.model, calibration.statistic, provenance.digest(), origin)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(
                f"cannot create the calibration library {self.folder}: {exc.strerror or exc}",
                hint=f"set {LIBRARY_ENV} to a writable folder",
            ) from None
        path = self.folder / name
        try:
            calibration.save(path, overwrite=True)  # atomic: a failure keeps the old file
        except CalibrationError as exc:
            raise LibraryError(f"cannot add {name} to the library: {exc}") from None
        return path

    def entry(self, name: str) -> LibraryEntry:
        """The calibration file called ``name`` (a file name from ``entries``)."""
        match = next((e for e in self.entries() if e.name == name), None)
        if match is None:
            raise LibraryError(
                f"no calibration {name!r} in the library {self.folder}",
                hint="aedr calibrations list shows their names",
            )
        return match

    def remove(self, name: str) -> Path:
        """Remove the calibration file called ``name``."""
        path = self.entry(name).path
        path.unlink()
        return path

    def __iter__(self) -> Iterator[LibraryEntry]:
        return iter(self.entries())


@dataclass(frozen=True)
class CalibrationSource:
    """Which calibration decides a candidate, and how it was made: ``own`` (the user's images,
    added to the library), ``built`` (from the autoencoder alone) or ``file`` (given by path)."""

    origin: str
    name: str  # the file's name (library) or path (given)


def build_calibration(
    scorer: Scorer,
    statistic: str = DEFAULT_STATISTIC,
    count: int = BUILT_IMAGES,
    on_measurement: Callable[[Measurement], None] | None = None,
) -> CalibrationRun:
    """A calibration of the scorer's one model from its autoencoder alone: ``count`` images its
    decoder makes from latent mixtures of the reference crops, measured with the default
    negatives (which share no pixel with the crops) so that its false acceptance is stated."""
    from aedr.measure.default_photos import REFERENCE_SET, reference_crops
    from aedr.workflows import calibrate_decoder_made

    crops = [crop for _, crop in reference_crops()]
    return calibrate_decoder_made(
        scorer, crops, f"the {len(crops)} reference crops ({REFERENCE_SET})", count, statistic,
        on_measurement=on_measurement,
    )  # fmt: skip


def available_models(weights_dir: str | os.PathLike | None = None) -> list[str]:
    """The registry models whose weights are on this machine (a weights folder or the Hugging
    Face cache): the candidates when the user names none. Nothing is downloaded."""
    from aedr.autoencoders import list_models, resolve_model

    names = []
    for spec in list_models():
        try:
            if resolve_model(spec.name, weights_dir).identity is not None:
                names.append(spec.name)
        except AedrError:
            continue
    return names


def library_calibrations(
    scorers: Sequence[Scorer],
    library: CalibrationLibrary,
    statistic: str = DEFAULT_STATISTIC,
    *,
    count: int = BUILT_IMAGES,
    on_building: Callable[[str], None] | None = None,
    on_built: Callable[[str, Calibration], None] | None = None,
    on_damaged: Callable[[str], None] | None = None,
    on_measurement: Callable[[Measurement], None] | None = None,
) -> list[tuple[Calibration, CalibrationSource]]:
    """Each one-model scorer's calibration from the library, built (and added) where it has none:
    the library's file for exactly these weights, precision, device kind and settings. A model
    whose precision was left to ``auto`` takes the user's own calibration at another precision
    before a built one at its own (the attribution then runs at the calibration's precision)."""
    found = []
    for scorer in scorers:
        (model,) = scorer.models
        provenance = model.loaded_provenance()
        if provenance is None:
            raise LibraryError(f"model {model.name!r} has no identity: it cannot be calibrated")
        kept = library.find(model.name, provenance, statistic, on_damaged)
        if kept is None and model.auto_dtype:
            kept = _own_at_other_precision(library, model.name, provenance, statistic)
        if kept is None:
            if on_building is not None:
                on_building(model.name)
            calibration = build_calibration(scorer, statistic, count, on_measurement).calibration
            path = library.add(calibration, provenance, "built")
            if on_built is not None:
                on_built(path.name, calibration)
            kept = calibration, LibraryEntry(path, model.name, statistic, provenance.digest(),
                                             "built")  # fmt: skip
        calibration, entry = kept
        found.append((calibration, CalibrationSource(entry.origin, entry.name)))
    return found


def own_on_every_pixel(
    scorers: Sequence[Scorer], library: CalibrationLibrary, statistic: str = DEFAULT_STATISTIC
) -> list[str]:
    """The models of the one-model ``scorers`` (measuring with a border) whose own calibration
    in the library was measured on every pixel, as every one made before aedr 0.12 was, and
    that have none measured as the scorers measure: a run deciding with it measures every pixel
    too (``ScoreSettings.border``), so that it decides as it did."""
    older = []
    for scorer in scorers:
        (model,) = scorer.models
        provenance = model.loaded_provenance()
        if provenance is None or provenance.settings.border == EVERY_PIXEL:
            continue
        if library.find(model.name, provenance, statistic, origins=("own",)) is not None:
            continue
        every = replace(provenance, settings=replace(provenance.settings, border=EVERY_PIXEL))
        if library.find(model.name, every, statistic, origins=("own",)) is not None:
            older.append(model.name)
    return older


def _own_at_other_precision(
    library: CalibrationLibrary, model: str, provenance: Provenance, statistic: str
) -> tuple[Calibration, LibraryEntry] | None:
    from aedr.autoencoders.registry import DTYPE_NAMES

    for dtype in DTYPE_NAMES:
        if dtype != provenance.dtype:
            other = replace(provenance, dtype=dtype)
            kept = library.find(model, other, statistic, origins=("own",))
            if kept is not None:
                return kept
    return None
