"""How far half precision moves AEDR signals and verdicts, on the shared tiny autoencoders.

Usage: python benchmarks/dtypes.py [--size 192] [--images 16] [--device cpu]

For each tiny autoencoder: its own decoder-made images (mixed latents of photos) and photo crops
from shared/images/real are scored in fp32, bf16 and fp16. The fp32 threshold (KDE, alpha 0.05,
fitted on the decoder-made images) is applied to every dtype's signals; the table gives the
median and largest relative change of the signal against fp32, the verdicts that flip, and the
time per score.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from attribution import MODELS, data_parser

from aedr.autoencoders import create_autoencoder
from aedr.decide.calibration import kde_threshold
from aedr.decide.statistics import get_statistic
from aedr.measure.scorer import Scorer
from aedr.synthesis import decoder_images, photo_crops, save_images

PAPER = get_statistic("aedr")


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    parser.add_argument("--images", type=int, default=16, help="of each kind, per model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtypes", default="fp32,bf16,fp16", help="comma-separated; fp16 is very slow on CPUs"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    weights = args.weights_dir or Path(args.shared_dir) / "weights" / "tae"
    photos = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size, 2 * args.images)
    print(
        f"# {args.device}, {args.size} px, {args.images} decoder-made + {args.images} photos per model"
    )
    print("| model | dtype | median rel. change | max rel. change | verdict flips | s per score |")
    print("|---|---|---|---|---|---|")
    for name in MODELS:
        reference = create_autoencoder(name, weights, args.device, "fp32")
        made = decoder_images(reference, photos[: args.images], args.images, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            paths = save_images(made, Path(tmp), "made-") + save_images(
                photos[args.images :], Path(tmp), "photo-"
            )
            signals = {}
            for dtype in ["fp32", *(d for d in args.dtypes.split(",") if d != "fp32")]:
                autoencoder = create_autoencoder(name, weights, args.device, dtype)
                start = time.perf_counter()
                records = list(Scorer([autoencoder]).score_paths(paths))
                seconds = (time.perf_counter() - start) / len(records)
                signals[dtype] = np.array(
                    [PAPER.value(r.as_dict()) if r.ok else np.nan for r in records]
                )
                threshold = kde_threshold(signals["fp32"][: args.images], 0.05)
                change = np.abs(signals[dtype] / signals["fp32"] - 1)
                flips = int(((signals[dtype] < threshold) != (signals["fp32"] < threshold)).sum())
                print(f"| {name} | {dtype} | {np.nanmedian(change):.2e} | {np.nanmax(change):.2e} | "
                      f"{flips}/{len(paths)} | {seconds:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
