"""Images an autoencoder's decoder makes, for calibration without the diffusion model.

A latent diffusion model's output is its decoder applied to a latent that no photo encodes to.
We imitate that from the user's own photos: decode latent mixtures of two photos plus a little
noise (and, optionally, plain reconstructions D(E(photo))), and quantise to 8 bits like a saved
generator output. Scoring these gives belonging signals for a threshold when the generator itself
(or images it made) is not at hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aedr.files import replacing
from aedr.measure.images import ImageError, iter_image_files, read_image, to_model_input

SIZE = 256


def decoder_images(
    autoencoder,
    photos: Sequence[np.ndarray],
    count: int,
    seed: int = 0,
    reconstructions: int = 0,
) -> list[np.ndarray]:
    """``count`` 8-bit RGB images from the decoder: ``reconstructions`` plain D(E(photo)), the
    rest mixtures ``w * z_a + (1 - w) * z_b + 0.1 * std * noise`` of two photos' latents."""
    import torch

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    batch = torch.from_numpy(np.stack([to_model_input(p) for p in photos]))
    with torch.inference_mode():
        latents = autoencoder.encode(autoencoder.as_input(batch)).float()
        images = []
        for index in range(count):
            if index < reconstructions:
                latent = latents[index % len(photos)]
            else:
                a, b = rng.choice(len(photos), size=2, replace=False)
                weight = rng.uniform(0.3, 0.7)
                noise = torch.randn(latents[a].shape, generator=generator) * 0.1 * latents.std()
                latent = weight * latents[a] + (1 - weight) * latents[b] + noise.to(latents.device)
            decoded = autoencoder.decode(latent[None].to(autoencoder.dtype)).float()[0]
            pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte()
            images.append(pixels.permute(1, 2, 0).cpu().numpy())
    return images


def photo_crops(
    paths: Sequence[str | os.PathLike], size: int = SIZE, limit: int | None = None
) -> list[np.ndarray]:
    """Top-left ``size`` x ``size`` crops of the readable photos under ``paths`` (smaller ones and
    unreadable files are skipped)."""
    crops = []
    for path in iter_image_files(paths):
        try:
            rgb = read_image(path).rgb
        except ImageError:
            continue
        if min(rgb.shape[:2]) >= size:
            crops.append(np.ascontiguousarray(rgb[:size, :size]))
        if limit is not None and len(crops) >= limit:
            break
    return crops


def save_images(images: Sequence[np.ndarray], folder: Path, prefix: str) -> list[Path]:
    """Lossless 8-bit PNGs ``<prefix>000.png``, ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{prefix}{index:03d}.png"
        with replacing(path, "wb") as stream:
            Image.fromarray(image).save(stream, "PNG")
        paths.append(path)
    return paths
