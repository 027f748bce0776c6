"""GLCM homogeneity, the image-complexity factor that calibrates AEDR's ratio.

Matches ``skimage.feature.graycomatrix(gray // 8, [1], [0], levels=32, symmetric=True,
normed=True)`` followed by ``graycoprops(.., "homogeneity")``, which is what the paper's authors ran,
without building the matrix: homogeneity weights each co-occurring pair (i, j) by
1 / (1 + (i - j)^2), a weight symmetric in i and j, so the normalised symmetric matrix's weighted
sum equals the mean weight over all horizontally adjacent pixel pairs.
"""

from __future__ import annotations

import os

import numpy as np

from aedr.measure.images import read_image

LEVELS = 32


def quantize(gray: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Map 8-bit grey to ``levels`` grey levels by integer division, as the authors did (``// 8``)."""
    if 256 % levels:
        raise ValueError(f"levels must divide 256, got {levels}")
    return gray.astype(np.int32) // (256 // levels)


def glcm_homogeneity(gray: np.ndarray, levels: int = LEVELS) -> float:
    """Homogeneity of the grey-level co-occurrence matrix at distance 1, angle 0.

    ``gray`` is a 2-D uint8 array (the paper's 8-bit grey image; other dtypes are refused rather
    than quantised wrongly). Values lie in (0, 1]; 1 means every pixel equals its right-hand
    neighbour after quantisation. An image one pixel wide has no pixel pairs and is an error.

    >>> glcm_homogeneity(np.full((4, 4), 200, dtype=np.uint8))
    1.0
    >>> glcm_homogeneity(np.array([[0, 8, 0]], dtype=np.uint8))
    0.5
    """
    gray = np.asarray(gray)
    if gray.dtype != np.uint8:
        raise ValueError(
            f"expected an 8-bit (uint8) grey image, got {gray.dtype}: convert it first, e.g. "
            "scale floats in [0, 1] by 255 and round, or shift 16-bit values right by 8"
        )
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {gray.shape}")
    if gray.shape[1] < 2:
        raise ValueError("image is 1 pixel wide: it has no horizontal pixel pairs for a GLCM")
    quantized = quantize(gray, levels)
    difference = quantized[:, 1:] - quantized[:, :-1]
    return float(np.mean(1.0 / (1.0 + difference.astype(np.float64) ** 2)))


def homogeneity_of_file(path: str | os.PathLike, levels: int = LEVELS) -> float:
    """Homogeneity of an image file, read as ``cv2.imread(path, IMREAD_GRAYSCALE)`` would read it."""
    return glcm_homogeneity(read_image(path).gray, levels)
