"""Localization benchmark: does ``aedr localize`` find the region a decoder wrote into a photo?

Usage: python benchmarks/localization.py [--photos 6] [--size 256] [--models taesd,...]
       [--weights-dir DIR] [--shared-dir DIR]

Data (shared/images/real only, never holdout/): photos are shuffled (seed 0); the first
``--calibration`` make each model's own images (decoder mixtures of latents, as in
``benchmarks/attribution.py``), on which ``aedr calibrate --local`` fits the local threshold.
Each of the next ``--photos`` photos gives, per model:

- composites: the decoder's image of the photo (its latent plus noise of 0.1 latent std) pasted
  into the photo through hard rectangles of 10%, 30% and 60% of the area, a feathered rectangle
  (20%), and a hard and a feathered free-form blob (5-60%), all at random pixel offsets;
- the untouched photo, and the wholly decoder-made image.

Conditions: clean PNG; JPEG quality 90; the composite cropped 3 px off the 8-pixel grid.
Everything is measured through the shipped path (``workflows.localize_images`` on files, the
calibration through ``workflows.calibrate_images``). Baselines use the same reconstructions
computed here: the single-loss map (e1 smoothed with the same window, the AEROBLADE-style idea)
and the naive replica (log of 64-px box-filtered e1 over e2).

Prints per model and condition: pixel ROC AUC of the map against the mask (hard rectangles of
10% or more, and all masks), IoU of the thresholded map, image-level detection of composites
against untouched photos (ROC AUC of the share below the threshold, and the rate of ``partial``
verdicts on each), and the share of decoder-made images below the threshold.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, uniform_filter
from scipy.stats import rankdata

from aedr.attributor import Attributor
from aedr.autoencoders import create_autoencoder
from aedr.measure.evidence import DEFAULT_WINDOW
from aedr.measure.images import to_model_input
from aedr.measure.scorer import Scorer
from aedr.synthesis import decoder_images, photo_crops, save_images
from aedr.workflows import calibrate_images, localize_images

MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")
PATCH_SIDES = (48, 64, 96, 128, 160)
"""Sides of the pasted squares of ``--patches`` (in a 256 px photo: 4% to 39% of it)."""
CONDITIONS = ("clean", "jpeg90", "crop3")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    labels = np.asarray(labels, bool).ravel()
    ranks = rankdata(np.asarray(scores, float).ravel())
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def blob(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """A free-form connected-looking blob covering about ``area`` of a size x size image."""
    field = gaussian_filter(rng.standard_normal((size, size)), size / 10)
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(0.3, 0.7, 2)
    field -= 4 * field.std() * ((yy - cy) ** 2 + (xx - cx) ** 2)  # one main lobe
    return field > np.quantile(field, 1 - area)


def masks(rng: np.random.Generator, size: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, weight in [0, 1] of the decoder's image, ground-truth mask) for each composite."""

    def rectangle(area: float) -> np.ndarray:
        side = int(size * np.sqrt(area))
        top, left = rng.integers(0, size - side, 2)
        mask = np.zeros((size, size), bool)
        mask[top : top + side, left : left + side] = True
        return mask

    made = [(f"rect{int(a * 100)} hard", rectangle(a)) for a in (0.1, 0.3, 0.6)]
    made.append(("rect20 feathered", rectangle(0.2)))
    made.append(("blob hard", blob(rng, size, rng.uniform(0.05, 0.6))))
    made.append(("blob feathered", blob(rng, size, rng.uniform(0.05, 0.6))))
    out = []
    for kind, mask in made:
        weight = gaussian_filter(mask.astype(float), 4) if "feathered" in kind else mask * 1.0
        out.append((kind, weight, weight > 0.5))
    return out


def decoder_view(autoencoder, photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The decoder's image of ``photo``: its latent plus 0.1 latent-std noise, decoded."""
    import torch

    x = torch.from_numpy(to_model_input(photo))[None]
    with torch.inference_mode():
        latent = autoencoder.encode(x)
        noise = torch.from_numpy(rng.standard_normal(latent.shape).astype(np.float32))
        image = autoencoder.decode(latent + 0.1 * latent.std() * noise)[0]
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def baseline_maps(autoencoder, rgb: np.ndarray, window: float) -> dict[str, np.ndarray]:
    """The single-loss map and the naive box-filter ratio map of the aligned image."""
    import torch

    height, width = (side - side % 16 for side in rgb.shape[:2])
    x = torch.from_numpy(to_model_input(rgb[:height, :width]))[None]
    with torch.inference_mode():
        x1 = autoencoder.decode(autoencoder.encode(x))
        x2 = autoencoder.decode(autoencoder.encode(x1))
    e1 = (x - x1).square().sum(1)[0].double().numpy()
    e2 = (x1 - x2).square().sum(1)[0].double().numpy()
    pad = ((0, rgb.shape[0] - height), (0, rgb.shape[1] - width))
    return {
        "e1": np.pad(gaussian_filter(e1, window / 2), pad, mode="edge"),
        "box64": np.pad(np.log(uniform_filter(e1, 64) / uniform_filter(e2, 64)), pad, "edge"),
    }


def degrade(rgb: np.ndarray, truth: np.ndarray | None, condition: str, folder: Path, name: str):
    """The file of ``rgb`` under ``condition``, and the ground truth on its pixels."""
    if condition == "crop3":
        rgb = rgb[3:, 3:]
        truth = truth[3:, 3:] if truth is not None else None
    path = folder / f"{name}.{'jpg' if condition == 'jpeg90' else 'png'}"
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, quality=90)
    return path, truth


def calibrated(args, name: str, own: list[np.ndarray], folder: Path):
    """The model, a scorer keeping local maps, and its calibration with a local threshold."""
    autoencoder = create_autoencoder(name, args.weights_dir)
    calibration_images = save_images(
        decoder_images(autoencoder, own, args.calibration, seed=1), folder / "own", "own-"
    )
    scorer = Scorer([autoencoder], local_maps=True)
    calibration = calibrate_images(scorer, calibration_images, local_window=args.window)
    return autoencoder, scorer, calibration.calibration


def run_patches(args, name: str, photos: list[np.ndarray], own: list[np.ndarray], scratch: Path):
    """Per patch side: the share of photos with a pasted square of the decoder's image (hard
    edges, on the 8-pixel grid) called ``partial`` by ``aedr attribute`` and the web page (the
    Attributor) and by ``aedr localize``; side 0: the untouched photos."""
    autoencoder, scorer, calibration = calibrated(args, name, own, scratch / name)
    attributor = Attributor([calibration], [autoencoder])
    rng = np.random.default_rng(2)
    folder = scratch / name / "patches"
    folder.mkdir(parents=True)
    rows = {}
    for side in (0, *PATCH_SIDES):
        paths = []
        for index, photo in enumerate(photos):
            rgb = photo.copy()
            if side:
                made = decoder_view(autoencoder, photo, rng)
                top, left = 8 * rng.integers(0, (photo.shape[0] - side) // 8 + 1, 2)
                rgb[top : top + side, left : left + side] = made[
                    top : top + side, left : left + side
                ]
            paths.append(folder / f"{side}-{index}.png")
            Image.fromarray(rgb).save(paths[-1])
        attributed = [a.verdict == "partial" for a in map(attributor.attribute_file, paths)]
        localized = [r.verdict == "partial" for r in
                     localize_images(scorer, paths, {name: calibration})]  # fmt: skip
        rows[side] = (float(np.mean(attributed)), float(np.mean(localized)))
    return rows


def run_model(args, name: str, photos: list[np.ndarray], own: list[np.ndarray], scratch: Path):
    folder = scratch / name
    autoencoder, scorer, calibration = calibrated(args, name, own, folder)
    rng = np.random.default_rng(1)
    rows = {}
    for condition in args.conditions.split(","):
        test = folder / condition
        test.mkdir(parents=True)
        cases = []  # (path, truth or None, kind, rgb)
        for index, photo in enumerate(photos):
            made = decoder_view(autoencoder, photo, rng)
            for number, (kind, weight, truth) in enumerate(masks(rng, photo.shape[0])):
                mixed = weight[..., None] * made + (1 - weight[..., None]) * photo
                rgb = np.clip(mixed.round(), 0, 255).astype(np.uint8)
                cases.append((*degrade(rgb, truth, condition, test, f"{index}-{number}"), kind))
            cases.append((*degrade(photo, None, condition, test, f"{index}-photo"), "photo"))
            cases.append((*degrade(made, None, condition, test, f"{index}-decoder"), "decoder"))
        by_path = {str(path): (truth, kind) for path, truth, kind in cases}
        results = localize_images(scorer, [c[0] for c in cases], {name: calibration})
        rows[condition] = summarise(autoencoder, results, by_path, calibration.local, args.window)
    return rows


def summarise(autoencoder, results, by_path, local, window) -> dict[str, float]:
    threshold = local["threshold"]
    pixel = {"rect": [], "all": [], "e1 rect": [], "box64 rect": [], "iou": []}
    detection, partial = {"composite": [], "photo": []}, {"composite": [], "photo": []}
    largest = {"composite": [], "photo": []}  # the largest consistent region's share
    decoder_share = []
    for result in results:
        truth, kind = by_path[result.measurement.path]
        statistic = result.statistic
        if kind == "decoder":
            decoder_share.append(result.share)
            continue
        group = "photo" if kind == "photo" else "composite"
        detection[group].append(result.share)
        partial[group].append(result.verdict == "partial")
        largest[group].append(result.regions[0].share if result.regions else 0.0)
        if truth is None:
            continue
        auc = roc_auc(truth, -statistic)
        pixel["all"].append(auc)
        found = statistic < threshold
        pixel["iou"].append((found & truth).sum() / max(1, (found | truth).sum()))
        if kind.startswith("rect") and kind.endswith("hard"):
            pixel["rect"].append(auc)
            rgb = np.asarray(Image.open(result.measurement.path).convert("RGB"))
            for baseline, values in baseline_maps(autoencoder, rgb, window).items():
                pixel[f"{baseline} rect"].append(roc_auc(truth, -values))  # low: decoder's
    labels = [1] * len(detection["composite"]) + [0] * len(detection["photo"])
    return {
        **{f"pixel AUC {k}": float(np.mean(v)) for k, v in pixel.items() if k != "iou"},
        "IoU": float(np.mean(pixel["iou"])),
        "detect AUC": roc_auc(np.array(labels), detection["composite"] + detection["photo"]),
        "partial composites": float(np.mean(partial["composite"])),
        "partial photos": float(np.mean(partial["photo"])),
        **{
            f"{group} region >= {share:.0%}": float(np.mean(np.array(largest[group]) >= share))
            for share in (0.1, 0.2)
            for group in ("composite", "photo")
        },
        "decoder share": float(np.mean(decoder_share)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = os.environ.get("AEDR_SHARED_DIR", str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--shared-dir", default=shared)
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--photos", type=int, default=6, help="test photos")
    parser.add_argument("--calibration", type=int, default=12, help="own images per model")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--patches", action="store_true", help="only: the share of photos with "
                        "a pasted square of each side called partial (attribute and localize)")  # fmt: skip
    args = parser.parse_args()
    args.weights_dir = args.weights_dir or str(Path(args.shared_dir) / "weights" / "tae")
    crops = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size)
    order = np.random.default_rng(0).permutation(len(crops))
    own = [crops[i] for i in order[: args.calibration]]
    photos = [crops[i] for i in order[args.calibration : args.calibration + args.photos]]
    print(f"# {args.photos} test photos, {args.size} px, window {args.window:g} px, "
          f"{args.calibration} own images per model for the local threshold", flush=True)  # fmt: skip
    table = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            run = run_patches if args.patches else run_model
            table[name] = run(args, name, photos, own, Path(scratch))
            print(f"{name} done", file=sys.stderr, flush=True)
    if args.patches:
        print_patches(table, args.size)
        return
    columns = list(next(iter(next(iter(table.values())).values())))
    print("| model | condition | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for condition in args.conditions.split(","):
        for name, rows in table.items():
            values = rows[condition]
            print(
                f"| {name} | {condition} | "
                + " | ".join(f"{values[c]:.3f}" for c in columns)
                + " |"
            )
        means = {c: np.mean([rows[condition][c] for rows in table.values()]) for c in columns}
        print(
            f"| **mean** | {condition} | " + " | ".join(f"{means[c]:.3f}" for c in columns) + " |"
        )


def print_patches(table: dict, size: int) -> None:
    print("| model | " + " | ".join(
        f"{side} px ({side * side / size**2:.0%})" if side else "untouched" for side in
        (0, *PATCH_SIDES)) + " |")  # fmt: skip
    print("|---|" + "---|" * (1 + len(PATCH_SIDES)))
    for name, rows in table.items():
        print(f"| {name} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in rows.values()) + " |")
    means = [np.mean([rows[side] for rows in table.values()], axis=0) for side in (0, *PATCH_SIDES)]
    print("| **mean** | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in means) + " |")
    print("(cells: share called partial by aedr attribute and the page / by aedr localize)")


if __name__ == "__main__":
    main()
