"""Open-set verdicts as candidates are added: 5, 10 and 20 at once, with the default settings.

Usage: python benchmarks/candidates.py [--size 128] [--calibration 20] [--test 10] [--real 40]
       [--counts 5,10,20] [--perturbation 0.03] [--statistics highpass,fitted]
       [--limits none,0.05]

The shared data hold five tiny autoencoders, so the extra candidates are synthesised: copies of
them whose decoder weights carry seeded Gaussian noise of ``--perturbation`` times each weight
tensor's standard deviation (0.03 puts a sibling's output about 34 dB from its base's on a Kodak
crop: a fine-tune, not another family). Candidate i > 5 is sibling ``(i - 5) // 5 + 1`` of base
``(i - 5) % 5``. Each candidate makes its own calibration and test images (decoder images of
source-pool photos, as in ``attribution.py``); every image is measured by all candidates once,
and each count takes the first K candidates, their test images and the real test photos.
Calibrations use the shipped default negatives, as ``aedr calibrate`` does by default.

Prints per count and limit (``--limits``: ``none``, or a stated false-attribution rate applied as
``aedr attribute --max-false-attribution`` applies it, on the default negatives): verdict accuracy,
real photos attributed, own images named, ambiguous, the false attribution the calibrations measure
on the default negatives (the stated rate), and the paper's pairwise accuracy (mean over
candidates).
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from attribution import MODELS, data_parser, split_photos, tiny_autoencoders, usable

from aedr.autoencoders.tiny import TinyAutoencoder
from aedr.decide.calibration import calibrate
from aedr.decide.evaluation import evaluate, mean_table, open_set_metrics
from aedr.decide.false_attribution import false_attribution
from aedr.measure.default_photos import NEGATIVE_SET, negative_files
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.synthesis import decoder_images, save_images


def sibling(base: TinyAutoencoder, index: int, perturbation: float) -> TinyAutoencoder:
    """``base`` with seeded noise on every decoder weight, named ``base~index``."""
    decoder = copy.deepcopy(base.module["decoder"])
    generator = torch.Generator().manual_seed(1000 * index + MODELS.index(base.name))
    with torch.no_grad():
        for weight in decoder.parameters():
            if weight.numel() > 1:
                weight.add_(
                    torch.randn(weight.shape, generator=generator) * perturbation * weight.std()
                )
    name = f"{base.name}~{index}"
    return TinyAutoencoder(
        name, copy.deepcopy(base.module["encoder"]), decoder,
        f"{base.identity}+decoder-noise{perturbation}-{index}",
    )  # fmt: skip


def candidates(args) -> dict[str, TinyAutoencoder]:
    bases = tiny_autoencoders(args)
    chosen = dict(bases)
    for position in range(len(MODELS), max(args.counts)):
        base = bases[MODELS[(position - len(MODELS)) % len(MODELS)]]
        made = sibling(base, (position - len(MODELS)) // len(MODELS) + 1, args.perturbation)
        chosen[made.name] = made
    return chosen


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 128)
    parser.add_argument("--calibration", type=int, default=20, help="calibration images each")
    parser.add_argument("--test", type=int, default=10, help="test images per candidate")
    parser.add_argument("--real", type=int, default=40, help="real test photos")
    parser.add_argument("--counts", default="5,10,20", help="candidate counts, comma-separated")
    parser.add_argument("--perturbation", type=float, default=0.03)
    parser.add_argument("--statistics", default="highpass,fitted")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--limits", default="none", help="'none' or rates, comma-separated")
    args = parser.parse_args()
    args.counts = sorted(int(c) for c in args.counts.split(","))
    limits = [None if v == "none" else float(v) for v in args.limits.split(",")]
    sys.stdout.reconfigure(line_buffering=True)
    models = candidates(args)
    pools = split_photos(Path(args.shared_dir), args.size)
    print(f"# {len(models)} candidates ({len(MODELS)} tiny autoencoders and siblings with decoder "
          f"noise {args.perturbation}), {args.size} px; {args.calibration} calibration + "
          f"{args.test} test images each, {args.real} real photos, alpha {args.alpha}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        labels, calibration_paths = {}, {}
        for name, model in models.items():
            made = decoder_images(model, pools["source"], args.calibration + args.test, seed=1)
            calibration_paths[name] = save_images(
                made[: args.calibration], Path(tmp) / name, "cal-"
            )
            for path in save_images(made[args.calibration :], Path(tmp) / name, "test-"):
                labels[str(path)] = name
        for path in save_images(pools["real"][: args.real], Path(tmp) / "real", "photo-"):
            labels[str(path)] = "real"
        scorer = Scorer(list(models.values()), ScoreSettings())
        test_records = [r.as_dict() for r in scorer.score_paths(sorted(labels))]
        negatives = [r.as_dict() for r in scorer.score_paths(negative_files())]
        own = {name: [r.as_dict() for r in Scorer([model], ScoreSettings()).score_paths(calibration_paths[name])]
               for name, model in models.items()}  # fmt: skip
    print("| statistic | candidates | limit | verdict accuracy | real photos attributed | own images named "
          "| ambiguous | false attribution on the default negatives | mean pairwise acc. vs "
          "models | vs real |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for statistic in args.statistics.split(","):
        fitted = {
            name: calibrate(
                usable(own[name]), name, args.alpha, statistic,
                negatives=[r for r in negatives if r["model"] == name and not r["error"]],
                negative_sources=[NEGATIVE_SET],
            )
            for name in models
        }  # fmt: skip
        for count in args.counts:
            for limit in limits:
                print_count(statistic, count, limit, fitted, labels, test_records, args.alpha)


def print_count(statistic, count, limit, fitted, labels, test_records, alpha) -> None:
    """One row: the first ``count`` candidates at once, under ``limit`` (None: no limit)."""
    calibrations = {name: fitted[name] for name in list(fitted)[:count]}
    kept = {p: s for p, s in labels.items() if s in calibrations or s == "real"}
    records = [r for r in test_records if r["model"] in calibrations and r["path"] in kept]
    result = evaluate(records, kept, calibrations, statistic, alpha, limit)
    numbers, means = open_set_metrics(result.confusion), mean_table(result)
    family = false_attribution([report.calibration for report in result.models.values()])
    print(f"| {statistic} | {count} | {limit or '-'} | {numbers['verdict_accuracy']:.3f} | "
          f"{numbers['real_false_attribution']:.3f} | {numbers['own_recall']:.3f} | "
          f"{numbers['ambiguous']:.3f} | {family.rate:.3f} of {family.n} | "
          f"{np.mean([m['vs_models'] for m in means.values()]):.4f} | "
          f"{np.mean([m['vs_real'] for m in means.values()]):.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
