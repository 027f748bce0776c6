"""How far bf16 moves AEDR's signals and verdicts against fp32, on the attribution benchmark.

Usage: python benchmarks/dtypes.py [--size 192] [--calibration 40] [--test 20] [--real 40]
       [--dtypes fp32,bf16] [--device cpu]

Data as ``benchmarks/attribution.py`` builds it (shared/images/real only, never holdout/), made
once with the fp32 decoders: per tiny autoencoder, calibration and test images its decoder made
from mixed photo latents, and real test photos. For each dtype the whole default path runs as a
user at that dtype runs it: the five candidates score every image, calibrations (the default
statistic, the default negatives) are fitted on that dtype's own measurements, and every test
image is attributed with all five (``aedr.attributor.Attributor``, the shipped path). Printed,
per model against fp32: the relative change of the default statistic's signal (median, largest,
over every test image), the candidate's decisions that flip (belongs or not, over every test
image), and the open-set verdicts that flip over all test images; with seconds per score.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from attribution import MODELS, build, data_parser, split_options, tiny_autoencoders

from aedr.attributor import Attributor
from aedr.decide.calibration import calibrate
from aedr.decide.statistics import DEFAULT_STATISTIC
from aedr.measure.default_photos import negative_files
from aedr.measure.scorer import Scorer


def run(args, dtype: str, labels: dict[str, str], calibration_paths: dict) -> dict:
    """Calibrate and attribute at ``dtype``: per test image its verdict, per (image, model) the
    signal and decision; and the seconds per score."""
    autoencoders = tiny_autoencoders(args, args.device, dtype)
    negatives = [r.as_dict() for r in Scorer(list(autoencoders.values())).score_paths(
        negative_files())]  # fmt: skip
    calibrations = []
    for name, autoencoder in autoencoders.items():
        records = [r.as_dict() for r in Scorer([autoencoder]).score_paths(calibration_paths[name])]
        calibrations.append(calibrate(
            [r for r in records if not r["error"]], name, args.alpha, DEFAULT_STATISTIC,
            negatives=[r for r in negatives if r["model"] == name and not r["error"]],
            negative_sources=["default photos"],
        ))  # fmt: skip
    attributor = Attributor(calibrations, list(autoencoders.values()), workers=2)
    start = time.perf_counter()
    verdicts, signals, belongs = {}, {}, {}
    for attribution in attributor.attribute_paths(sorted(labels)):
        verdicts[attribution.path] = attribution.verdict
        for decision in attribution.decisions:
            key = (attribution.path, decision.model)
            signals[key], belongs[key] = decision.signal, decision.belongs
    seconds = (time.perf_counter() - start) / max(1, len(signals))
    return {"verdicts": verdicts, "signals": signals, "belongs": belongs, "seconds": seconds}


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    split_options(parser, 40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, fp32 first")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they are computed
    dtypes = ["fp32", *(d for d in args.dtypes.split(",") if d != "fp32")]
    with tempfile.TemporaryDirectory() as tmp:
        labels, calibration_paths = build(args, Path(tmp), tiny_autoencoders(args, "cpu", "fp32"))
        runs = {dtype: run(args, dtype, labels, calibration_paths) for dtype in dtypes}
    print(f"# {args.device}, {args.size} px; {args.calibration} calibration + {args.test} test "
          f"images per model, {args.real} real; statistic {DEFAULT_STATISTIC}, alpha {args.alpha}; "
          f"{len(labels)} test images")  # fmt: skip
    print("| model | dtype | median signal change | largest signal change | decisions flipped "
          "| s per score |\n|---|---|---|---|---|---|")  # fmt: skip
    reference = runs["fp32"]
    for dtype in dtypes[1:]:
        other = runs[dtype]
        for name in MODELS:
            keys = [k for k in reference["signals"] if k[1] == name]
            change = np.array([
                abs(other["signals"][k] / reference["signals"][k] - 1) for k in keys
                if reference["signals"][k] and other["signals"][k] is not None
            ])  # fmt: skip
            flips = sum(other["belongs"][k] != reference["belongs"][k] for k in keys)
            print(f"| {name} | {dtype} | {np.median(change):.2%} | {change.max():.2%} | "
                  f"{flips}/{len(keys)} ({flips / len(keys):.1%}) | {other['seconds']:.3f} |")  # fmt: skip
        flipped = [p for p in labels if other["verdicts"][p] != reference["verdicts"][p]]
        print(f"\nopen-set verdicts flipped {dtype} against fp32: {len(flipped)}/{len(labels)} "
              f"({len(flipped) / len(labels):.1%}); fp32 {reference['seconds']:.3f} s per score")  # fmt: skip
        for path in flipped:
            print(
                f"  {Path(path).parent.name}/{Path(path).name} ({labels[path]}): "
                f"{reference['verdicts'][path]} -> {other['verdicts'][path]}"
            )


if __name__ == "__main__":
    main()
