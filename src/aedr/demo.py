"""``aedr demo``: the product on built-in examples, in about a minute on a CPU.

It writes example images (``write_examples``) and then runs exactly what a user runs,
``aedr attribute aedr-demo/test --model taesd``: the model's calibration comes from the
calibration library, built from the autoencoder alone the first time.

Real photos are 256 x 256 crops of scikit-image's bundled colour photos (no download).
"Generated" images are made the way a latent diffusion model makes them: the model's decoder
applied to latents that are not plain reconstructions of any photo (a random mixture of two
photos' latents plus a little noise), saved as 8-bit PNGs. ``aedr-demo/calibration`` holds
more of them, for trying ``aedr calibrate`` on images the model made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aedr.synthesis import decoder_images, save_images

CROP = 256
PHOTO_LOADERS = ("astronaut", "chelsea", "coffee", "rocket")
CALIBRATION_IMAGES = 20
TEST_IMAGES = 8


@dataclass(frozen=True)
class Examples:
    """What ``write_examples`` wrote: the test folder and the calibration images."""

    test: Path
    calibration: list[Path]
    generated: list[Path]
    real: list[Path]


def sample_photo_crops(per_photo: int = 2) -> list[np.ndarray]:
    """256 x 256 RGB crops of scikit-image's bundled colour photos (no download needed)."""
    from skimage import data

    crops = []
    for loader in PHOTO_LOADERS:
        photo = np.asarray(getattr(data, loader)())[..., :3]
        height, width = photo.shape[:2]
        for k in range(per_photo):
            # spread the crops from the top-left to the bottom-right corner
            top = (height - CROP) * k // max(per_photo - 1, 1)
            left = (width - CROP) * k // max(per_photo - 1, 1)
            crops.append(np.ascontiguousarray(photo[top : top + CROP, left : left + CROP]))
    return crops


def write_examples(
    workdir: Path,
    model: str = "taesd",
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> Examples:
    """Images ``model``'s decoder made and photo crops, under ``workdir``: ``test/generated``,
    ``test/real`` and ``calibration``."""
    from aedr.autoencoders import create_autoencoder

    autoencoder = create_autoencoder(model, weights_dir, device)
    photos = sample_photo_crops()
    made = decoder_images(autoencoder, photos, CALIBRATION_IMAGES + TEST_IMAGES)
    calibration = save_images(made[:CALIBRATION_IMAGES], workdir / "calibration", "generated-")
    generated = save_images(made[CALIBRATION_IMAGES:], workdir / "test" / "generated", "generated-")
    real = save_images(photos[:TEST_IMAGES], workdir / "test" / "real", "photo-")
    return Examples(workdir / "test", calibration, generated, real)
