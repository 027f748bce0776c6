"""Attribution benchmark on the shared tiny autoencoders: AEDR against its baselines.

Usage: python benchmarks/attribution.py [--size 192] [--out DIR] [--tracer-models taesd]
       [--weights-dir DIR] [--shared-dir DIR]

Data (shared/images/real only, never holdout/): the photos are shuffled (seed 0) and split into
three disjoint pools. For each model, "generated" images are its decoder applied to mixtures of
two source-pool photos' latents plus a little noise (not plain reconstructions), saved as 8-bit
PNG: ``--calibration`` of them fit the threshold, ``--test`` are tested. Real test images are
crops of the real-test pool. Every image is scored by every model once; the methods differ only
in the decision statistic (AEDR ratio x H, the ratio alone, log ratio + beta log H with beta
fitted per model, the weighted high-pass log ratio (the default), the first loss alone), so one
scoring run serves them all. LatentTracer (100 Adam steps per image) is scored on a subset
(``--tracer-models``, ``--tracer-images`` per source) because it is ~100x slower.
Generator-free calibration fits each model's AEDR threshold on decoder images made from the
reference pool instead of the model's own calibration images, and is tested on the same test set.

Prints, per method, the paper's tables (mean accuracy against the other models' images, accuracy
against real images, ROC AUC) and the time per (image, model) score; writes an HTML report per
method into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aedr.autoencoders import create_autoencoder
from aedr.decide.attribution import AMBIGUITY_RATIO
from aedr.decide.calibration import calibrate
from aedr.decide.evaluation import evaluate, mean_table, open_set_metrics
from aedr.decide.false_attribution import false_attribution
from aedr.decide.report import write_report
from aedr.decide.statistics import DEFAULT_STATISTIC, measurement_of
from aedr.measure.default_photos import negative_files
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.synthesis import decoder_images, photo_crops, save_images

MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")
REPO = Path(__file__).resolve().parents[1]


def split_photos(shared: Path, size: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    crops = photo_crops([shared / "images" / "real"], size)
    order = np.random.default_rng(seed).permutation(len(crops))
    third = len(crops) // 3
    pools = np.split(order[: 3 * third], 3)
    names = ("source", "real", "reference")
    return {name: [crops[i] for i in pool] for name, pool in zip(names, pools, strict=True)}


def build(args, folder: Path, autoencoders: dict) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Images on disk: labels (path -> source) and the calibration paths of each model."""
    pools = split_photos(Path(args.shared_dir), args.size)
    labels, calibration_paths = {}, {}
    for name, autoencoder in autoencoders.items():
        made = decoder_images(autoencoder, pools["source"], args.calibration + args.test, seed=1)
        calibration_paths[name] = [
            str(p) for p in save_images(made[: args.calibration], folder / name, "cal-")
        ]
        for path in save_images(made[args.calibration :], folder / name, "test-"):
            labels[str(path)] = name
        synthetic = decoder_images(autoencoder, pools["reference"], args.calibration, seed=2,
                                   reconstructions=args.calibration // 4)  # fmt: skip
        calibration_paths[f"{name}:generator-free"] = [
            str(p) for p in save_images(synthetic, folder / name, "synthetic-")
        ]
    for path in save_images(pools["real"][: args.real], folder / "real", "photo-"):
        labels[str(path)] = "real"
    calibration_paths["negatives:photos"] = [
        str(p) for p in save_images(pools["reference"], folder / "negatives", "photo-")
    ]
    return labels, calibration_paths


def score(autoencoders: dict, paths: list[str], settings: ScoreSettings) -> tuple[list, float]:
    """Records of every path under every model, and the seconds per (image, model) score."""
    scorer = Scorer(list(autoencoders.values()), settings)
    start = time.perf_counter()
    records = [r.as_dict() for r in scorer.score_paths(paths)]
    return records, (time.perf_counter() - start) / max(1, len(records))


def usable(records: list[dict]) -> list[dict]:
    return [r for r in records if not r["error"]]


def print_table(title: str, result, seconds: float | None) -> dict[str, float]:
    means = mean_table(result)
    print(
        f"\n### {title}" + (f" ({seconds:.3f} s per image and model)" if seconds else ""),
        flush=True,
    )
    print("| model | threshold | acc. vs other models | acc. vs real | ROC AUC |")
    print("|---|---|---|---|---|")
    for name, row in means.items():
        threshold = result.models[name].calibration.threshold
        print(f"| {name} | {threshold:.4g} | {row['vs_models']:.4f} | {row['vs_real']:.4f} | "
              f"{row['auc']:.4f} |")  # fmt: skip
    overall = {
        k: float(np.nanmean([row[k] for row in means.values()]))
        for k in ("vs_models", "vs_real", "auc")
    }
    print(
        f"| **mean** | | {overall['vs_models']:.4f} | {overall['vs_real']:.4f} | {overall['auc']:.4f} |"
    )
    return overall


def data_parser(description: str, size: int) -> argparse.ArgumentParser:
    """The options of every benchmark on the shared data and tiny autoencoders."""
    parser = argparse.ArgumentParser(description=description)
    shared = os.environ.get("AEDR_SHARED_DIR", REPO.parent / "shared")
    parser.add_argument("--shared-dir", default=shared)
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--size", type=int, default=size, help="image side in pixels")
    return parser


def split_options(parser: argparse.ArgumentParser, calibration: int) -> None:
    """The options of the benchmarks that split the data into calibration and test images."""
    parser.add_argument("--calibration", type=int, default=calibration,
                        help="calibration images per model")  # fmt: skip
    parser.add_argument("--test", type=int, default=20, help="test images per model")
    parser.add_argument("--real", type=int, default=40, help="real test photos")
    parser.add_argument("--alpha", type=float, default=0.05)


def tiny_autoencoders(args, device: str = "cpu", dtype: str = "auto") -> dict:
    weights = args.weights_dir or Path(args.shared_dir) / "weights" / "tae"
    return {name: create_autoencoder(name, weights, device, dtype) for name in MODELS}


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    split_options(parser, 30)
    parser.add_argument("--tracer-models", default="taesd", help="comma-separated; '' to skip")
    parser.add_argument("--tracer-images", type=int, default=3, help="per test source")
    parser.add_argument("--tracer-only", action="store_true", help="the latenttracer row alone")
    parser.add_argument("--out", default="attribution-benchmark")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    autoencoders = tiny_autoencoders(args)
    out = Path(args.out)
    print(f"# {len(MODELS)} tiny autoencoders, {args.size} px, alpha {args.alpha}; "
          f"{args.calibration} calibration + {args.test} test images per model, {args.real} real")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        labels, calibration_paths = build(args, Path(tmp), autoencoders)
        summary = {}
        if args.tracer_only:
            summary["latenttracer"] = run_tracer(
                args, args.tracer_models.split(","), autoencoders, labels, calibration_paths, out
            )
            return
        test_records, seconds = score(autoencoders, sorted(labels), ScoreSettings())
        calibration_records = {
            key: score({key.split(":")[0]: autoencoders[key.split(":")[0]]}, paths, ScoreSettings())[0]
            for key, paths in calibration_paths.items()
            if not key.startswith("negatives:")
        }  # fmt: skip
        for method in ("aedr", "ratio", "fitted", "highpass", "single-loss"):
            calibrations = {
                name: calibrate(usable(calibration_records[name]), name, args.alpha, method)
                for name in MODELS
            }
            result = evaluate(test_records, labels, calibrations, method, args.alpha)
            write_report(result, out / method)
            summary[method] = print_table(method, result, seconds)
        open_set(args, autoencoders, calibration_records, calibration_paths, test_records, labels)
        thresholds = {}
        for method in ("aedr", "fitted", "highpass"):
            free = {
                name: calibrate(
                    usable(calibration_records[f"{name}:generator-free"]), name, args.alpha, method
                )
                for name in MODELS
            }
            result = evaluate(test_records, labels, free, method, args.alpha)
            write_report(result, out / f"{method}-generator-free")
            title = f"{method}, generator-free calibration"
            summary[title] = print_table(title, result, None)
            thresholds[method] = free
        print("\n| model | aedr threshold: own images | aedr threshold: generator-free |")
        print("|---|---|---|")
        for name in MODELS:
            own = calibrate(usable(calibration_records[name]), name, args.alpha, "aedr")
            print(f"| {name} | {own.threshold:.4g} | {thresholds['aedr'][name].threshold:.4g} |")
        tracer_models = [m for m in args.tracer_models.split(",") if m]
        if tracer_models:
            summary["latenttracer"] = run_tracer(
                args, tracer_models, autoencoders, labels, calibration_paths, out
            )
    print("\n| method | mean acc. vs models | mean acc. vs real | mean AUC |\n|---|---|---|---|")
    for method, row in summary.items():
        print(f"| {method} | {row['vs_models']:.4f} | {row['vs_real']:.4f} | {row['auc']:.4f} |")


def open_set(args, autoencoders, calibration_records, calibration_paths, test_records, labels):
    """What a user reads with all five candidates at once: the verdicts' accuracy, real photos
    attributed to a model, own images named, against the false attribution the calibrations
    measure on their negatives (the shipped default photos, or photos of the user's own: the
    reference pool, disjoint from the real test photos), with and without a stated limit."""
    print("\n### Open-set verdicts (all candidates at once)")
    print("| statistic | negatives | alpha | ambiguity ratio | max false attribution | verdict accuracy | "
          "real photos attributed | own images named | ambiguous | false attribution on the "
          "negatives | mean acc. vs models | mean acc. vs real |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    scorer = Scorer(list(autoencoders.values()), ScoreSettings())
    confusions = {}
    negatives = {
        "default photos": [r.as_dict() for r in scorer.score_paths(negative_files())],
        "user's photos": [r.as_dict() for r in scorer.score_paths(calibration_paths["negatives:photos"])],
    }  # fmt: skip
    rules = [("none", args.alpha, AMBIGUITY_RATIO, None), ("none", 0.1, AMBIGUITY_RATIO, None)]
    rules += [(source, args.alpha, AMBIGUITY_RATIO, limit) for source in negatives
              for limit in (None, 0.05, 0.2)]  # fmt: skip
    rules = [(statistic, *rule) for statistic in ("fitted", DEFAULT_STATISTIC) for rule in rules]
    for statistic, source, alpha, ratio, limit in rules:
        calibrations = {}
        for name in MODELS:
            kept = [r for r in negatives.get(source, []) if r["model"] == name and not r["error"]]
            calibrations[name] = calibrate(
                usable(calibration_records[name]), name, alpha, statistic,
                negatives=kept, negative_sources=[source] if kept else [],
            )  # fmt: skip
        result = evaluate(test_records, labels, calibrations, statistic, alpha, limit, ratio)
        numbers, means = open_set_metrics(result.confusion), mean_table(result)
        family = false_attribution([r.calibration for r in result.models.values()])
        measured = f"{family.rate:.3f} of {family.n}" if family else "not measured"
        print(f"| {statistic} | {source} | {alpha} | {ratio:g} | {limit or '-'} | {numbers['verdict_accuracy']:.3f} | "
              f"{numbers['real_false_attribution']:.3f} | {numbers['own_recall']:.3f} | "
              f"{numbers['ambiguous']:.3f} | {measured} | "
              f"{np.mean([m['vs_models'] for m in means.values()]):.4f} | "
              f"{np.mean([m['vs_real'] for m in means.values()]):.4f} |")  # fmt: skip
        confusions[f"{statistic}, {source}, alpha {alpha}, ratio {ratio:g}, limit {limit}"] = (
            result.confusion
        )
    for rule, confusion in confusions.items():
        print(f"confusion ({rule}): {json.dumps(confusion)}")


def run_tracer(args, models, autoencoders, labels, calibration_paths, out) -> dict[str, float]:
    """LatentTracer on a subset: a few calibration and test images per source."""
    per_source: dict[str, list[str]] = {}
    for path, source in sorted(labels.items()):
        per_source.setdefault(source, []).append(path)
    subset = {p: labels[p] for paths in per_source.values() for p in paths[: args.tracer_images]}
    settings = ScoreSettings(measurement=measurement_of("latenttracer"))
    chosen = {name: autoencoders[name] for name in models}
    records, seconds = score(chosen, sorted(subset), settings)
    calibrations = {}
    for name in models:
        cal_records, _ = score(
            {name: autoencoders[name]}, calibration_paths[name][: 2 * args.tracer_images], settings
        )
        calibrations[name] = calibrate(usable(cal_records), name, args.alpha, "latenttracer")
    result = evaluate(records, subset, calibrations, "latenttracer", args.alpha)
    write_report(result, out / "latenttracer")
    return print_table(f"latenttracer on {', '.join(models)}: {len(subset)} test images, "
                       f"{2 * args.tracer_images} calibration images per model", result, seconds)  # fmt: skip


if __name__ == "__main__":
    main()
