"""Robustness of the plain commands to what images meet on the web, at several image sizes.

Usage: python benchmarks/robustness.py [--sizes 256,512] [--calibration 16,8] [--test 2,1]
       [--real 4,2] [--perturbations "JPEG 75,crop 3 px"] [--full-up-to 256]
       [--chain-qualities 85]

Same data as benchmarks/attribution.py (shared tiny autoencoders, shared photos, never holdout/),
built at each size of ``--sizes`` (the counts are per size, in the same order; sizes above
``--full-up-to`` run only the conditions the robustness goals name, for the machine time). The
**default** columns run exactly the plain commands: each model is calibrated as ``aedr calibrate
--model M IMAGES`` does (``calibrate_images`` with its defaults: the shipped negative photos,
the size thresholds) on its clean decoder-made images, as a user calibrates on a generator's own
outputs; then every test image (each model's and the real photos) is perturbed, saved (PNG, or
JPEG for the JPEG rows and the chains) and decided with all five candidates as ``aedr attribute
PATHS`` does (default settings: JPEG files through their own tables, sides off the 8-pixel grid
at the phase found by search, no resize undone). The **stated factor** columns (resize rows
only) are not the plain commands: the same calibrations, the images scored with ``--resized-by
F``, as an analyst who knows the original size would; with ``--chain-qualities``, the chain rows
(resized, then JPEG) also with **chain thresholds** (``aedr calibrate --resized-by F
--jpeg-qualities Q``: the calibration images resized, then re-encoded; also opt-in). Prints per
size and perturbation: the open-set verdicts (right, real photos attributed), the mean over the
models of the pairwise accuracy against the other models' images and against real photos at the
thresholds, ROC AUC, what the default path found on the models' own images, and the attribution
cost per image (all five models, seconds and relative to a clean image of the same size).
"""

from __future__ import annotations

import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from attribution import MODELS, build, data_parser, score, tiny_autoencoders
from PIL import Image, ImageFilter

from aedr.decide.evaluation import evaluate, mean_table, open_set_metrics
from aedr.decide.statistics import DEFAULT_STATISTIC
from aedr.measure.degradation import GRID_PHASE, describe
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.measure.store import ScoreStore
from aedr.workflows import calibrate_images

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


def chain(factor: float, quality: int):
    """A platform's upload: resized (bicubic), then saved as a JPEG file."""

    def apply(image: Image.Image, target: Path) -> None:
        resize(factor, "bicubic")(image).save(target.with_suffix(".jpg"), "JPEG", quality=quality)

    return apply


def noise(image: Image.Image) -> Image.Image:
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(
        0, 2.0, (image.height, image.width, 3)
    )
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def crop(pixels: int):
    return lambda image: image.crop((pixels, pixels, image.width, image.height))


PERTURBATIONS = {  # name -> (how the file is written, the resize factor an analyst could state)
    "clean": (png(lambda image: image), None),
    **{f"JPEG {q}": (jpeg(q), None) for q in (95, 90, 75, 50)},
    **{f"resize x{f} {r}": (png(resize(f, r)), f) for r in FILTERS for f in (0.5, 0.75, 1.5, 2)},
    **{f"crop {p} px": (png(crop(p)), None) for p in (1, 3, 5, 7, 8)},
    "resize x1.5 + JPEG 85": (chain(1.5, 85), 1.5),
    "resize x0.75 + JPEG 75": (chain(0.75, 75), 0.75),
    "grey": (png(lambda image: image.convert("L")), None),  # a black-and-white conversion
    "noise sigma 2/255": (png(noise), None),
    "blur radius 1": (png(lambda image: image.filter(ImageFilter.GaussianBlur(1))), None),
}
DEFAULT_PERTURBATIONS = [name for name in PERTURBATIONS
                         if name not in ("crop 5 px", "noise sigma 2/255", "blur radius 1")]  # fmt: skip
TRUE_PHASES = {f"crop {p} px": [(8 - p) % 8] * 2 for p in (1, 3, 5, 7)}
"""The grid phase a perfect search finds on a crop of a model's own image (crop 8 px stays on
the grid: what such a search would give, with nothing searched)."""
GOALS = ["clean", "JPEG 75", "resize x0.75 bicubic", "resize x1.5 bicubic", "crop 3 px",
         "resize x1.5 + JPEG 85"]  # the conditions the robustness goals name  # fmt: skip


def counts(text: str, sizes: list[int]) -> list[int]:
    """One count per size: ``16,8`` for sizes 256,512 (a single number serves them all)."""
    values = [int(v) for v in text.split(",")]
    return values * len(sizes) if len(values) == 1 else values


def perturb(labels: dict[str, str], folder: Path, write) -> dict[str, str]:
    """Every labelled image perturbed and written into ``folder``, labelled alike."""
    folder.mkdir(parents=True)
    perturbed = {}
    for index, (path, label) in enumerate(sorted(labels.items())):
        target = folder / f"{index:04d}"
        write(Image.open(path).convert("RGB"), target)
        perturbed[str(next(folder.glob(f"{index:04d}.*")))] = label
    return perturbed


def decided(records, labels, calibrations, alpha) -> list[float]:
    """Verdicts right, real photos attributed, accuracy vs other models and vs real, ROC AUC."""
    result = evaluate(records, labels, calibrations, DEFAULT_STATISTIC, alpha)
    numbers, means = open_set_metrics(result.confusion), mean_table(result).values()
    pairwise = [float(np.nanmean([m[k] for m in means])) for k in ("vs_models", "vs_real", "auc")]
    return [numbers["verdict_accuracy"], numbers["real_false_attribution"], *pairwise]


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 256)
    parser.add_argument("--sizes", default="256,512", help="image sides, comma-separated")
    parser.add_argument("--calibration", default="16,8", help="calibration images per model")
    parser.add_argument("--test", default="2,1", help="test images per model")
    parser.add_argument("--real", default="4,2", help="real test photos")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--perturbations", default=",".join(DEFAULT_PERTURBATIONS))
    parser.add_argument("--chain-qualities", default="",
                        help="also chain thresholds at these JPEG qualities for the chain rows "
                             "(aedr calibrate --resized-by F --jpeg-qualities Q), at sizes up to "
                             "--full-up-to")  # fmt: skip
    parser.add_argument("--full-up-to", type=int, default=256,
                        help="larger sizes run only the goals' conditions (clean first)")  # fmt: skip
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    sizes = [int(s) for s in args.sizes.split(",")]
    chain_qualities = [int(q) for q in args.chain_qualities.split(",") if q]
    plan = zip(sizes, counts(args.calibration, sizes), counts(args.test, sizes),
               counts(args.real, sizes), strict=True)  # fmt: skip
    autoencoders = tiny_autoencoders(args)
    with tempfile.TemporaryDirectory() as tmp, ScoreStore(Path(tmp) / "store.sqlite") as store:
        for size, n_calibration, n_test, n_real in plan:
            data = Path(tmp) / str(size)
            args.size, args.calibration, args.test, args.real = size, n_calibration, n_test, n_real
            labels, calibration_paths = build(args, data, autoencoders)
            calibrations, start = {}, time.perf_counter()
            for name, autoencoder in autoencoders.items():  # aedr calibrate --model NAME IMAGES
                scorer = Scorer([autoencoder], ScoreSettings(), store=store)
                calibrations[name] = calibrate_images(scorer, calibration_paths[name]).calibration
            print(f"\n## {size} px: {n_calibration} calibration + {n_test} test images per model "
                  f"({', '.join(MODELS)}), {n_real} real photos; alpha {args.alpha}; the five "
                  f"calibrations took {time.perf_counter() - start:.0f} s")  # fmt: skip
            print("| perturbation | default: verdicts right / real attributed | default: acc. vs "
                  "models / vs real / AUC | stated factor (opt-in): the same five | stated factor "
                  "+ chain thresholds (opt-in): the same five | found on own images (default) | "
                  "cost per image, x clean (default) |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
            clean_seconds = None
            titles = args.perturbations.split(",")
            if size > args.full_up_to:
                titles = [t for t in titles if t in GOALS]
            for title in titles:
                write, factor = PERTURBATIONS[title]
                perturbed = perturb(labels, data / title.replace(" ", "_").replace("/", "-"), write)
                records, seconds = score(autoencoders, sorted(perturbed), ScoreSettings())
                if title == "clean":
                    clean_seconds = seconds
                right, real, *pairwise = decided(records, perturbed, calibrations, args.alpha)
                stated = chained = ""
                if factor is not None:  # aedr attribute --resized-by F
                    resized, _ = score(autoencoders, sorted(perturbed),
                                       ScoreSettings(resized_by=factor))  # fmt: skip
                    stated = numbers(decided(resized, perturbed, calibrations, args.alpha))
                    jpeg_files = any(r["jpeg_quality"] is not None for r in resized)
                    if jpeg_files and chain_qualities and size <= args.full_up_to:
                        chain = chain_calibrations(autoencoders, calibration_paths, factor,
                                                   chain_qualities, store)  # fmt: skip
                        chained = numbers(decided(resized, perturbed, chain, args.alpha))
                found = [", ".join(filter(None, ("grey" if r.get("grey") else "",
                                                 describe(r["degradation"]))))
                         for r in records if perturbed[r["path"]] == r["model"]]  # fmt: skip
                named = sorted({f for f in found if f})
                example = f", e.g. {named[0]}" if named else ""
                summary = f"{sum(map(bool, found))}/{len(found)}{example}"
                if title in TRUE_PHASES:
                    true = sum(r["degradation"].get(GRID_PHASE) == TRUE_PHASES[title]
                               for r in records if perturbed[r["path"]] == r["model"])  # fmt: skip
                    summary += f"; at the true phase {true}/{len(found)}"
                ratio = f"{seconds / clean_seconds:.2f}x, " if clean_seconds else ""
                print(f"| {title} | {numbers([right, real])} | {numbers(pairwise)} | {stated} | "
                      f"{chained} | {summary} | {ratio}{seconds * len(autoencoders):.1f} s |")  # fmt: skip


def numbers(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def chain_calibrations(autoencoders, calibration_paths, factor, qualities, store) -> dict:
    """Each model's calibration as ``aedr calibrate --model M --resized-by F --jpeg-qualities Q
    IMAGES`` makes it: thresholds for its images resized by ``factor``, then re-encoded."""
    settings = ScoreSettings(resized_by=factor)
    return {name: calibrate_images(Scorer([autoencoder], settings, store=store),
                                   calibration_paths[name], jpeg_qualities=qualities).calibration
            for name, autoencoder in autoencoders.items()}  # fmt: skip


if __name__ == "__main__":
    main()
