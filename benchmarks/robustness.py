"""Robustness of attribution to what images meet on the web: JPEG, resizing, crops, noise, blur.

Usage: python benchmarks/robustness.py [--size 128] [--calibration 24] [--test 12] [--real 24]

Same data as benchmarks/attribution.py (shared tiny autoencoders, shared photos, never holdout/).
Thresholds are calibrated once on clean decoder-made images, as a user would calibrate on a
generator's own outputs; then every test image (each model's and the real photos) is perturbed and
re-scored. Perturbations: JPEG quality 95/90/75, resize x0.5 and x1.5 (bilinear), a crop that
shifts the pixel grid by 3 px, Gaussian noise sigma 2/255, Gaussian blur radius 1. Prints mean
accuracy against the other models' images, against real images, and mean ROC AUC per method.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from attribution import MODELS, build, data_parser, score, tiny_autoencoders, usable
from PIL import Image, ImageFilter

from aedr.decide.calibration import calibrate
from aedr.decide.evaluation import evaluate, mean_table
from aedr.measure.scorer import ScoreSettings

METHODS = ("aedr", "ratio", "fitted", "single-loss")


def jpeg(quality: int):
    def apply(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def resize(factor: float):
    def apply(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, Image.Resampling.BILINEAR)

    return apply


def noise(image: Image.Image) -> Image.Image:
    rng = np.random.default_rng(abs(hash(image.tobytes())) % 2**32)
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(
        0, 2.0, (image.height, image.width, 3)
    )
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


PERTURBATIONS = {
    "clean": lambda image: image,
    "JPEG 95": jpeg(95),
    "JPEG 90": jpeg(90),
    "JPEG 75": jpeg(75),
    "resize x0.5": resize(0.5),
    "resize x1.5": resize(1.5),
    "crop off grid (3 px)": lambda image: image.crop((3, 3, image.width, image.height)),
    "noise sigma 2/255": noise,
    "blur radius 1": lambda image: image.filter(ImageFilter.GaussianBlur(1)),
}


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 128)
    parser.add_argument("--calibration", type=int, default=24)
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--real", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    autoencoders = tiny_autoencoders(args)
    print(f"# {args.size} px; {args.calibration} calibration + {args.test} test images per model, "
          f"{args.real} real; thresholds from clean images (alpha {args.alpha})")  # fmt: skip
    print("| perturbation | method | acc. vs other models | acc. vs real | ROC AUC |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        labels, calibration_paths = build(args, Path(tmp), autoencoders)
        calibrations = {}
        for name in MODELS:
            records, _ = score({name: autoencoders[name]}, calibration_paths[name], ScoreSettings())
            for method in METHODS:
                calibrations.setdefault(method, {})[name] = calibrate(
                    usable(records), name, args.alpha, method
                )
        for title, perturb in PERTURBATIONS.items():
            folder = Path(tmp) / title.replace(" ", "_").replace("/", "-")
            folder.mkdir()
            perturbed = {}
            for index, (path, label) in enumerate(sorted(labels.items())):
                target = folder / f"{index:04d}.png"
                perturb(Image.open(path).convert("RGB")).save(target)
                perturbed[str(target)] = label
            records, _ = score(autoencoders, sorted(perturbed), ScoreSettings())
            for method in METHODS:
                result = evaluate(records, perturbed, calibrations[method], method, args.alpha)
                means = mean_table(result).values()
                row = [np.nanmean([m[k] for m in means]) for k in ("vs_models", "vs_real", "auc")]
                print(
                    f"| {title} | {method} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
