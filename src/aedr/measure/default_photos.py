"""Default negatives: photos no generator made, shipped by a dependency, measured by every calibration.

A calibration fitted on a model's own images alone controls only how often the model rejects its
own images; how often it accepts a real photo is unknown until it is measured on some. These are
the photos every calibration is measured on when the user gives none of their own: the colour and
grey photographs that scikit-image ships inside its wheel (NASA, Wikimedia and scientific sample
images, free to reuse; see scikit-image's ``skimage/data/README.txt``), cut into at most
``TILES_PER_PHOTO`` tiles of ``TILE`` pixels so one large photo does not dominate. No download:
only images inside the installed package are used.

The tiles are written once as PNG files into a cache folder, so the score store keys them by
content like any other image and each autoencoder measures them once. Every calibration measured
on them holds the same tiles, so the share of them that *some* candidate accepts (the
family-wise false attribution of a multi-model run) is counted exactly, not bounded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aedr.errors import AedrError

NEGATIVE_SET = "scikit-image-photos-1"
"""Names this set of tiles (which photos, tile size and positions): a calibration records it."""
SOURCE = f"default: tiles of scikit-image's sample photos ({NEGATIVE_SET})"
"""What a calibration's negatives section says these tiles are (a condition adds how they were
changed: "..., made grey")."""
TILE = 128
TILES_PER_PHOTO = 4
PHOTOS = (
    "astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket", "retina",
    "immunohistochemistry", "stereo_motorcycle", "camera", "brick", "grass", "gravel", "moon",
    "coins", "clock", "cell",
)  # fmt: skip
"""scikit-image's bundled photographs (grey ones are measured as RGB); its drawings, charts and
binary images are left out: no one asks whether a chessboard was generated."""


class NegativesError(AedrError, RuntimeError):
    """The default negative photos cannot be read (scikit-image missing or without its data)."""


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else None
    if image is None:
        image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def negative_tiles() -> list[tuple[str, np.ndarray]]:
    """(name, 8-bit RGB tile) of every negative tile, in a fixed order: up to
    ``TILES_PER_PHOTO`` tiles per photo on a ``TILE``-pixel grid, spread evenly over it."""
    tiles = []
    for name in PHOTOS:
        try:
            photo = _photo(name)
        except Exception as exc:  # any failure of the data package means the same to a user
            raise NegativesError(
                f"cannot read scikit-image's sample photo {name!r} ({exc}): reinstall scikit-image"
            ) from None
        for y, x in _tile_corners(photo):
            tiles.append((f"{name}-{y}-{x}", photo[y : y + TILE, x : x + TILE].copy()))
    return tiles


REFERENCE_SIZE = 256
REFERENCES_PER_PHOTO = 2
REFERENCE_SET = "scikit-image-photos-1-free-regions"
"""Names the reference crops: which regions of which photos (a built calibration records it)."""


def _tile_corners(photo: np.ndarray) -> list[tuple[int, int]]:
    """The top-left corners of the photo's negative tiles (see ``negative_tiles``)."""
    corners = [
        (y, x)
        for y in range(0, photo.shape[0] - TILE + 1, TILE)
        for x in range(0, photo.shape[1] - TILE + 1, TILE)
    ]
    chosen = np.linspace(0, len(corners) - 1, min(TILES_PER_PHOTO, len(corners)))
    return [corners[index] for index in sorted(set(chosen.round().astype(int)))]


def _apart(a: tuple[int, int], size_a: int, b: tuple[int, int], size_b: int) -> bool:
    return (
        a[0] + size_a <= b[0]
        or b[0] + size_b <= a[0]
        or a[1] + size_a <= b[1]
        or (b[1] + size_b <= a[1])
    )


def reference_crops() -> list[tuple[str, np.ndarray]]:
    """(name, 8-bit RGB crop) of the reference photos a calibration is built from when the user
    gives none: ``REFERENCE_SIZE`` crops of the same scikit-image photos that share no pixel
    with any negative tile (up to ``REFERENCES_PER_PHOTO`` per photo, apart from each other), so
    that the false attribution stated on the negatives is measured on pixels the calibration
    never saw.

    >>> len(reference_crops()), reference_crops()[0][1].shape
    (23, (256, 256, 3))
    """
    crops = []
    size = REFERENCE_SIZE
    for name in PHOTOS:
        photo = _photo(name)
        tiles = _tile_corners(photo)
        picked: list[tuple[int, int]] = []
        for corner in (
            (y, x)
            for y in range(0, photo.shape[0] - size + 1, size // 4)
            for x in range(0, photo.shape[1] - size + 1, size // 4)
        ):
            if len(picked) == REFERENCES_PER_PHOTO:
                break
            if all(_apart(corner, size, t, TILE) for t in tiles) and all(
                _apart(corner, size, p, size) for p in picked
            ):
                picked.append(corner)
        for y, x in picked:
            crops.append((f"{name}-{y}-{x}", photo[y : y + size, x : x + size].copy()))
    return crops


def default_negatives_folder() -> Path:
    """Where the tiles are cached: beside the score store (``$XDG_CACHE_HOME/aedr``)."""
    from aedr.measure.store import default_store_path

    return default_store_path().parent / "negatives" / NEGATIVE_SET


def negative_files(folder: str | os.PathLike | None = None) -> list[Path]:
    """The negative tiles as PNG files in ``folder`` (default: the cache), written if missing."""
    from PIL import Image

    folder = Path(folder) if folder is not None else default_negatives_folder()
    tiles = negative_tiles()
    paths = [folder / f"{name}.png" for name, _ in tiles]
    if not all(path.is_file() for path in paths):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for path, (_, tile) in zip(paths, tiles, strict=True):
                partial = path.with_suffix(".part")
                Image.fromarray(tile).save(partial, format="PNG")
                os.replace(partial, path)
        except OSError as exc:
            raise NegativesError(
                f"cannot write the default negative photos into {folder}: {exc.strerror or exc}"
            ) from None
    return paths
