"""The paper's distance ablation on the attribution benchmark: what loss1 and loss2 measure.

Usage: python benchmarks/distances.py [--size 192] [--calibration 30] [--test 20] [--real 40]
       [--distances l2,l1,ssim,psnr,lpips] [--cost-only --repeats 3]

Data as ``benchmarks/attribution.py`` builds it (shared/images/real only, never holdout/): per
tiny autoencoder, calibration and test images its decoder made from mixed photo latents, and real
test photos. For each distance the shipped scorer measures every test image under every model and
each model's calibration images under it (``ScoreSettings(distance=...)``, the settings of
``aedr score --distance D``); thresholds are fitted per model (alpha 0.05) and the paper's tables
computed for the paper's statistic (``aedr``, the ratio x H) and ``fitted``. The default statistic
(``highpass``) reads no distance: its row, measured once, is the reference. LPIPS needs AlexNet's
ImageNet weights; where they are not on the machine its row says so.

Prints one table: per distance and statistic, mean accuracy against the other models' images,
against real images, ROC AUC, and the seconds per (image, model) score. ``--cost-only`` times the
distances side by side instead: the same test images under taesd, the distances interleaved in
each of ``--repeats`` rounds (min and median seconds per score, and the ratio to the first's).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from attribution import MODELS, build, data_parser, score, split_options, tiny_autoencoders, usable

from aedr.decide.calibration import calibrate
from aedr.decide.evaluation import evaluate, mean_table
from aedr.decide.statistics import DEFAULT_STATISTIC
from aedr.errors import AedrError
from aedr.measure.distances import DISTANCES, check_distance
from aedr.measure.settings import ScoreSettings

STATISTICS = ("aedr", "fitted")


def measure(args, autoencoders, labels, calibration_paths, distance: str):
    """Test and calibration records at ``distance``, and the seconds per score."""
    settings = ScoreSettings(distance=distance)
    test_records, seconds = score(autoencoders, sorted(labels), settings)
    calibration_records = {
        name: score({name: autoencoders[name]}, calibration_paths[name], settings)[0]
        for name in MODELS
    }
    return test_records, calibration_records, seconds


def row(args, test_records, calibration_records, labels, statistic: str) -> dict[str, float]:
    calibrations = {
        name: calibrate(usable(calibration_records[name]), name, args.alpha, statistic)
        for name in MODELS
    }
    means = mean_table(evaluate(test_records, labels, calibrations, statistic, args.alpha))
    return {key: sum(r[key] for r in means.values()) / len(means)
            for key in ("vs_models", "vs_real", "auc")}  # fmt: skip


def cost(args, autoencoders, labels, distances: list[str]) -> None:
    """Seconds per score of each distance, interleaved rounds on the same images and model."""
    paths = sorted(labels)[:: max(1, len(labels) // 20)][:20]
    taesd = {"taesd": autoencoders["taesd"]}
    seconds: dict[str, list[float]] = {d: [] for d in distances}
    for _ in range(args.repeats):
        for distance in distances:
            seconds[distance].append(score(taesd, paths, ScoreSettings(distance=distance))[1])
    print(f"\n| distance | s per score, min | median | x {distances[0]} (min) |  ({len(paths)} images, "
          f"taesd, {args.repeats} interleaved rounds)\n|---|---|---|---|")  # fmt: skip
    base = min(seconds[distances[0]])
    for distance, times in seconds.items():
        print(f"| {distance} | {min(times):.4f} | {statistics.median(times):.4f} | "
              f"{min(times) / base:.2f} |")  # fmt: skip


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    split_options(parser, 30)
    parser.add_argument("--distances", default=",".join(DISTANCES))
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    autoencoders = tiny_autoencoders(args)
    print(f"# {len(MODELS)} tiny autoencoders, {args.size} px, alpha {args.alpha}; "
          f"{args.calibration} calibration + {args.test} test images per model, {args.real} real")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        labels, calibration_paths = build(args, Path(tmp), autoencoders)
        measurable = []
        for distance in args.distances.split(","):
            try:
                check_distance(distance)
                measurable.append(distance)
            except AedrError as exc:
                print(f"{distance}: not measured: {exc}")
        if args.cost_only:
            cost(args, autoencoders, labels, measurable)
            return
        print("\n| distance | statistic | acc. vs other models | acc. vs real | ROC AUC | "
              "s per score |\n|---|---|---|---|---|---|")  # fmt: skip
        for distance in measurable:
            measured = measure(args, autoencoders, labels, calibration_paths, distance)
            test_records, calibration_records, seconds = measured
            readers = (*STATISTICS, DEFAULT_STATISTIC) if distance == "l2" else STATISTICS
            for statistic in readers:
                values = row(args, test_records, calibration_records, labels, statistic)
                print(f"| {distance} | {statistic} | {values['vs_models']:.4f} | "
                      f"{values['vs_real']:.4f} | {values['auc']:.4f} | {seconds:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
