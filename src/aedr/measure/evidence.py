"""Local double reconstruction: where in an image the decoder's output lies (measuring only).

Per pixel, the evidence is ``log(e1 + q) - log(e2 + q)`` where e1 and e2 are the energies of the
*high-pass* parts of the residuals x - x1 and x1 - x2 (summed over colour channels), and q is the
noise energy of 8-bit quantisation. Each pixel also gets a weight, how informative it is: near 0
where both residuals are at the noise floor (a flat sky says nothing about who drew it), near 1
where they carry detail. A map is the weighted mean of the evidence over a Gaussian window
(standard deviation half the ``window``), shrunk towards ``PRIOR_EVIDENCE`` (a photo's first
reconstruction losing e times more) by ``PRIOR_WEIGHT``: windows without information read as
"not shown to be the decoder's", never as consistent. Lower means "consistent with this decoder",
like every signal in ``aedr``. Each choice was measured (docs/localization.md): the high-pass
split removes the low-frequency colour drift of the residuals, which carries no trace of the
decoder; the floor q keeps noiseless areas finite through the log; the weights keep flat areas
of photos from reading as decoder-made; per-pixel evidence averaged after the log beats block
energies and a ratio of smoothed energies.

>>> import numpy as np
>>> evidence = np.zeros((2, 16, 24), dtype=np.float32)  # (weighted evidence, weight)
>>> flat = local_map(evidence, window=8)  # no information anywhere: the prior
>>> flat.shape, float(flat.max()) == PRIOR_EVIDENCE
((16, 24), True)
>>> image_map(np.ones((16, 24), np.float32), 30, 20, "crop").shape
(20, 30)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

HIGH_PASS_SIGMA = 2.0
"""Standard deviation (pixels) of the Gaussian whose residual is the high-pass part."""
QUANTISATION_ENERGY = 3 * (2 / 255) ** 2 / 12
"""Energy of uniform 8-bit quantisation noise over three channels in [-1, 1] units."""
INFORMATIVE_ENERGY = 3 * QUANTISATION_ENERGY
"""Residual energy (both passes together) at which a pixel's weight reaches 1 - 1/e."""
PRIOR_EVIDENCE = 1.0
"""What a window without information reads as: a log ratio of 1, the first pass losing e times
more (the photo side of every own-image threshold measured)."""
PRIOR_WEIGHT = 0.2
"""The prior's weight, in units of a window's total pixel weight."""
DEFAULT_WINDOW = 48
"""Map window in pixels: the smoothing Gaussian's standard deviation is half of it."""


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def high_pass(images: torch.Tensor, sigma: float = HIGH_PASS_SIGMA) -> torch.Tensor:
    """images minus their Gaussian blur (separable, reflected at the borders), per channel."""
    import torch
    import torch.nn.functional as F

    kernel = torch.from_numpy(_gaussian_kernel(sigma)).to(images.device)
    radius = kernel.numel() // 2
    channels = images.shape[1]
    blurred = images
    for shape in ((1, 1, 1, -1), (1, 1, -1, 1)):
        weight = kernel.reshape(shape).expand(channels, 1, *kernel.reshape(shape).shape[2:])
        pad = (radius, radius, 0, 0) if shape[3] == -1 else (0, 0, radius, radius)
        # reflect padding needs the side to exceed the radius; tiny inputs replicate instead
        mode = "reflect" if min(images.shape[2:]) > radius else "replicate"
        blurred = F.conv2d(F.pad(blurred, pad, mode=mode), weight, groups=channels)
    return images - blurred


def _weighted_log_ratio(
    x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight x log ratio, weight), each (B, H, W) float32: the per-pixel evidence."""
    import torch

    x, x1, x2 = (t.to(torch.float32) for t in (x, x1, x2))
    e1 = high_pass(x - x1).square().sum(dim=1)
    e2 = high_pass(x1 - x2).square().sum(dim=1)
    log_ratio = torch.log(e1 + QUANTISATION_ENERGY) - torch.log(e2 + QUANTISATION_ENERGY)
    weight = -torch.expm1(-(e1 + e2) / INFORMATIVE_ENERGY)
    return weight * log_ratio, weight


def pixel_evidence(x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> np.ndarray:
    """(B, 2, H, W) float32 per-pixel evidence from one double reconstruction (B, 3, H, W):
    channel 0 the weighted log ratio, channel 1 the weight (see the module's docstring)."""
    import torch

    return torch.stack(_weighted_log_ratio(x, x1, x2), dim=1).cpu().numpy()


def interior(maps: torch.Tensor, border: int) -> torch.Tensor:
    """``maps`` (..., H, W) without ``border`` pixels along each edge, at most a quarter of each
    side (so a small image keeps its centre half).

    >>> import torch
    >>> tuple(interior(torch.zeros(1, 256, 64), 16).shape), tuple(interior(torch.zeros(40, 8), 16).shape)
    ((1, 224, 32), (20, 4))
    """
    if border < 0:
        raise ValueError(f"the border must be a whole number of pixels of at least 0, not {border}")
    rows, columns = (min(border, side // 4) for side in maps.shape[-2:])
    return maps[..., rows : maps.shape[-2] - rows, columns : maps.shape[-1] - columns]


def evidence_means(
    x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, border: int = 0
) -> torch.Tensor:
    """(B, 2) float64: each image's mean weighted log ratio and mean weight over its pixels,
    those within ``border`` of an edge left out (:func:`interior`; the high-pass is taken on
    the whole image first).

    A decoder reconstructs a crop worst along its edges, which in an image it made were inside
    the canvas: left in, they make a smaller view of the same image read less like the decoder's
    (docs/results/robustness.md#image-size). Means over equal-sized crops average to the means
    over all their pixels, so a crop-measured image combines exactly;
    :func:`highpass_log_ratio` turns them into the image's statistic."""
    import torch

    weighted, weight = (interior(m, border) for m in _weighted_log_ratio(x, x1, x2))
    return torch.stack((weighted.double().mean(dim=(1, 2)), weight.double().mean(dim=(1, 2))), 1)


def highpass_log_ratio(weighted_mean: float, weight_mean: float) -> float:
    """The whole image's evidence: the map's weighted mean taken over every pixel at once,
    shrunk towards the prior like each window of the map.

    Unlike loss1 / loss2, flat areas, which any decoder reproduces, weigh nothing, so a flat
    photo is not taken for decoder output; and the high-pass split drops the residuals'
    low-frequency colour drift (docs/results/open-set.md: it separates each tiny autoencoder's
    images from photos and from the other models' images better than the loss ratio).

    >>> highpass_log_ratio(0.0, 0.0) == PRIOR_EVIDENCE  # no information: the prior
    True
    >>> round(highpass_log_ratio(0.8 * 0.3, 0.8), 3)  # informative: near the pixels' 0.3
    0.44
    """
    if not (math.isfinite(weighted_mean) and math.isfinite(weight_mean)) or weight_mean < 0:
        raise ValueError(
            f"evidence means must be finite with a non-negative weight, got "
            f"{weighted_mean!r}, {weight_mean!r}"
        )
    return (weighted_mean + PRIOR_WEIGHT * PRIOR_EVIDENCE) / (weight_mean + PRIOR_WEIGHT)


def check_window(window: float) -> float:
    """The window, refused unless it is a positive number of pixels."""
    if not isinstance(window, (int, float)) or not np.isfinite(window) or window <= 0:
        raise ValueError(f"the map window must be a positive number of pixels, not {window!r}")
    return float(window)


def local_map(evidence: np.ndarray, window: float = DEFAULT_WINDOW) -> np.ndarray:
    """The local statistic (H, W) float32: the weighted mean of ``evidence`` (2, H, W), as
    ``pixel_evidence`` makes it, over ``window`` pixels, shrunk towards the prior."""
    from scipy.ndimage import gaussian_filter

    evidence = np.asarray(evidence, dtype=np.float32)
    if evidence.ndim != 3 or evidence.shape[0] != 2 or evidence.size == 0:
        raise ValueError(
            f"evidence must be a non-empty (2, H, W) array, not shape {evidence.shape}"
        )
    sigma = check_window(window) / 2
    weighted, weight = (gaussian_filter(layer, sigma, mode="reflect") for layer in evidence)
    statistic = (weighted + PRIOR_WEIGHT * PRIOR_EVIDENCE) / (weight + PRIOR_WEIGHT)
    return statistic.astype(np.float32)


def image_map(model_map: np.ndarray, width: int, height: int, alignment: str) -> np.ndarray:
    """A map on the model input's grid placed on the image's own (height, width) pixels.

    ``crop``: the input was the image's top-left aligned region, so the map covers it and the
    few uncovered rows and columns (fewer than the grid) repeat the nearest value. ``resize``: the
    map is resized back bilinearly.
    """
    rows, columns = model_map.shape
    if alignment == "resize":
        from PIL import Image

        resized = Image.fromarray(model_map.astype(np.float32), mode="F")
        return np.asarray(resized.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    if rows > height or columns > width:
        raise ValueError(f"a {columns}x{rows} map does not fit a {width}x{height} image")
    pad = ((0, height - rows), (0, width - columns))
    return np.pad(model_map, pad, mode="edge").astype(np.float32)
