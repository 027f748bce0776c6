"""Where the default settings differ from the paper's, and by how much the signal moves.

Scores the authors' own samples (``shared/images/generated/aedr-samples``: 5 off-grid JPEG photos
and on-grid PNGs of their models) with one shared tiny autoencoder under the default settings,
under ``--paper`` and under the default with one paper setting switched on, and prints per
difference the median and largest relative change of the ratio loss1 / loss2 against the
default. The decision statistic (fitted vs aedr) is compared on the attribution benchmark, not
here: its values are on other scales.

    python benchmarks/paper_mode.py --model taesd --folders Real,SD1.5
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from aedr.autoencoders import resolve_model
from aedr.measure.images import iter_image_files
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings

REPO = Path(__file__).resolve().parents[1]


def ratios(handle, paths: list[Path], settings: ScoreSettings) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    records = list(Scorer([handle], settings).score_paths(paths))
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    return np.array([r.ratio for r in records]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("AEDR_SHARED_DIR", str(REPO.parent / "shared"))
    parser.add_argument("--shared-dir", default=shared)
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--model", default="taesd")
    parser.add_argument("--folders", default="Real,SD1.5", help="aedr-samples folders")
    args = parser.parse_args()
    root = Path(args.shared_dir) / "images" / "generated" / "aedr-samples"
    paths = [p for f in args.folders.split(",") for p in iter_image_files([root / f])]
    handle = resolve_model(args.model, args.weights_dir)
    default = ScoreSettings()
    resized = replace(default, alignment="resize")
    bicubic = replace(resized, resize_filter="bicubic")
    # (difference, the settings it changes from, the settings with the paper's choice)
    variants = [
        ("resize (bilinear, model grid) instead of crop", default, resized),
        ("bicubic instead of bilinear (resizing)", resized, bicubic),
        ("multiples of 8 instead of the model's grid (bicubic)", bicubic,
         replace(bicubic, grid="paper")),
        ("latent sample (seed 1, per image) instead of mode", default,
         replace(default, latent="sample", seed=1, noise="image")),
        ("MSE in the model's precision instead of float64", default,
         replace(default, loss_dtype="model")),
        ("EXIF orientation not applied", default, replace(default, exif="ignore")),
        ("--paper (all of the above) instead of the default", default, ScoreSettings.paper()),
    ]  # fmt: skip
    cache: dict[ScoreSettings, np.ndarray] = {}

    def signal(settings: ScoreSettings) -> np.ndarray:
        if settings not in cache:
            cache[settings], seconds = ratios(handle, paths, settings)
            print(f"# scored in {seconds:.1f} s: {settings}", flush=True)
        return cache[settings]

    print(f"# {args.model}, {len(paths)} images of aedr-samples/{{{args.folders}}}")
    rows = []
    for name, before, after in variants:
        change = np.abs(signal(after) / signal(before) - 1)
        moved = int((change > 1e-6).sum())
        rows.append(f"| {name} | {np.median(change):.2%} | {change.max():.2%} | "
                    f"{moved}/{len(paths)} |")  # fmt: skip
    print("| difference (paper's choice against ours) | median change of the ratio | largest "
          "change | images moved |\n|---|---|---|---|")  # fmt: skip
    print("\n".join(rows))


if __name__ == "__main__":
    main()
