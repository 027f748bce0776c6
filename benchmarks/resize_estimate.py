"""How often the shipped enlargement estimate (aedr.measure.resampling) names the right factor,
and how often it names one for an image that was not enlarged.

Usage: python benchmarks/resize_estimate.py [--images 6] [--photos 12] [--size 256] [--seed 7]
    [--first-photo 24]

Per tiny autoencoder, ``--images`` images its decoder made (``--seed``) from mixed latents of
photos in shared/images/real (never holdout/), and ``--photos`` photos as they are, from the
``--first-photo``-th on (the defaults are images apart from the ones the estimate's strength
threshold was chosen on: seed 3 and the first 12 photos); each left
alone or resized by every factor of FACTORS with bicubic and bilinear, saved as PNG and as JPEG
of each quality of QUALITIES, and read back as ``aedr attribute`` reads a file (the estimate is
the one the scorer uses: ``LoadedImage.enlargement``). Then the estimate's own time per image. A cell: images whose factor was named
right within 2% / named wrong / in all (shrinks and x1: right = nothing named).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from attribution import MODELS
from PIL import Image

from aedr.autoencoders import create_autoencoder
from aedr.measure.images import read_image
from aedr.measure.resampling import estimate_enlargement
from aedr.synthesis import decoder_images, photo_crops

FACTORS = (1.0, 0.5, 0.75, 1.1, 1.25, 1.5, 1.75, 2.0, 3.0)
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
QUALITIES = (None, 95, 85, 75)  # None: PNG
TOLERANCE = 0.02


def judged(found, factor: float) -> str:
    """``right``, ``wrong`` or ``missed`` for one estimate of an image resized by ``factor``."""
    if factor <= 1:
        return "right" if found is None else "wrong"
    if found is None:
        return "missed"
    return "right" if abs(found.factor / factor - 1) <= TOLERANCE else "wrong"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--first-photo", type=int, default=24)
    parser.add_argument("--shared-dir", default=str(Path(__file__).parents[2] / "shared"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    limit = args.first_photo + args.photos
    crops = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size, limit=limit)
    weights = Path(args.shared_dir) / "weights" / "tae"
    sets = {"photo": crops[args.first_photo :]}
    for name in MODELS:
        autoencoder = create_autoencoder(name, weights, "cpu", "fp32")
        sets[name] = decoder_images(autoencoder, crops, args.images, seed=args.seed)
    counts: dict[tuple[str, float, int | None], dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, images in sets.items():
            for rgb in images:
                for factor in FACTORS:
                    for filter_name, resample in FILTERS.items():
                        if factor == 1.0 and filter_name != "bicubic":
                            continue
                        side = round(args.size * factor)
                        image = Image.fromarray(rgb)
                        resized = image if factor == 1.0 else image.resize((side, side), resample)
                        for quality in QUALITIES:
                            path = Path(scratch) / ("i.png" if quality is None else "i.jpg")
                            if quality is None:
                                resized.save(path)
                            else:
                                resized.save(path, quality=quality)
                            found = read_image(path).enlargement
                            cell = counts.setdefault((kind, factor, quality), {})
                            verdict = judged(found, factor)
                            cell[verdict] = cell.get(verdict, 0) + 1
    print(f"\n### Enlargement named right within {TOLERANCE:.0%} / named wrong / images "
          "(bicubic and bilinear; x1 and shrinks: right = none named)")  # fmt: skip
    for quality in QUALITIES:
        label = "PNG" if quality is None else f"JPEG {quality}"
        print(f"\n{label}\n\n| images | " + " | ".join(f"x{f:g}" for f in FACTORS) + " |")
        print("|---|" + "---|" * len(FACTORS))
        for kind in sets:
            cells = []
            for factor in FACTORS:
                cell = counts[(kind, factor, quality)]
                total = sum(cell.values())
                cells.append(f"{cell.get('right', 0)}/{cell.get('wrong', 0)}/{total}")
            print(f"| {kind} | " + " | ".join(cells) + " |")
    falsely = sum(counts[(k, f, q)].get("wrong", 0) for k in sets for f in FACTORS if f <= 1
                  for q in QUALITIES)  # fmt: skip
    looked = sum(sum(counts[(k, f, q)].values()) for k in sets for f in FACTORS if f <= 1
                 for q in QUALITIES)  # fmt: skip
    print(
        f"\nnot enlarged (x1 and shrinks, every format): an enlargement named for {falsely} "
        f"of {looked} ({falsely / looked:.1%})"
    )
    for side in (256, 512, 1024):  # the estimate's own cost, on the largest photo crop resized
        rgb = np.asarray(Image.fromarray(sets["photo"][0]).resize((side, side), Image.BICUBIC))
        started = time.perf_counter()
        for _ in range(10):
            estimate_enlargement(rgb)
        print(f"estimate at {side} px: {(time.perf_counter() - started) / 10 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
