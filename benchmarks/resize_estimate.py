"""Can the resize factor of a decoder image be told from the image itself? Two candidate
estimators, measured on resized decoder images (research: neither is shipped).

Usage: python benchmarks/resize_estimate.py [--images 4] [--decoder-images 2] [--size 256]

- ``spectrum``: the resampling-detection approach (Kirchner 2008, after Popescu and Farid 2005)
  joined with the decoder's own 8-pixel period, which a resize by s moves to 8s: the magnitude
  of a linear predictor's residue (the 4-neighbour mean) is averaged along rows and columns,
  and the factor is the s in 0.45-2.2 whose harmonics k / (8 s) below Nyquist carry the most
  spectral energy on average (each axis against its median).
- ``decoder``: the model's autoencoder itself: the image is mapped back by each candidate s
  (bicubic) and its central 96 px window reconstructed twice; the factor is the s with the
  least log ratio of the residuals' high-pass energies (the default statistic's measurement):
  15 factors from 0.5 to 2 on a log scale, then 11 within 5% of the best.

Per tiny autoencoder, ``--images`` images its decoder made from mixed latents of photos in
shared/images/real (never holdout/), resized by 0.5, 0.75, 1.5 and 2 with bicubic and bilinear
(and 1 as the control); a factor is right within 2%. ``decoder`` runs on the first
``--decoder-images`` of them (it costs 26 double reconstructions per image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from attribution import MODELS
from PIL import Image

from aedr.autoencoders import create_autoencoder
from aedr.measure.evidence import high_pass
from aedr.measure.images import to_model_input
from aedr.synthesis import decoder_images, photo_crops

FACTORS = (1.0, 0.5, 0.75, 1.5, 2.0)
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
TOLERANCE = 0.02


def spectrum_estimate(rgb: np.ndarray, low: float = 0.45, high: float = 2.2) -> float:
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    residue = np.abs(grey[1:-1, 1:-1] - 0.25 * (grey[:-2, 1:-1] + grey[2:, 1:-1]
                                                + grey[1:-1, :-2] + grey[1:-1, 2:]))  # fmt: skip
    energy = 0.0
    for profile in (residue.mean(axis=0), residue.mean(axis=1)):
        profile = (profile - profile.mean()) * np.hanning(len(profile))
        magnitude = np.abs(np.fft.rfft(profile, 8192))
        energy = energy + magnitude / np.median(magnitude)
    frequencies = np.fft.rfftfreq(8192)
    factors = np.arange(low, high, 0.0025)
    scores = [np.interp(np.arange(1, int(4 * s) + 1) / (8 * s), frequencies, energy).mean()
              for s in factors]  # fmt: skip
    return float(factors[int(np.argmax(scores))])


def decoder_ratio(autoencoder, image: Image.Image, factor: float, window: int = 96) -> float:
    width, height = image.size
    back = np.asarray(image.resize((round(width / factor), round(height / factor)),
                                   Image.Resampling.BICUBIC))  # fmt: skip
    side = min(window, back.shape[0] - 8, back.shape[1] - 8) // 8 * 8
    top, left = ((n - side) // 2 // 8 * 8 for n in back.shape[:2])
    x = torch.from_numpy(to_model_input(back[top : top + side, left : left + side])[None])
    with torch.inference_mode():
        x = autoencoder.as_input(x)
        x1 = autoencoder.decode(autoencoder.encode(x))
        x2 = autoencoder.decode(autoencoder.encode(x1))
        inner = (..., slice(16, -16), slice(16, -16))
        e1 = float((high_pass((x1 - x).float())[inner] ** 2).mean())
        e2 = float((high_pass((x2 - x1).float())[inner] ** 2).mean())
    return float(np.log(e1 / e2))


def decoder_estimate(autoencoder, image: Image.Image) -> float:
    coarse = np.exp(np.linspace(np.log(0.5), np.log(2.0), 15))
    best = coarse[int(np.argmin([decoder_ratio(autoencoder, image, s) for s in coarse]))]
    fine = best * np.exp(np.linspace(-0.05, 0.05, 11))
    return float(fine[int(np.argmin([decoder_ratio(autoencoder, image, s) for s in fine]))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--decoder-images", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shared-dir", default=str(Path(__file__).parents[2] / "shared"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    crops = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size, limit=24)
    weights = Path(args.shared_dir) / "weights" / "tae"
    right: dict[tuple[str, str, float], list[bool]] = {}
    for name in MODELS:
        autoencoder = create_autoencoder(name, weights, "cpu", "fp32")
        made = decoder_images(autoencoder, crops, args.images, seed=3)
        for index, rgb in enumerate(made):
            image = Image.fromarray(rgb)
            for factor in FACTORS:
                for filter_name, resample in FILTERS.items():
                    if factor == 1.0 and filter_name != "bicubic":
                        continue
                    side = round(args.size * factor)
                    resized = image if factor == 1.0 else image.resize((side, side), resample)
                    estimates = {"spectrum": spectrum_estimate(np.asarray(resized))}
                    if index < args.decoder_images:
                        estimates["decoder"] = decoder_estimate(autoencoder, resized)
                    for method, estimate in estimates.items():
                        ok = abs(estimate / factor - 1) <= TOLERANCE
                        right.setdefault((method, name, factor), []).append(ok)
                        print(f"{name} {index} x{factor} {filter_name}: {method} {estimate:.3f}")
    print(f"\n### Factor right within {TOLERANCE:.0%} (share of images, bicubic and bilinear)")
    print("| estimator | model | " + " | ".join(f"x{f}" for f in FACTORS) + " |")
    print("|---|---|" + "---|" * len(FACTORS))
    for method in ("spectrum", "decoder"):
        for name in MODELS:
            cells = [right.get((method, name, f), []) for f in FACTORS]
            print(f"| {method} | {name} | "
                  + " | ".join(f"{sum(c)}/{len(c)}" for c in cells) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
