"""Degradation-aware double reconstruction: compare like with like after JPEG, resizing, cropping.

AEDR's evidence lives in the exact pixels the decoder wrote. A platform that recompresses,
resizes or crops an image moves those pixels, and the first reconstruction then loses as much on a
generated image as on a photo. With ``robust="auto"`` each measurement first says what happened
to the image (:class:`Degradation`) and undoes it where it can:

- **JPEG** (the file's own quantisation tables and chroma subsampling, read from the file): both
  reconstructions are re-encoded with exactly those tables before the losses and the AC energies
  (``ac``) are taken, so the JPEG error is on both sides of each comparison. The high-pass
  evidence (``highpass``) is taken before the re-encoding: it reads the finest detail, which
  JPEG quantises away, and through the tables it compares mostly quantisation noise (at JPEG 75
  its ROC AUC fell from 0.84 to 0.72, docs/results/robustness.md).
- **Off the decoder's grid** (a side that is not a multiple of the model's grid): the image was
  cropped or resized after generation. The 64 grid phases of a crop are tried on a central
  window of ``SEARCH_WINDOW`` pixels, one first reconstruction each; the ``REFINED_PHASES``
  whose residuals have the least high-pass energy inside the window's border of
  ``SEARCH_MARGIN`` pixels are tried again on a window of ``REFINE_WINDOW`` pixels, and the
  image is measured cropped at the best of them.
- **A resize** (``resized_by``, stated by the user: the platform's size against the
  generator's; or, without one, an enlargement found by its interpolation's periodic trace,
  :mod:`aedr.measure.resampling`): the image is mapped back by that factor onto the decoder's
  grid, reconstructed twice there, and both reconstructions are mapped forward with the same
  resampler (bicubic). A shrink leaves no such trace: its factor must be stated.

Both reconstructions go through the same forward map, and both losses are floored at the energy
of 8-bit quantisation noise (:data:`QUANTISATION_FLOOR`): re-encoding can make the two
reconstructions identical, a difference no 8-bit file can show. What was measured to choose this,
and what it buys, is in docs/results/robustness.md.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from aedr.measure.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    aligned_crop,
    read_image,
    rounded_size,
    to_model_input,
)  # fmt: skip

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable
    from pathlib import Path

    import torch

    from aedr.autoencoders.base import Autoencoder
    from aedr.measure.resampling import Enlargement

Robust = Literal["off", "auto"]
ROBUST_MODES: tuple[str, ...] = ("off", "auto")
SEARCH_WINDOW = 96
"""Side of the central window on which the 64 grid phases of a crop are compared."""
SEARCH_MARGIN = 16
"""Pixels left out of the comparison at each side of the window: there the decoder's padding,
not its grid, shapes the residual."""
REFINE_WINDOW = 192
"""Side of the central window on which the search's best phases are compared again: on more
pixels the true phase wins more often, and four phases on it add about a fifth to the search's
time."""
REFINED_PHASES = 4
"""How many of the search's best phases are compared again on :data:`REFINE_WINDOW`."""
SEARCH_BATCH = 16
MAX_SEARCH_PHASES = 256
"""Most grid phases one search tries: a spatial factor above 16 (DC-AE's 32: 1,024 phases) is
searched on every second (fourth, ...) row and column phase, so within a pixel or two."""
QUANTISATION_FLOOR = (2 / 255) ** 2 / 12
"""Mean squared error of uniform 8-bit quantisation in [-1, 1] units: the smallest difference an
8-bit file can show."""
RESAMPLER = Image.Resampling.BICUBIC  # Pillow's default, the platforms' most common filter
SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
RESIZED, GRID_PHASE = "resized_by", "grid_phase"
"""The fields of a degradation record (``Degradation.as_record``) that name undone geometry."""
ENLARGEMENT_STRENGTH = "enlargement_strength"
"""The field of a degradation record that says its resize was estimated (the trace's strength)."""


def describe(record: Mapping[str, Any]) -> str:
    """A degradation record in words, e.g. ``resized x1.5 (undone); jpeg q=75 4:2:0``; "" when
    nothing was found."""
    words = []
    if record.get(ENLARGEMENT_STRENGTH) is not None:
        words.append(f"enlarged x{record[RESIZED]:.3g} (estimated from its interpolation's "
                     f"periodic trace, {record[ENLARGEMENT_STRENGTH]:.0f}x the background; "
                     "undone)")  # fmt: skip
    elif record.get(RESIZED) is not None:
        words.append(f"resized x{record[RESIZED]:.3g} (undone)")
    if record.get(GRID_PHASE) is not None:
        words.append(f"grid phase {tuple(record[GRID_PHASE])} (estimated)")
    if record.get("jpeg_quality") is not None:
        words.append(f"jpeg q={record['jpeg_quality']} {record['subsampling']}")
    return "; ".join(words)


@dataclass(frozen=True)
class JpegTables:
    """A JPEG file's quantisation tables and chroma subsampling, enough to re-encode like it."""

    tables: tuple[tuple[int, ...], ...]
    subsampling: int  # Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    quality: int  # IJG-scale estimate, for people

    @classmethod
    def of_image(cls, image: Image.Image) -> JpegTables | None:
        """The tables of an opened three-component JPEG; None for any other image (a grey or
        CMYK JPEG is not re-encoded: its tables do not fit an RGB reconstruction)."""
        from PIL import JpegImagePlugin

        from aedr.measure.fileinfo import jpeg_quality

        if image.format != "JPEG" or image.mode != "RGB":
            return None
        try:
            tables = getattr(image, "quantization", None) or {}
            subsampling = JpegImagePlugin.get_sampling(image)
            if not 1 <= len(tables) <= 4 or subsampling not in SUBSAMPLING_NAMES:
                return None  # what Pillow can re-encode with: 1 to 4 tables of 64 entries
            ordered = tuple(tuple(int(v) for v in tables[key]) for key in sorted(tables))
            if any(len(t) != 64 or not all(1 <= v <= 255 for v in t) for t in ordered):
                return None
            return cls(ordered, subsampling, jpeg_quality(ordered[0]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def reencode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] saved as 8-bit JPEGs with these tables, decoded back."""
        import torch

        pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte()
        decoded = []
        for array in pixels.permute(0, 2, 3, 1).cpu().numpy():
            buffer = io.BytesIO()
            Image.fromarray(array).save(
                buffer, "JPEG", qtables=[list(t) for t in self.tables],
                subsampling=self.subsampling,
            )  # fmt: skip
            with Image.open(buffer) as reread:
                decoded.append(to_model_input(np.asarray(reread.convert("RGB"))))
        return torch.from_numpy(np.stack(decoded)).to(images.device, images.dtype)


@dataclass(frozen=True)
class Degradation:
    """What an image went through after the decoder, as far as the measurement could tell.

    ``phase``: (rows, columns) where the decoder's grid starts, when the image was found cropped
    off it (an estimate, see the module docstring); ``resize``: the factor it was resized by, as
    the user stated it or as ``enlargement`` found it; ``jpeg`` is read from the file.
    """

    jpeg: JpegTables | None = None
    phase: tuple[int, int] | None = None
    resize: float | None = None
    enlargement: Enlargement | None = None

    @classmethod
    def enlarged(cls, jpeg: JpegTables | None, found: Enlargement) -> Degradation:
        """An image found enlarged by ``found.factor``, to be mapped back by it."""
        return cls(jpeg=jpeg, resize=found.factor, enlargement=found)

    @property
    def any(self) -> bool:
        return self.jpeg is not None or self.phase is not None or self.resize is not None

    def as_record(self) -> dict[str, Any]:
        """What a measurement keeps of it: the resize factor undone, the grid phase found, the
        JPEG quality and subsampling whose tables were used (only those present)."""
        record: dict[str, Any] = {}
        if self.resize is not None:
            record[RESIZED] = self.resize
        if self.enlargement is not None:
            record[ENLARGEMENT_STRENGTH] = round(self.enlargement.strength, 1)
        if self.phase is not None:
            record[GRID_PHASE] = list(self.phase)
        if self.jpeg is not None:
            record["jpeg_quality"] = self.jpeg.quality
            record["subsampling"] = SUBSAMPLING_NAMES[self.jpeg.subsampling]
        return record

    def model_view(self, rgb: np.ndarray, multiple: int) -> np.ndarray:
        """The pixels the autoencoder sees: the image mapped back by the resize factor onto the
        decoder's grid, or cropped at its grid phase (and to the grid)."""
        if self.resize is not None:
            height, width = rgb.shape[:2]
            size = rounded_size(width / self.resize, height / self.resize, multiple)
            return np.asarray(Image.fromarray(rgb).resize(size, RESAMPLER))
        rows, cols = self.phase or (0, 0)
        return aligned_crop(rgb[rows:, cols:], multiple)

    def observation(self, rgb: np.ndarray, multiple: int) -> Observation:
        """How an image's reconstructions are compared with it under this degradation."""
        import torch

        view = to_model_input(self.model_view(rgb, multiple))
        frame = torch.from_numpy(to_model_input(rgb))[None]
        return Observation(view, self, frame)


@dataclass(frozen=True, eq=False)
class Observation:
    """One image's degradation-aware comparison: ``view`` (3, h, w) is the autoencoder's input,
    ``reference`` (1, 3, H, W) the observed pixels the losses are taken on, and
    :meth:`resampled` then :meth:`reencoded` take reconstructions of ``view`` to those pixels
    the way the image went."""

    view: np.ndarray
    degradation: Degradation
    frame: torch.Tensor  # the whole observed image, (1, 3, H, W)

    @property
    def offset(self) -> tuple[int, int]:
        """Where ``view`` lies in ``frame`` (a resized view covers all of it)."""
        return (0, 0) if self.degradation.resize is not None else self.degradation.phase or (0, 0)

    @property
    def reference(self) -> torch.Tensor:
        if self.degradation.resize is not None:
            return self.frame
        (rows, cols), (height, width) = self.offset, self.view.shape[1:]
        return self.frame[:, :, rows : rows + height, cols : cols + width]

    def resampled(self, reconstructions: torch.Tensor) -> torch.Tensor:
        """Reconstructions (B, 3, h, w) resampled forward to the observed size when the image was
        resized, else as they are: the geometry of the reference's pixels."""
        if self.degradation.resize is None:
            return reconstructions
        return resample(reconstructions, (self.frame.shape[-1], self.frame.shape[-2]))

    def reencoded(self, reconstructions: torch.Tensor) -> torch.Tensor:
        """Reconstructions at the observed size (:meth:`resampled`) re-encoded with the file's
        JPEG tables inside the whole observed frame (so that the 8 x 8 JPEG blocks fall where the
        file's fell), cut to the reference's pixels; as they are for a file that is not a JPEG."""
        degradation, frame = self.degradation, self.frame
        if degradation.jpeg is None:
            return reconstructions
        rows, cols = self.offset
        height, width = reconstructions.shape[-2:]
        canvas = frame.to(reconstructions.device, reconstructions.dtype)
        canvas = canvas.repeat(reconstructions.shape[0], 1, 1, 1)
        canvas[:, :, rows : rows + height, cols : cols + width] = reconstructions
        encoded = degradation.jpeg.reencode(canvas)
        return encoded[:, :, rows : rows + height, cols : cols + width]


@dataclass(frozen=True, eq=False)
class Observations:
    """Observations whose views and references have equal shapes, measured in one batch: each
    reconstruction goes through its own image's degradation (its tables, its resize), so a
    folder of JPEG files keeps the batch size a plain run has."""

    items: tuple[Observation, ...]

    @property
    def reference(self) -> torch.Tensor:
        import torch

        return torch.cat([item.reference for item in self.items])

    def resampled(self, reconstructions: torch.Tensor) -> torch.Tensor:
        return self._each(reconstructions, Observation.resampled)

    def reencoded(self, reconstructions: torch.Tensor) -> torch.Tensor:
        return self._each(reconstructions, Observation.reencoded)

    def _each(self, reconstructions: torch.Tensor, step) -> torch.Tensor:
        import torch

        if len(reconstructions) != len(self.items):
            raise ValueError(f"{len(reconstructions)} reconstructions, {len(self.items)} images")
        return torch.cat([
            step(item, reconstructions[index : index + 1])
            for index, item in enumerate(self.items)
        ])  # fmt: skip


def resample(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) float images resampled to (width, height) with :data:`RESAMPLER`, channel by
    channel in float32 (no 8-bit rounding between the decoder and the comparison)."""
    import torch

    if (images.shape[-1], images.shape[-2]) == tuple(size):
        return images
    planes = images.float().cpu().numpy()
    out = np.stack([
        np.stack([np.asarray(Image.fromarray(plane, "F").resize(size, RESAMPLER)) for plane in image])
        for image in planes
    ])  # fmt: skip
    return torch.from_numpy(out).to(images.device, images.dtype)


def save_jpeg_copies(
    paths: Iterable[str | os.PathLike],
    folder: Path,
    quality: int,
    *,
    exif_transpose: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Path]:
    """Each image of ``paths`` saved in ``folder`` as a JPEG of IJG ``quality`` with Pillow's
    standard tables and 4:2:0 chroma (what most platforms write): the image as it looks after an
    upload at that quality. Pixels are read as the scorer reads them; unreadable files are left
    out (their measurement already failed)."""
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"a JPEG quality is a whole number from 1 to 100, not {quality!r}")
    copies = []
    for index, path in enumerate(paths):
        try:
            rgb = read_image(path, max_pixels, exif_transpose).rgb
        except ImageError:
            continue
        copy = folder / f"{index:06d}-q{quality}.jpg"
        Image.fromarray(rgb).save(copy, "JPEG", quality=quality, subsampling=2)
        copies.append(copy)
    return copies


def valid_resize_factor(factor: Any) -> bool:
    """Whether ``factor`` can be a stated resize: a number from 0.1 to 10 other than 1."""
    return isinstance(factor, (int, float)) and 0.1 <= factor <= 10 and factor != 1


def save_resized_copy(
    path: str | os.PathLike,
    target: Path,
    factor: float,
    *,
    exif_transpose: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resample: Image.Resampling = RESAMPLER,
) -> Path:
    """The image of ``path`` resized by ``factor`` with ``resample`` (by default
    :data:`RESAMPLER`, how the correction assumes platforms resize) and saved as the PNG file
    ``target``: how a generator's own image looks after an upload resized it, for thresholds
    that hold for such images. Pixels are read as the scorer reads them; an unreadable file
    raises its :class:`ImageError`."""
    if not valid_resize_factor(factor):
        raise ValueError(f"a resize factor is a number from 0.1 to 10 other than 1, not {factor!r}")
    rgb = read_image(path, max_pixels, exif_transpose).rgb
    height, width = rgb.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    Image.fromarray(rgb).resize(size, resample).save(target, "PNG")
    return target


def off_grid(width: int, height: int, multiple: int) -> bool:
    """Sides a decoder with this grid cannot have written: cropped or resized since."""
    return width % multiple != 0 or height % multiple != 0


def search_phase(
    autoencoder: Autoencoder,
    rgb: np.ndarray,
    window: int = SEARCH_WINDOW,
    margin: int = SEARCH_MARGIN,
    refine_window: int = REFINE_WINDOW,
) -> tuple[int, int] | None:
    """The grid phase (rows, columns) at which ``rgb`` reconstructs best: every phase (at most
    :data:`MAX_SEARCH_PHASES`) tried on the central ``window``, one first reconstruction each,
    then the best :data:`REFINED_PHASES` of them tried again on the central ``refine_window``
    (where the image holds more than ``window``); None when the image is too small to search or
    the best phase is (0, 0).

    "Best" is the least energy of the residual's high-pass part (the part the default statistic
    reads) on the pixels every phase's window holds, less ``margin`` pixels at each side (less,
    where the window is too small to spare them): the residual's low-frequency colour drift is
    much the same at every phase and drowned the difference in a plain squared error, which found
    the true phase of decoder images about half as often. The second, larger window finds the
    true phase more often than the first alone (docs/results/robustness.md)."""
    multiple = max(8, autoencoder.spatial_factor)
    stride = -(-multiple // math.isqrt(MAX_SEARCH_PHASES))  # ceiling division
    phases = [(r, c) for r in range(0, multiple, stride) for c in range(0, multiple, stride)]
    if _window_side(rgb, multiple, window) < multiple:
        return None  # too small to search
    losses = _phase_losses(autoencoder, rgb, phases, window, margin)
    ranked = [phases[i] for i in np.argsort(losses, kind="stable")]
    best = ranked[0]
    if _window_side(rgb, multiple, refine_window) > _window_side(rgb, multiple, window):
        candidates = ranked[:REFINED_PHASES]
        again = _phase_losses(autoencoder, rgb, candidates, refine_window, margin)
        best = candidates[int(np.argmin(again))]
    return None if best == (0, 0) else best


def _window_side(rgb: np.ndarray, multiple: int, window: int) -> int:
    """The side of the central window of at most ``window`` pixels that every phase can cut."""
    height, width = rgb.shape[:2]
    side = min(window, height - multiple, width - multiple)
    return side - side % multiple


def _phase_losses(
    autoencoder: Autoencoder,
    rgb: np.ndarray,
    phases: list[tuple[int, int]],
    window: int,
    margin: int,
) -> list[float]:
    """The high-pass energy of each phase's first-reconstruction residual on ``rgb``'s central
    window (one that fits: :func:`_window_side` of at least the grid), on the pixels all phases
    share less ``margin``."""
    import torch

    from aedr.measure.evidence import high_pass

    multiple = max(8, autoencoder.spatial_factor)
    height, width = rgb.shape[:2]
    side = _window_side(rgb, multiple, window)
    margin = max(0, min(margin, (side - 2 * multiple) // 2))
    top = (height - side - multiple) // 2 // multiple * multiple
    left = (width - side - multiple) // 2 // multiple * multiple
    first, last = multiple - 1 + margin, side - margin
    losses = []
    with torch.inference_mode():
        for start in range(0, len(phases), SEARCH_BATCH):
            chunk = phases[start : start + SEARCH_BATCH]
            batch = torch.from_numpy(np.stack([
                to_model_input(rgb[top + r : top + r + side, left + c : left + c + side])
                for r, c in chunk
            ]))  # fmt: skip
            x = autoencoder.as_input(batch)
            residual = autoencoder.decode(autoencoder.encode(x)).float().cpu() - batch
            error = high_pass(residual).square()
            losses += [
                float(error[i, :, first - r : last - r, first - c : last - c].mean())
                for i, (r, c) in enumerate(chunk)
            ]
    return losses
