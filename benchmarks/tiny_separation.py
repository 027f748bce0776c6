"""Decoder-made images vs photos under each shared tiny autoencoder: ratios, AUC, time per image.

Usage: python benchmarks/tiny_separation.py [--weights-dir DIR] [--shared-dir DIR] [--size 256]
Reads the Kodak photos in shared/images/real/kodak (never holdout/). For each model it makes
decoder images from mixed, noised latents of the photos (as `aedr demo` does), saves them as 8-bit
PNG, scores photos and decoder images, and prints the mean ratio of each, the ratio AUC and the
signal AUC (signal = ratio * homogeneity), and the scoring time per image on this machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aedr.autoencoders import create_autoencoder
from aedr.decide.statistics import get_statistic
from aedr.measure.images import read_image
from aedr.measure.scorer import Scorer
from aedr.synthesis import decoder_images

MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")


def auc(low: np.ndarray, high: np.ndarray) -> float:
    """Share of (low, high) pairs where the low-group value is the smaller one."""
    return float(np.mean(low[:, None] < high[None, :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared_default = Path(__file__).resolve().parents[2] / "shared"
    parser.add_argument("--shared-dir", default=os.environ.get("AEDR_SHARED_DIR", shared_default))
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photos", type=int, default=12)
    args = parser.parse_args()
    kodak = sorted((Path(args.shared_dir) / "images" / "real" / "kodak").glob("*.png"))
    photos = [read_image(p).rgb[: args.size, : args.size].copy() for p in kodak[: args.photos]]
    weights_dir = args.weights_dir or Path(args.shared_dir) / "weights" / "tae"
    print(f"{len(photos)} Kodak crops of {args.size}x{args.size} and as many decoder-made images")
    print(
        f"{'model':<8} {'ratio decoder':>13} {'ratio photo':>11} {'AUC ratio':>9} {'AUC signal':>10} {'s/image':>8}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for name in MODELS:
            autoencoder = create_autoencoder(name, weights_dir)
            made = decoder_images(autoencoder, photos, count=len(photos), seed=0)
            scorer = Scorer([autoencoder])
            results = {}
            started = time.perf_counter()
            for kind, images in (("decoder", made), ("photo", photos)):
                records = []
                for index, image in enumerate(images):
                    path = Path(scratch, f"{name}-{kind}-{index}.png")
                    Image.fromarray(image).save(path)
                    records.append(scorer.score_file(path)[0])
                results[kind] = records
            per_image = (time.perf_counter() - started) / (2 * len(photos))
            ratio = {k: np.array([r.ratio for r in v]) for k, v in results.items()}
            paper = get_statistic("aedr")
            signal = {
                k: np.array([paper.value(r.as_dict()) for r in v]) for k, v in results.items()
            }
            print(
                f"{name:<8} {ratio['decoder'].mean():13.3f} {ratio['photo'].mean():11.3f} "
                f"{auc(ratio['decoder'], ratio['photo']):9.3f} "
                f"{auc(signal['decoder'], signal['photo']):10.3f} {per_image:8.2f}"
            )


if __name__ == "__main__":
    main()
