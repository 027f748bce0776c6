"""Does leaving a border out of ``highpass``'s means let thresholds carry to smaller images?

Usage: python benchmarks/border.py [--borders 0,16] [--size 256] [--test 20] [--real 40]

A decoder reconstructs a crop worst along its edges, which were inside the canvas when it made
the image: a smaller view keeps more edge, so a model's own crops read less like it and the
thresholds fitted on full-size images reject them. For each ``--borders`` value (the
``--border`` setting), side by side on the same images: the five tiny autoencoders' built
calibrations (the zero set-up path: ``library_calibrations`` into an empty library, measured
with ``ScoreSettings(border=B)``), then verdicts on the test images of ``benchmarks/zero_setup.py``
(shared/images/real only, never holdout/) and on their grid-aligned centre crops of half the
side, with and without the calibrations' size thresholds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from attribution import build, data_parser, split_options, tiny_autoencoders
from zero_setup import centre_crops, print_verdicts

from aedr.decide.statistics import DEFAULT_STATISTIC
from aedr.library import CalibrationLibrary, library_calibrations
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 256)
    split_options(parser, 40)
    parser.add_argument("--borders", default="0,16", help="border settings, comma-separated")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    autoencoders = tiny_autoencoders(args)
    borders = [int(b) for b in args.borders.split(",")]
    print(f"# border: {len(autoencoders)} tiny autoencoders, {args.size} px, {args.test} test "
          f"images per model, {args.real} real photos; borders {borders}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        labels, _ = build(args, folder / "data", autoencoders)
        crops = centre_crops(labels, folder / "crops", args.size // 2)
        for border in borders:
            settings = ScoreSettings(border=border)
            start = time.perf_counter()
            library = CalibrationLibrary(folder / f"library-{border}")
            scorers = [Scorer([autoencoder], settings) for autoencoder in autoencoders.values()]
            built = {c.model: c for c, _ in library_calibrations(scorers, library)}
            building = time.perf_counter() - start
            scorer = Scorer(list(autoencoders.values()), settings)
            records = [r.as_dict() for r in scorer.score_paths(sorted(labels))]
            crop_records = [r.as_dict() for r in scorer.score_paths(sorted(crops))]
            print(
                f"\n## border {border} px (built calibrations in {building:.0f} s; thresholds "
                + ", ".join(f"{m} {c.threshold:.3f}" for m, c in built.items())
                + ")"
            )
            print(f"\n### {args.size} px test images")
            print_verdicts(records, labels, args.alpha, DEFAULT_STATISTIC, {"built": built})
            print(f"\n### their {args.size // 2} px centre crops")
            print_verdicts(crop_records, crops, args.alpha, DEFAULT_STATISTIC, {
                "built, with size thresholds (default)": built,
                "built without size thresholds": {m: replace(c, sizes={}) for m, c in built.items()},
            })  # fmt: skip


if __name__ == "__main__":
    main()
