"""How much an image was enlarged, read from the image alone (resampling detection).

An enlargement by s writes most output pixels as interpolations of their neighbours, in a pattern
that repeats every time the output grid and the input grid meet again: with period 1/(1 - 1/s)
output pixels for 1 < s <= 2 (x1.5: 3 pixels, x1.25: 5, x2: 2). The magnitude of a fixed linear
predictor's residue (first and second differences, after Popescu and Farid 2005 and Kirchner 2008)
therefore varies with that period along rows and columns, and the frequency f of its strongest
peak gives the factor, s = 1 / (1 - f). Photos and images a decoder wrote show no such peak;
shrunk images show none either (an antialiased shrink interpolates nothing), so only enlargements
are found.

What it cannot tell: an enlargement above 2 repeats with the period of a smaller one
(x3 like x1.5: both every 3 pixels), and is read as s / (s - 1); a JPEG's 8-pixel blocks, and a
decoder's grid where it shows, repeat at the frequencies k/8, which the estimate then skips (x2,
x1.333 and x1.6 are not found in a JPEG); below x1.09 the period is longer than the residue's own
slow variation. Measured per
model and condition in docs/results/robustness.md (resize-factor estimate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOWEST_FREQUENCY = 0.085
"""Peaks below this frequency (enlargements under x1.09) are not looked for: there a photo's own
slow variation of detail peaks too."""
STRENGTH = 10.0
"""How far the peak must stand above the residue spectrum's median to count: above every photo,
decoder image and shrunk image, PNG or JPEG, that the choice was made on (at most 8.4;
docs/results/robustness.md)."""
GRID_WIDTH = 0.01
"""Frequencies within this distance (or two spectral bins of the image, if wider) of k/8 are skipped in a JPEG, or where the 8-pixel period
itself peaks (a decoder's grid): there the blocks peak, not an interpolation."""
SPECTRUM_LENGTH = 4096  # zero-padded: the peak's frequency to 1/4096, the factor to 0.1% at x2
SMALLEST_SIDE = 64
LARGEST_SIDE = 1024
"""A larger image is read in its central window of this side: cost and memory stay bounded."""


@dataclass(frozen=True)
class Enlargement:
    """An enlargement found in an image: its ``factor`` and the ``strength`` of the periodic
    peak that gave it (times the residue spectrum's median; at least :data:`STRENGTH`)."""

    factor: float
    strength: float


def estimate_enlargement(rgb: np.ndarray, *, jpeg: bool = False) -> Enlargement | None:
    """The factor an (H, W, 3) uint8 image was enlarged by after it was made, when its
    interpolation left a periodic trace (1.09 < factor <= 2), else None. ``jpeg``: the pixels
    come from a JPEG file, whose block frequencies are skipped.

    >>> from PIL import Image
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    >>> estimate_enlargement(noise) is None
    True
    >>> enlarged = np.asarray(Image.fromarray(noise).resize((192, 192), Image.Resampling.BICUBIC))
    >>> round(estimate_enlargement(enlarged).factor, 2)
    1.5
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"an (H, W, 3) uint8 image is needed, not {rgb.dtype} {rgb.shape}")
    if min(rgb.shape[:2]) < SMALLEST_SIDE:
        return None  # too few periods to tell a peak from chance
    top, left = ((n - min(n, LARGEST_SIDE)) // 2 for n in rgb.shape[:2])
    rgb = rgb[top : top + LARGEST_SIDE, left : left + LARGEST_SIDE]  # the period is everywhere
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    frequencies = np.fft.rfftfreq(SPECTRUM_LENGTH)
    width = max(GRID_WIDTH, 2 / min(rgb.shape[:2]))  # a windowed peak's half-width
    grid = np.zeros_like(frequencies, dtype=bool)
    for k in range(1, 5):
        grid |= np.abs(frequencies - k / 8) <= width
    fundamental = np.abs(frequencies - 1 / 8) <= width
    band = frequencies >= LOWEST_FREQUENCY
    best: Enlargement | None = None
    for order in (1, 2):  # x2's two phases mirror each other: only first differences tell them
        strength = _strength(luma, order, frequencies)
        peak = int(np.argmax(np.where(band, strength, 0)))
        if grid[peak] and (jpeg or strength[fundamental].max() >= strength[peak] / 2):
            # an 8-pixel grid's own peaks (JPEG blocks, a decoder's grid): an interpolation at
            # k/8 counts only where it stands far above the grid's fundamental
            peak = int(np.argmax(np.where(band & ~grid, strength, 0)))
        if best is None or strength[peak] > best.strength:
            best = Enlargement(float(1 / (1 - frequencies[peak])), float(strength[peak]))
    return best if best is not None and best.strength >= STRENGTH else None


def _strength(luma: np.ndarray, order: int, frequencies: np.ndarray) -> np.ndarray:
    """The residue profiles' spectrum (rows and columns) against its median."""
    spectrum = _profile_spectrum(luma, order, 0) + _profile_spectrum(luma, order, 1)
    median = float(np.median(spectrum[frequencies >= LOWEST_FREQUENCY / 2]))
    return spectrum / median if median > 0 else np.zeros_like(spectrum)  # flat: no trace


def _profile_spectrum(luma: np.ndarray, order: int, axis: int) -> np.ndarray:
    """The magnitude spectrum of the residue's mean magnitude along ``axis``."""
    residue = np.abs(np.diff(luma, n=order, axis=axis))
    profile = residue.mean(axis=1 - axis)
    profile = (profile - profile.mean()) * np.hanning(len(profile))
    return np.abs(np.fft.rfft(profile, SPECTRUM_LENGTH))
