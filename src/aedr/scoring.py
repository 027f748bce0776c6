"""Scoring images against one or more autoencoders: files in, one record per (image, model) out.

Each image is decoded and its homogeneity computed once, however many models score it. A file that
cannot be scored gets an error record for every model and the run goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from aedr.autoencoders.base import Autoencoder, LatentMode

if TYPE_CHECKING:
    import torch
from aedr.homogeneity import LEVELS, glcm_homogeneity
from aedr.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    LoadedImage,
    aligned_crop,
    iter_image_files,
    luma_opencv,
    read_image,
    resize_to_multiple,
    to_model_input,
)
from aedr.signal import SignalError, calibrated_signal, loss_ratio, reconstruction_losses

Alignment = Literal["crop", "resize"]
SCORE_FIELDS = (
    "path", "model", "loss1", "loss2", "ratio", "homogeneity", "signal", "width", "height", "error",
)  # fmt: skip


@dataclass(frozen=True)
class ScoreSettings:
    """Everything besides the autoencoder that changes a score; calibrations record it."""

    latent: LatentMode = "mode"
    seed: int = 0
    alignment: Alignment = "crop"
    homogeneity_levels: int = LEVELS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoreSettings:
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        return cls(**known)


@dataclass
class ScoreRecord:
    path: str
    model: str
    loss1: float | None = None
    loss2: float | None = None
    ratio: float | None = None
    homogeneity: float | None = None
    signal: float | None = None
    width: int | None = None
    height: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCORE_FIELDS}


def display_path(path: str | os.PathLike) -> str:
    """A printable path: undecodable bytes in file names become backslash escapes, not errors."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class Scorer:
    """Scores files against a fixed set of loaded autoencoders with fixed settings."""

    def __init__(
        self,
        autoencoders: Sequence[Autoencoder],
        settings: ScoreSettings | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        if not autoencoders:
            raise ValueError("at least one autoencoder is needed")
        self.autoencoders = list(autoencoders)
        self.settings = settings or ScoreSettings()
        self.max_pixels = max_pixels
        import torch

        # One seeded generator per model, as the authors' script seeds one: with --latent sample a
        # model's scores depend on the order of images but never on which other models run.
        self._generators = {
            ae.name: torch.Generator(ae.device).manual_seed(self.settings.seed)
            for ae in self.autoencoders
        }

    def model_input(self, image: LoadedImage, autoencoder: Autoencoder) -> torch.Tensor:
        """The (1, 3, H, W) tensor the autoencoder sees: aligned to its size multiple."""
        import torch

        if self.settings.alignment == "resize":
            rgb = resize_to_multiple(image.rgb, autoencoder.size_multiple)
        else:
            rgb = aligned_crop(image.rgb, autoencoder.size_multiple)
        return torch.from_numpy(to_model_input(rgb))[None]

    def score_loaded(self, image: LoadedImage, homogeneity: float) -> list[ScoreRecord]:
        records = []
        for autoencoder in self.autoencoders:
            record = ScoreRecord(
                display_path(image.path),
                autoencoder.name,
                homogeneity=homogeneity,
                width=image.width,
                height=image.height,
            )
            try:
                loss1, loss2 = reconstruction_losses(
                    autoencoder,
                    self.model_input(image, autoencoder),
                    self.settings.latent,
                    self._generators[autoencoder.name],
                )
                record.loss1, record.loss2 = float(loss1[0]), float(loss2[0])
                record.ratio = loss_ratio(record.loss1, record.loss2)
                record.signal = calibrated_signal(record.ratio, homogeneity)
            except (ImageError, SignalError) as exc:
                record.error = str(exc)
            except Exception as exc:  # one model failing on one image must not end the run
                record.error = f"autoencoder failed: {type(exc).__name__}: {exc}"
            records.append(record)
        return records

    def score_file(self, path: str | os.PathLike) -> list[ScoreRecord]:
        """One record per model for ``path``; failures become error records."""
        try:
            image = read_image(path, self.max_pixels)
            homogeneity = glcm_homogeneity(image.gray, self.settings.homogeneity_levels)
        except (ImageError, ValueError) as exc:
            return [
                ScoreRecord(display_path(path), ae.name, error=str(exc)) for ae in self.autoencoders
            ]
        return self.score_loaded(image, homogeneity)

    def score_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[ScoreRecord]:
        """Records for every image file under ``paths`` (directories are walked), as they finish."""
        for path in iter_image_files(paths):
            yield from self.score_file(path)


def score_array(
    autoencoder: Autoencoder, rgb: np.ndarray, settings: ScoreSettings | None = None
) -> ScoreRecord:
    """Score an in-memory (H, W, 3) uint8 RGB image; homogeneity uses OpenCV's ``cvtColor`` luma."""
    image = LoadedImage(Path("<array>"), rgb, luma_opencv(rgb), "array")
    scorer = Scorer([autoencoder], settings)
    return scorer.score_loaded(image, glcm_homogeneity(image.gray))[0]
