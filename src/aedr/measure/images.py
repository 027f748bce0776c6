"""Image files in, arrays out: RGB for the autoencoder and OpenCV-compatible luma for homogeneity.

AEDR's homogeneity must match the paper authors' numbers, which came from
``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``. OpenCV does not convert to grey the same way for every
format: libpng converts RGB PNGs with truncating 15-bit weights, libjpeg hands back the stored luma
(Y) plane, WebP goes through ``cvtColor`` (15-bit, rounded) and OpenCV's own codecs (BMP, TIFF)
use 14-bit rounded weights. PNGs with a gAMA chunk are converted by libpng in linear light; we
convert their stored values like any other PNG (a documented difference, absent from the
authors' data). We decode with Pillow and
reproduce each of those paths, so neither OpenCV nor its codecs are needed at run time.
"""

from __future__ import annotations

import functools
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aedr.errors import AedrError

if TYPE_CHECKING:
    from aedr.measure.degradation import JpegTables
    from aedr.measure.resampling import Enlargement

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
DEFAULT_MAX_PIXELS = 64_000_000
"""Images declaring more pixels than this are refused before decoding (decompression bombs)."""
GREY_SPREAD = 2
"""The largest difference between a pixel's channels (8-bit levels) in an image that counts as
grey: grey files, and colour files of grey pixels (a JPEG of them decodes to equal channels, or
within a level or two with other encoders). No decoder writes one: a generated image's channels
differ by dozens of levels somewhere."""


class ImageError(AedrError, ValueError):
    """An input file that cannot be scored; the message says why in words a user can act on."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``rgb`` (H, W, 3) and ``gray`` (H, W), both uint8.

    ``gray`` always has the EXIF orientation applied (``cv2.imread`` applies it); ``rgb`` has it
    unless the image was read with ``exif_transpose=False`` (the authors' PIL path).
    """

    path: Path
    rgb: np.ndarray
    gray: np.ndarray
    format: str
    jpeg: JpegTables | None = None  # a colour JPEG's own tables (``aedr.measure.degradation``)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @functools.cached_property
    def grey(self) -> bool:
        """Whether no pixel has colour (:func:`is_grey`)."""
        return is_grey(self.rgb)

    @functools.cached_property
    def enlargement(self) -> Enlargement | None:
        """The enlargement its pixels show (``aedr.measure.resampling``), found once for all the
        models that measure it."""
        from aedr.measure.resampling import estimate_enlargement

        return estimate_enlargement(self.rgb, jpeg=self.jpeg is not None)


def is_grey(rgb: np.ndarray) -> bool:
    """Whether every pixel of an (H, W, 3) uint8 image has its channels within
    :data:`GREY_SPREAD` levels of each other: made grey after generation (a black-and-white
    conversion), whatever the file stores.

    >>> is_grey(np.full((2, 2, 3), 7, np.uint8)), is_grey(np.array([[[7, 9, 8]]], np.uint8))
    (True, True)
    >>> is_grey(np.array([[[7, 10, 8]]], np.uint8))
    False
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an (H, W, 3) image is needed, not shape {rgb.shape}")
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return bool(spread.size) and int(spread.max()) <= GREY_SPREAD


def luma_libpng(rgb: np.ndarray) -> np.ndarray:
    """Grey as libpng's ``png_set_rgb_to_gray(.., 0.299, 0.587)`` computes it (15-bit weights, floor)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)


def luma_opencv(rgb: np.ndarray) -> np.ndarray:
    """Grey as OpenCV's ``cvtColor(.., COLOR_RGB2GRAY)`` computes it (15-bit weights, rounded).

    OpenCV's WebP reader decodes to colour and converts with this.
    """
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((9798 * r + 19235 * g + 3735 * b + (1 << 14)) >> 15).astype(np.uint8)


def luma_opencv_codec(rgb: np.ndarray) -> np.ndarray:
    """Grey as OpenCV's own decoders (BMP, TIFF, ...) convert while reading (14-bit, rounded)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((4899 * r + 9617 * g + 1868 * b + (1 << 13)) >> 14).astype(np.uint8)


def file_error(path: Path, exc: OSError) -> ImageError:
    """A file-system failure in words a user can act on."""
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return ImageError(f"broken symbolic link (to {os.readlink(path)})")
        return ImageError("file not found")
    if isinstance(exc, IsADirectoryError):
        return ImageError("is a directory, not an image file")
    if isinstance(exc, PermissionError):
        return ImageError("permission denied")
    return ImageError(f"cannot read file: {exc.strerror or exc}")


FILE_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)  # fmt: skip


def regular_file_size(path: str | os.PathLike) -> int:
    """The size of ``path`` if it is a regular file (behind any symlinks), else an ImageError.

    Only regular files are ever opened: a FIFO would block a reader for ever and a device such as
    /dev/zero never ends, so both are refused from their metadata, which costs no read.
    """
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise file_error(path, exc) from None
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in FILE_KINDS if test(status.st_mode)), "not a file")
        raise ImageError(f"not a regular file ({kind}): only image files are read")
    return status.st_size


def _open(path: Path, max_pixels: int) -> Image.Image:
    if regular_file_size(path) == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        image = Image.open(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise file_error(path, exc) from None
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format (unreadable or not an image)") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its limit
        raise ImageError(
            f"image declares too many pixels, over the limit of {max_pixels} ({exc})"
        ) from None
    except OSError as exc:
        raise ImageError(f"cannot open image: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            f"image declares {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (raise the pixel limit if the file is trusted)"
        )
    return image


def image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as the file's header declares them, without decoding any pixel."""
    with _open(Path(path), max_pixels) as image:
        return image.size


def _decode(image: Image.Image) -> Image.Image:
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"corrupt or truncated image data: {exc}") from None


def _jpeg_luma(path: Path, max_pixels: int) -> np.ndarray:
    """The JPEG's own Y plane, as libjpeg returns it when asked for greyscale output."""
    with _open(path, max_pixels) as image:
        image.draft("L", image.size)
        return np.asarray(_decode(image).convert("L"))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable: metadata is attacker-controlled)."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def _high_byte(image: Image.Image) -> np.ndarray:
    return (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)


def _colour_luma(rgb: np.ndarray, file_format: str, source_mode: str) -> np.ndarray | None:
    """OpenCV's grey for a colour file, or None for an RGB JPEG (whose Y plane is read apart)."""
    if file_format == "PNG":
        return luma_libpng(rgb)
    if file_format == "JPEG" and source_mode == "RGB":
        return None
    if file_format == "WEBP":
        return luma_opencv(rgb)
    return luma_opencv_codec(rgb)


def read_image(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, exif_transpose: bool = True
) -> LoadedImage:
    """Decode ``path`` to RGB and OpenCV-compatible grey.

    Alpha is dropped (not composited), as OpenCV's ``IMREAD_COLOR`` does; palette and grey images are
    expanded to RGB; multi-frame files (GIF, WebP, TIFF) give their first frame. With
    ``exif_transpose=False`` the RGB pixels keep their stored orientation, as the authors'
    ``Image.open(path).convert("RGB")`` gives them, while the grey stays oriented like OpenCV's.
    """
    from aedr.measure.degradation import JpegTables

    path = Path(path)
    gray: np.ndarray | None
    with _open(path, max_pixels) as image:
        file_format = image.format or "unknown"
        # a rotated JPEG's blocks no longer start at the oriented image's corner
        rotated = exif_transpose and _orientation(image) != 1
        jpeg = None if rotated else JpegTables.of_image(image)
        decoded = _decode(image)
        source_mode = decoded.mode
        stored = decoded if exif_transpose else image  # loaded by _decode, as stored
        if source_mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit grey: OpenCV reduces it to 8 bits by dropping the low byte (>> 8), for both
            # colour and grey reads; Pillow's own conversion would clip at 255 instead.
            gray = _high_byte(decoded)
            rgb = np.repeat(_high_byte(stored)[..., None], 3, axis=2)
        elif source_mode in ("L", "LA", "1"):
            rgb = np.asarray(stored.convert("RGB"))
            gray = np.asarray(decoded.convert("L"))
        else:
            oriented = np.asarray(decoded.convert("RGB"))
            gray = _colour_luma(oriented, file_format, source_mode)
            rgb = oriented if exif_transpose else np.asarray(stored.convert("RGB"))
    if gray is None:
        # A second decode, on purpose: libjpeg's RGB output and its Y plane are two different
        # decodes, and neither can be derived from the other without changing the pixels.
        gray = _jpeg_luma(path, max_pixels)
    return LoadedImage(path=path, rgb=rgb, gray=gray, format=file_format, jpeg=jpeg)


def aligned_crop(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """The largest top-left region whose sides are multiples of ``multiple``.

    Cropping from the top-left corner keeps the phase of the decoder's pixel grid, which resampling
    or a centred crop would shift.
    """
    height, width = rgb.shape[:2]
    new_height, new_width = height - height % multiple, width - width % multiple
    if new_height == 0 or new_width == 0:
        raise ImageError(
            f"image is {width}x{height}, smaller than the autoencoder's size multiple {multiple}"
        )
    return rgb[:new_height, :new_width]


RESIZE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
RESIZE_FILTER = "bilinear"
"""The default filter of ``resize_to``, recorded in measurements' provenance. The
authors' ``image.resize(size)`` uses Pillow's default, bicubic (``--paper``)."""


def rounded_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(width, height) with each side rounded to the nearest multiple (Python's round, as the
    authors' ``int(round(side / 8)) * 8``), at least one multiple."""
    return (
        max(multiple, round(width / multiple) * multiple),
        max(multiple, round(height / multiple) * multiple),
    )


def resize_to(rgb: np.ndarray, size: tuple[int, int], resize_filter: str = RESIZE_FILTER):
    """``rgb`` resized to (width, height) with Pillow; returned as it is when already that size."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    if resize_filter not in RESIZE_FILTERS:
        raise ValueError(f"resize filter must be one of {', '.join(RESIZE_FILTERS)}")
    return np.asarray(Image.fromarray(rgb).resize(size, RESIZE_FILTERS[resize_filter]))


def _area_weights(n_in: int, n_out: int, shrink: bool) -> np.ndarray:
    """(n_out, n_in) interpolation weights of OpenCV's ``INTER_AREA`` along one axis."""
    scale = n_in / n_out
    if shrink:  # the share of each source pixel inside each destination cell
        edges = np.arange(n_out + 1) * scale
        source = np.arange(n_in)[None, :]
        overlap = np.minimum(edges[1:, None], source + 1) - np.maximum(edges[:-1, None], source)
        return np.clip(overlap, 0, None) / scale
    # Enlarging (either axis): linear weights with OpenCV's area-style phase.
    weights = np.zeros((n_out, n_in))
    target = np.arange(n_out)
    first = np.floor(target * scale).astype(int)
    fraction = (target + 1) - (first + 1) / scale
    fraction = np.where(fraction <= 0, 0.0, fraction - np.floor(fraction))
    np.add.at(weights, (target, np.minimum(first, n_in - 1)), 1 - fraction)
    np.add.at(weights, (target, np.minimum(first + 1, n_in - 1)), fraction)
    return weights


def area_resize(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` resized to a ``side`` square as OpenCV's ``INTER_AREA`` does (LatentTracer's
    ``cv2.resize``), to within one level: pixel-area averaging when shrinking, area-phased linear
    weights when either side grows. Computed in float64, rounded to uint8."""
    if (rgb.shape[1], rgb.shape[0]) == (side, side):
        return rgb
    shrink = rgb.shape[0] >= side and rgb.shape[1] >= side
    rows = _area_weights(rgb.shape[0], side, shrink)
    cols = _area_weights(rgb.shape[1], side, shrink)
    out = np.einsum("yh,hwc,xw->yxc", rows, rgb.astype(np.float64), cols, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_model_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1], computed as ToTensor then Normalize(0.5, 0.5)."""
    unit = rgb.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(((unit - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1))


def iter_image_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files named on the command line as they are; directories walked in sorted order.

    Walking is streamed directory by directory, so folders of many thousands of files are never
    held in memory twice. Inside directories only known image extensions are taken; a file named
    explicitly is always yielded, so that a bad one gets an error record instead of vanishing.
    """
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            yield path
            continue
        for file in _walk(path):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                yield file


def _walk(top: Path) -> Iterator[Path]:
    """The files under ``top`` in ``os.walk``'s order (a folder's files by name, then its
    subfolders by name, depth first; unreadable folders and links to folders skipped), without
    recursion: Python 3.11's ``os.walk`` recurses and fails on folders nested ~1,000 deep."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            try:
                is_folder = entry.is_dir()
            except OSError:
                is_folder = False
            if not is_folder:
                yield Path(entry.path)
            elif not entry.is_symlink():
                subfolders.append(Path(entry.path))
        stack.extend(reversed(subfolders))


def grid_crops(rgb: np.ndarray, multiple: int, size: int, count: int = 1) -> list[np.ndarray]:
    """``count`` square crops of side ``size`` whose corners lie on the ``multiple`` grid.

    Bounds the cost of large images while keeping the decoder's pixel phase. Crops are spread
    evenly over the grid-aligned image (the first one at the top-left corner); a side shorter than
    ``size`` is taken whole.
    """
    aligned = aligned_crop(rgb, multiple)
    height, width = aligned.shape[:2]
    side_y = min(size - size % multiple or multiple, height)
    side_x = min(size - size % multiple or multiple, width)
    rows = max(1, math.ceil(math.sqrt(count)))
    cols = max(1, math.ceil(count / rows))

    def starts(extent: int, side: int, n: int) -> list[int]:
        if n == 1:
            return [0]
        return [int(i * (extent - side) / (n - 1)) // multiple * multiple for i in range(n)]

    corners = [(y, x) for y in starts(height, side_y, rows) for x in starts(width, side_x, cols)]
    return [aligned[y : y + side_y, x : x + side_x] for y, x in corners[:count]]
