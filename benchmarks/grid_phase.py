"""Can the decoder's pixel grid be found again in an image cropped off it? (a negative result)

Usage: python benchmarks/grid_phase.py [--size 192] [--images 12] [--windows 48,64,96]

A decoder writes its output in 8-pixel blocks; cropping a generated image by a number of pixels
that is not a multiple of 8 shifts the blocks, and AEDR's evidence goes (README, Robustness). The
simplest repair: try all 64 grid phases on a central window, one reconstruction each, and keep
the phase whose reconstruction loses least on the pixels all windows share. This script crops
decoder-made images (shared photos through the shared tiny autoencoders; half reconstructions,
half latent mixtures) by (3, 6) pixels, so the true phase is (5, 2), and prints how often the
search finds it and what it costs per image and model. Not shipped: see the README for the result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from attribution import data_parser, tiny_autoencoders

from aedr.measure.images import to_model_input
from aedr.synthesis import decoder_images, photo_crops

SHIFT = (3, 6)
TRUE_PHASE = ((8 - SHIFT[0]) % 8, (8 - SHIFT[1]) % 8)


def search_phase(autoencoder, rgb: np.ndarray, window: int) -> tuple[int, int]:
    """The phase whose window reconstructs best on the pixels every phase's window holds."""
    factor = autoencoder.spatial_factor
    height, width = rgb.shape[:2]
    side = min(window, height - factor + 1, width - factor + 1) // factor * factor
    top = (height - side - factor) // 2 // factor * factor
    left = (width - side - factor) // 2 // factor * factor
    phases = [(dy, dx) for dy in range(factor) for dx in range(factor)]
    windows = np.stack([
        to_model_input(rgb[top + dy : top + dy + side, left + dx : left + dx + side])
        for dy, dx in phases
    ])  # fmt: skip
    with torch.inference_mode():
        x = torch.from_numpy(windows)
        error = (x - autoencoder.decode(autoencoder.encode(x))).double().square()
    shared = [
        error[i, :, factor - 1 - dy : side - dy, factor - 1 - dx : side - dx].mean().item()
        for i, (dy, dx) in enumerate(phases)
    ]
    return phases[int(np.argmin(shared))]


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    parser.add_argument("--images", type=int, default=12, help="decoder images per model")
    parser.add_argument("--windows", default="48,64,96", help="window sides to try, in pixels")
    parser.add_argument("--models", default="taesd,taef1")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    autoencoders = tiny_autoencoders(args)
    photos = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size)[: args.images]
    print(f"# {args.images} decoder images per model, {args.size} px, cropped by {SHIFT} px; "
          f"true phase {TRUE_PHASE}")  # fmt: skip
    print("| model | window px | true phase found | s per image and model |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        autoencoder = autoencoders[name]
        made = decoder_images(autoencoder, photos, args.images, seed=0,
                              reconstructions=args.images // 2)  # fmt: skip
        for window in map(int, args.windows.split(",")):
            start = time.perf_counter()
            found = [search_phase(autoencoder, image[SHIFT[0] :, SHIFT[1] :], window)
                     for image in made]  # fmt: skip
            seconds = (time.perf_counter() - start) / len(made)
            hits = sum(phase == TRUE_PHASE for phase in found)
            print(f"| {name} | {window} | {hits}/{len(made)} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
