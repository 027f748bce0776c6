"""Zero set-up attribution against calibrations from the models' own images, on the tiny
autoencoders, with the plain command (``aedr attribute PATHS`` and nothing else).

Usage: python benchmarks/zero_setup.py [--size 256] [--calibration 40] [--test 20] [--real 40]
       [--cost-only] [--baseline-src OTHER_CHECKOUT/src] [--no-crops]
       [--enlarged "1.5 bicubic,2 bilinear" | --enlarged none] [--no-grey] [--jpeg 90,75 | none]

Data as ``benchmarks/attribution.py`` builds it (shared/images/real only, never holdout/): per
model, images its decoder made from mixed photo latents, split into calibration and test images,
and real test photos. Prints:

- the cost of the first ``aedr attribute IMAGE`` with the five models present (it builds their
  five calibrations from the autoencoders alone and adds them to an empty library) and of a
  repeat call (the library and the score store answer), each a new process as a user runs it,
  and with ``--baseline-src`` the first call of another checkout (the previous release) before
  it, side by side (``--cost-only`` stops there);
- verdicts and pairwise accuracy with the library's built calibrations (zero set-up) and with
  calibrations fitted on each model's own calibration images, both measured with the default
  negatives, on the same test images;
- the same on the test images' centre crops of half their side (grid-aligned: still decoder
  images, a quarter of the pixels), decided by the built calibrations with their size
  thresholds (the default) and without them (stated, as before 0.10.0);
- the same on the test images enlarged by each factor and filter of ``--enlarged`` (saved as
  PNG, each measured once as ``aedr attribute`` measures it: the enlargement found and undone),
  decided by the built calibrations with their enlargement thresholds (the default) and without
  them (stated, as 0.13.0 decided);
- the same on the test images made grey (ITU-R 601 luma, saved as grey PNG: a black-and-white
  conversion), decided by the built calibrations with their thresholds for grey images (the
  default) and without them (stated: at the clean thresholds, as before 0.15.0);
- with ``--baseline-src``, every table also decides the same measurements with the
  baseline's own built calibrations (stated);
- the same on the test images saved as JPEG at each quality of ``--jpeg`` (Pillow, 4:2:0),
  decided by the built calibrations with their JPEG thresholds (the default) and without them
  (stated: at the clean thresholds, as before 0.17.0);
- the stated false attribution for a colour and a grey image, by default and as 0.15.0;
- how stable a threshold is against the number of calibration images: the share of a model's own
  test images a threshold fitted on n of its calibration images rejects (alpha 0.05 asked),
  over 200 draws, per n.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from attribution import (
    MODELS,
    build,
    data_parser,
    score,
    split_options,
    tiny_autoencoders,
    usable,
)
from PIL import Image

from aedr.decide.attribution import CandidateThresholds
from aedr.decide.calibration import (
    Calibration,
    calibrate,
    kde_threshold,
)
from aedr.decide.evaluation import evaluate, mean_table, open_set_metrics
from aedr.decide.statistics import DEFAULT_STATISTIC, get_statistic
from aedr.library import CalibrationLibrary
from aedr.measure.default_photos import NEGATIVE_SET, negative_files
from aedr.measure.degradation import save_jpeg_copies
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.workflows import centre_crop

SIZES = (2, 5, 10, 15, 20, 30, 40)
DRAWS = 200


def timed_cli(*args: str, source: str | None = None) -> float:
    """Seconds of ``aedr ARGS`` as a user runs it: a new process (running the package under
    ``source``, another checkout's ``src``, when given)."""
    environment = dict(os.environ)
    if source:
        environment["PYTHONPATH"] = source
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "aedr", *args], capture_output=True, text=True,
                          env=environment)  # fmt: skip
    assert done.returncode == 0, f"aedr {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return time.perf_counter() - start


def print_verdicts(records, labels, alpha, statistic, calibrations) -> None:
    """One table row (and confusion) per set of calibrations, on the same records."""
    print("| calibrations | verdict accuracy | real photos attributed | own images named | "
          "acc. vs other models | acc. vs real | ROC AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for title, chosen in calibrations.items():
        result = evaluate(records, labels, chosen, statistic, alpha)
        numbers, means = open_set_metrics(result.confusion), mean_table(result)
        print(f"| {title} | {numbers['verdict_accuracy']:.3f} | "
              f"{numbers['real_false_attribution']:.3f} | {numbers['own_recall']:.3f} | "
              f"{np.mean([m['vs_models'] for m in means.values()]):.4f} | "
              f"{np.mean([m['vs_real'] for m in means.values()]):.4f} | "
              f"{np.mean([m['auc'] for m in means.values()]):.4f} |")  # fmt: skip
        print(f"confusion ({title}): {result.confusion}")


def centre_crops(labels: dict[str, str], folder: Path, side: int) -> dict[str, str]:
    """The centre ``side`` px crop (on the 8-pixel grid) of each labelled image, labelled alike."""
    folder.mkdir(parents=True)
    crops = {}
    for index, (path, label) in enumerate(sorted(labels.items())):
        crop = folder / f"{index:04d}.png"
        Image.fromarray(centre_crop(np.asarray(Image.open(path).convert("RGB")), side)).save(crop)
        crops[str(crop)] = label
    return crops


FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def enlarged_copies(
    labels: dict[str, str], folder: Path, factor: float, resample: Image.Resampling
) -> dict[str, str]:
    """Each labelled image enlarged by ``factor`` with ``resample``, saved as PNG, labelled alike."""
    folder.mkdir(parents=True)
    copies = {}
    for index, (path, label) in enumerate(sorted(labels.items())):
        image = Image.open(path).convert("RGB")
        size = (round(image.width * factor), round(image.height * factor))
        copy = folder / f"{index:04d}.png"
        image.resize(size, resample).save(copy)
        copies[str(copy)] = label
    return copies


def grey_copies(labels: dict[str, str], folder: Path) -> dict[str, str]:
    """Each labelled image made grey (Pillow's ``convert("L")``), saved as PNG, labelled alike."""
    folder.mkdir(parents=True)
    copies = {}
    for index, (path, label) in enumerate(sorted(labels.items())):
        copy = folder / f"{index:04d}.png"
        Image.open(path).convert("L").save(copy)
        copies[str(copy)] = label
    return copies


def jpeg_copies(labels: dict[str, str], folder: Path, quality: int) -> dict[str, str]:
    """Each labelled image saved as a JPEG of ``quality`` (Pillow, 4:2:0), labelled alike."""
    folder.mkdir(parents=True)
    paths = sorted(labels)
    return {
        str(c): labels[p]
        for c, p in zip(save_jpeg_copies(paths, folder, quality), paths, strict=True)
    }


def untold(calibration: Calibration) -> Calibration:
    """``calibration`` stating its false acceptance on every negative at once, grey and in
    colour, as 0.15.0 did (its clean negatives without their grey flags)."""
    negatives = {k: v for k, v in calibration.negatives.items() if k != "grey"}
    return replace(calibration, negatives=negatives)


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 256)
    split_options(parser, 40)
    parser.add_argument("--cost-only", action="store_true", help="the cost table alone")
    parser.add_argument("--no-crops", action="store_true", help="leave out the centre crops")
    parser.add_argument("--enlarged", default="1.5 bicubic,1.5 bilinear,2 bicubic,2 bilinear",
                        help="enlargements of the test images to decide, 'FACTOR FILTER' "
                        "comma-separated, or 'none'")  # fmt: skip
    parser.add_argument("--no-grey", action="store_true", help="leave out the grey copies")
    parser.add_argument("--jpeg", default="90,75", help="JPEG qualities to save the test images "
                        "at and decide, comma-separated, or 'none'")  # fmt: skip
    parser.add_argument("--baseline-src", help="another checkout's src folder: its first call "
                        "too, side by side (e.g. the previous release)")  # fmt: skip
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    weights = args.weights_dir or str(Path(args.shared_dir) / "weights" / "tae")
    autoencoders = tiny_autoencoders(args)
    statistic = get_statistic(DEFAULT_STATISTIC)
    print(f"# zero set-up: {len(MODELS)} tiny autoencoders, {args.size} px, alpha {args.alpha}; "
          f"{args.calibration} own calibration + {args.test} test images per model, "
          f"{args.real} real test photos; statistic {statistic.name}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        environment = {"AEDR_CALIBRATIONS": str(folder / "library"),
                       "AEDR_STORE": str(folder / "scores.sqlite"), "AEDR_WEIGHTS_DIR": weights}  # fmt: skip
        os.environ.update(environment)
        image = next(iter(sorted((Path(args.shared_dir) / "images" / "real").rglob("*.png"))))
        if args.baseline_src:  # first: its library and store are its own
            os.environ.update(AEDR_CALIBRATIONS=str(folder / "baseline-library"),
                              AEDR_STORE=str(folder / "baseline.sqlite"))  # fmt: skip
            baseline = timed_cli("attribute", str(image), "-q", source=args.baseline_src)
            os.environ.update(environment)
        first = timed_cli("attribute", str(image), "-q")
        repeat = timed_cli("attribute", str(image), "-q")
        print("\n### Cost (each call a new process)")
        print("| call | seconds |\n|---|---|")
        if args.baseline_src:
            print(f"| first call, {args.baseline_src} | {baseline:.2f} |")
        print(f"| first `aedr attribute IMAGE` (builds {len(MODELS)} calibrations) | {first:.2f} |")
        if args.baseline_src:
            print(f"| first call: baseline / this checkout | {baseline / first:.2f}x |")
        print(f"| repeat call (library and store answer) | {repeat:.2f} |")
        print(f"| ratio | {first / repeat:.1f}x |")
        if args.cost_only:
            return
        labels, calibration_paths = build(args, folder / "data", autoencoders)
        library = CalibrationLibrary(folder / "library")
        built = {entry.model: Calibration.load(entry.path) for entry in library.entries()}
        assert sorted(built) == sorted(MODELS), sorted(built)
        baseline = {}  # the baseline's built calibrations, decided by this checkout
        if args.baseline_src:
            entries = CalibrationLibrary(folder / "baseline-library").entries()
            baseline = {f"built by the baseline ({args.baseline_src}; stated)":
                        {entry.model: Calibration.load(entry.path) for entry in entries}}  # fmt: skip
        test_records, seconds = score(autoencoders, sorted(labels), ScoreSettings())
        scorer = Scorer(list(autoencoders.values()), ScoreSettings())
        negatives = [r.as_dict() for r in scorer.score_paths(negative_files())]
        own = {}
        own_records = {}
        for name in MODELS:
            records, _ = score({name: autoencoders[name]}, calibration_paths[name], ScoreSettings())
            own_records[name] = usable(records)
            kept = [r for r in negatives if r["model"] == name and not r["error"]]
            own[name] = calibrate(own_records[name], name, args.alpha, statistic.name,
                                  negatives=kept, negative_sources=[NEGATIVE_SET])  # fmt: skip
        print("\n### Verdicts with all five candidates (the same test images)")
        print_verdicts(test_records, labels, args.alpha, statistic.name,
                       {"built from the autoencoders (zero set-up, default)": built, **baseline,
                        f"own images ({args.calibration} per model)": own})  # fmt: skip
        conditions = []  # (title, labelled copies, thresholds left out, as decided before)
        if not args.no_crops:
            conditions.append(("128 px centre crops of the test images (grid-aligned)",
                               centre_crops(labels, folder / "crops", args.size // 2),
                               "size", "as before 0.10.0"))  # fmt: skip
        for condition in [] if args.enlarged == "none" else args.enlarged.split(","):
            factor, filter_name = condition.split()
            copies = enlarged_copies(labels, folder / condition.replace(" ", "-"), float(factor),
                                     FILTERS[filter_name])  # fmt: skip
            conditions.append((f"The test images enlarged x{factor} ({filter_name})", copies,
                               "enlargement", "as 0.13.0 decided"))  # fmt: skip
        if not args.no_grey:
            conditions.append(("The test images made grey", grey_copies(labels, folder / "grey"),
                               "grey", "at the clean ones"))  # fmt: skip
        for quality in [] if args.jpeg == "none" else [int(q) for q in args.jpeg.split(",")]:
            conditions.append((f"The test images saved as JPEG {quality}",
                               jpeg_copies(labels, folder / f"jpeg-{quality}", quality),
                               "JPEG", "at the clean ones, as 0.16.0 decided"))  # fmt: skip
        for title, copies, kind, before in conditions:
            print(f"\n### {title}, same calibrations")
            records, _ = score(autoencoders, sorted(copies), ScoreSettings())
            section = {"size": "sizes", "enlargement": "enlargements", "grey": "grey",
                       "JPEG": "jpeg"}[kind]  # fmt: skip
            print_verdicts(records, copies, args.alpha, statistic.name, {
                f"built (zero set-up, default: {kind} thresholds)": built,
                f"built without their {kind} thresholds (stated, {before})":
                    {name: replace(c, **{section: {}}) for name, c in built.items()},
                **baseline,
            })  # fmt: skip
        candidates = CandidateThresholds([built[name] for name in MODELS])
        before = CandidateThresholds([untold(built[name]) for name in MODELS])
        for what, grey_image in (("a colour image", False), ("a grey image", True)):
            for how, thresholds in (("default", candidates), ("as 0.15.0", before)):
                _, family = thresholds.at(None, grey=grey_image)
                print(f"stated false attribution for {what} ({how}): "
                      f"{family.describe() if family else None}")  # fmt: skip
        print("\n| model | threshold, built | threshold, own images |\n|---|---|---|")
        for name in MODELS:
            print(f"| {name} | {built[name].threshold:.4g} | {own[name].threshold:.4g} |")

        print(f"\n### Threshold stability: own test images rejected at alpha {args.alpha} "
              f"(median, 10th-90th percentile over {DRAWS} draws of n calibration images)")  # fmt: skip
        print("| n | " + " | ".join(MODELS) + " |\n|---|" + "---|" * len(MODELS))
        rng = np.random.default_rng(0)
        for n in SIZES:
            cells = []
            for name in MODELS:
                signals = np.array([statistic.value(r, {}) for r in own_records[name]])
                tests = np.array([statistic.value(r, {}) for r in usable(test_records)
                                  if r["model"] == name and labels[r["path"]] == name])  # fmt: skip
                rates = []
                for _ in range(DRAWS):
                    drawn = rng.choice(signals, size=min(n, len(signals)), replace=False)
                    threshold = kde_threshold(drawn, args.alpha)
                    rates.append(float(np.mean(tests >= threshold)))
                low, mid, high = np.percentile(rates, [10, 50, 90])
                cells.append(f"{mid:.2f} ({low:.2f}-{high:.2f})")
            print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\n(scoring: {seconds:.2f} s per image and model)")


if __name__ == "__main__":
    main()
