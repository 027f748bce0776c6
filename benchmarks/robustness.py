"""Robustness of attribution to what images meet on the web, with and without the corrections.

Usage: python benchmarks/robustness.py [--size 128] [--calibration 24] [--test 12] [--real 24]
       [--models taesd,...] [--perturbations "JPEG 75,crop 3 px"] [--methods fitted]
       [--jpeg-qualities 95,85,70,50] [--jpeg-statistic ac]

Same data as benchmarks/attribution.py (shared tiny autoencoders, shared photos, never holdout/).
Thresholds are calibrated once on clean decoder-made images, as a user would calibrate on a
generator's own outputs; then every test image (each model's and the real photos) is perturbed and
scored twice: plainly (``robust="off"``) and degradation-aware (``robust="auto"``, the default
since 0.4.0: JPEG files through their own tables, images off the grid at the phase found by
search; for a resize the factor is stated, ``resized_by``, as a user who knows the original size
would). Prints, per
perturbation and correction, the mean over the models of the pairwise accuracy against the other
models' images and against real images at the clean-calibrated threshold, ROC AUC, TPR at 5% FPR,
and the cost of a score relative to the plain one on the same images. JPEG files are also decided
at JPEG thresholds (``aedr calibrate --jpeg-qualities``: the clean calibration images re-encoded
at each of ``--jpeg-qualities`` and measured with the same correction; a file takes the nearest
quality's threshold), rows "off + JPEG thresholds" and "auto + JPEG thresholds"; with
``--jpeg-statistic`` also JPEG thresholds that read that statistic (``aedr calibrate
--jpeg-statistic``), rows "... + JPEG thresholds on ac" for the other methods. The default
qualities differ from the test qualities on purpose: real files rarely match a calibrated quality.
Resized images are also decided at resize thresholds (``aedr calibrate
--resized-by F``: the clean calibration images resized by the factor with bicubic, then measured
with the resize undone), row "auto + resize thresholds"; the bilinear rows show what a filter
other than the calibration's costs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from attribution import MODELS, build, data_parser, score, tiny_autoencoders, usable
from PIL import Image, ImageFilter

from aedr.decide.calibration import calibrate
from aedr.decide.evaluation import evaluate, mean_table
from aedr.measure.degradation import describe
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.measure.store import ScoreStore
from aedr.workflows import add_jpeg_thresholds, calibrate_images

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def jpeg(quality: int):
    """Saved as a JPEG file: the scorer reads its tables from it."""

    def apply(image: Image.Image, target: Path) -> None:
        image.save(target.with_suffix(".jpg"), "JPEG", quality=quality)

    return apply


def png(transform):
    def apply(image: Image.Image, target: Path) -> None:
        transform(image).save(target.with_suffix(".png"))

    return apply


def resize(factor: float, resample: str):
    def apply(image: Image.Image) -> Image.Image:
        size = (round(image.width * factor), round(image.height * factor))
        return image.resize(size, FILTERS[resample])

    return apply


def chain(image: Image.Image, target: Path) -> None:
    """A platform's upload: enlarged by 1.5 (as a 720 px image to 1080) and saved as JPEG 85."""
    resize(1.5, "bicubic")(image).save(target.with_suffix(".jpg"), "JPEG", quality=85)


def noise(image: Image.Image) -> Image.Image:
    rng = np.random.default_rng(abs(hash(image.tobytes())) % 2**32)
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(
        0, 2.0, (image.height, image.width, 3)
    )
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def crop(pixels: int):
    return lambda image: image.crop((pixels, pixels, image.width, image.height))


PERTURBATIONS = {  # name -> (how the file is written, the resize factor a user would state)
    "clean": (png(lambda image: image), None),
    **{f"JPEG {q}": (jpeg(q), None) for q in (95, 90, 75, 50)},
    **{f"resize x{f} {r}": (png(resize(f, r)), f) for r in FILTERS for f in (0.5, 0.75, 1.5, 2)},
    **{f"crop {p} px": (png(crop(p)), None) for p in (1, 3, 5, 7)},
    "resize x1.5 + JPEG 85": (chain, 1.5),
    "noise sigma 2/255": (png(noise), None),
    "blur radius 1": (png(lambda image: image.filter(ImageFilter.GaussianBlur(1))), None),
}


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 128)
    parser.add_argument("--calibration", type=int, default=24)
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--real", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--perturbations", default=",".join(PERTURBATIONS))
    parser.add_argument("--methods", default="fitted", help="decision statistics, comma-separated")
    parser.add_argument("--jpeg-qualities", default="95,85,70,50",
                        help="qualities the JPEG thresholds are fitted at")  # fmt: skip
    parser.add_argument("--jpeg-statistic", "--jpeg-method", dest="jpeg_method", default="",
                        help="also JPEG thresholds on this statistic (aedr calibrate "
                             "--jpeg-statistic), for every other method")  # fmt: skip
    args = parser.parse_args()
    qualities = [int(q) for q in args.jpeg_qualities.split(",")]
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    names = args.models.split(",")
    autoencoders = {n: a for n, a in tiny_autoencoders(args).items() if n in names}
    methods = args.methods.split(",")
    print(f"# {args.size} px; {args.calibration} calibration + {args.test} test images per model "
          f"({', '.join(names)}), {args.real} real; thresholds from clean images (alpha "
          f"{args.alpha})")  # fmt: skip
    print("| perturbation | method | correction | acc. vs other models | acc. vs real | ROC AUC "
          "| TPR at 5% FPR | degradation found (own images) | cost x plain |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, ScoreStore(Path(tmp) / "jpeg.sqlite") as store:
        labels, calibration_paths = build(args, Path(tmp), autoencoders)
        # per correction: clean thresholds, and the same with JPEG thresholds added
        calibrations, with_jpeg, jpeg_method = {}, {}, {}
        for correction, settings in {"off": ScoreSettings(robust="off"),
                                     "auto": ScoreSettings(robust="auto")}.items():  # fmt: skip
            for name in autoencoders:
                paths = calibration_paths[name]
                records, _ = score({name: autoencoders[name]}, paths, settings)
                # the re-encoded copies are measured once, whatever the number of methods
                scorer = Scorer([autoencoders[name]], settings, store=store)
                for method in methods:
                    clean = calibrate(usable(records), name, args.alpha, method)
                    calibrations.setdefault((correction, method), {})[name] = clean
                    with_jpeg.setdefault((correction, method), {})[name] = add_jpeg_thresholds(
                        scorer, clean, paths, qualities, default_negatives=False
                    )
                    if args.jpeg_method not in ("", method):
                        jpeg_method.setdefault((correction, method), {})[name] = (
                            add_jpeg_thresholds(scorer, clean, paths, qualities,
                                                default_negatives=False,
                                                statistic=args.jpeg_method)
                        )  # fmt: skip
        resized = {}  # factor -> {(correction, method): {model: calibration at that factor}}

        def resize_thresholds(factor: float) -> dict:
            if factor not in resized:
                for name in autoencoders:
                    settings = ScoreSettings(robust="auto", resized_by=factor)
                    run = calibrate_images(Scorer([autoencoders[name]], settings),
                                           calibration_paths[name], methods[0], args.alpha,
                                           default_negatives=False)  # fmt: skip
                    for method in methods:
                        resized.setdefault(factor, {}).setdefault(("auto", method), {})[name] = (
                            calibrate(run.records, name, args.alpha, method)
                        )
            return resized[factor]

        for title in args.perturbations.split(","):
            write, factor = PERTURBATIONS[title]
            folder = Path(tmp) / title.replace(" ", "_").replace("/", "-")
            folder.mkdir()
            perturbed = {}
            for index, (path, label) in enumerate(sorted(labels.items())):
                target = folder / f"{index:04d}"
                write(Image.open(path).convert("RGB"), target)
                perturbed[str(next(folder.glob(f"{index:04d}.*")))] = label
            corrections = {"off": ScoreSettings(robust="off"),
                           "auto": ScoreSettings(robust="auto", resized_by=factor)}  # fmt: skip
            seconds = {}
            for correction, settings in corrections.items():
                records, seconds[correction] = score(autoencoders, sorted(perturbed), settings)
                found = [describe(r["degradation"]) for r in records
                         if r["degradation"] and perturbed[r["path"]] == r["model"]]  # fmt: skip
                own = sum(perturbed[r["path"]] == r["model"] for r in records)
                summary = f"{len(found)}/{own}" + (f", e.g. {found[0]}" if found else "")
                jpeg_files = any(r["jpeg_quality"] is not None for r in records)
                variants = {correction: calibrations}
                if jpeg_files:
                    variants[f"{correction} + JPEG thresholds"] = with_jpeg
                    if jpeg_method:
                        variants[f"{correction} + JPEG thresholds on {args.jpeg_method}"] = (
                            jpeg_method
                        )
                if factor is not None and correction == "auto":
                    variants["auto + resize thresholds"] = resize_thresholds(factor)
                cost = seconds[correction] / seconds["off"]  # per score, same files
                for method in methods:
                    for variant, chosen in variants.items():
                        if (correction, method) not in chosen:  # no JPEG method of its own
                            continue
                        result = evaluate(records, perturbed, chosen[(correction, method)],
                                          method, args.alpha)  # fmt: skip
                        means = mean_table(result).values()
                        row = [np.nanmean([m[k] for m in means])
                               for k in ("vs_models", "vs_real", "auc")]  # fmt: skip
                        tpr = np.nanmean([r.metrics.get("tpr_at_5pct_fpr", np.nan)
                                          for r in result.models.values()])  # fmt: skip
                        print(f"| {title} | {method} | {variant} | {row[0]:.4f} | {row[1]:.4f} "
                              f"| {row[2]:.4f} | {tpr:.4f} | {summary} | {cost:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
