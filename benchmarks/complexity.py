"""Complexity calibration on the paper authors' SD 1.5 files: ratio, paper (beta = 1), fitted beta.

Usage: python benchmarks/complexity.py [--shared-dir DIR] [--repeats 50]

Data: shared/reference/aedr-official, the authors' losses and GLCM homogeneity of 500 SD 1.5 images
and 500 SD 2.1 images, both under the SD 1.5 autoencoder, read as measurement records. Statistics
(lower = SD 1.5), all computed by the shipped ``aedr.decide.statistics`` and calibrated by the
shipped ``aedr.decide.calibration.calibrate``: ``ratio`` = L1/L2; ``aedr`` = ratio * H (the
paper's); ``beta=0.5`` = the fitted statistic log ratio + beta log H with beta fixed at 0.5;
``fitted`` = the same with beta fitted on the calibration images.

Prints (1) ROC AUC of SD 1.5 against SD 2.1 with beta fitted on all 500 SD 1.5 images, and
(2) for calibration sets of 20, 50, 100 and 250 SD 1.5 images drawn at random (--repeats times):
the mean accuracy (threshold at alpha 0.05 on the calibration set; tested on the other SD 1.5
images and all SD 2.1 images), its spread, and the fitted beta's mean and spread.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from aedr.decide.calibration import UNVERIFIED_IDENTITY, calibrate, kde_threshold
from aedr.decide.evaluation import roc_auc
from aedr.decide.statistics import get_statistic
from aedr.measure.provenance import Provenance
from aedr.measure.settings import ScoreSettings

REPO = Path(__file__).resolve().parents[1]
MODES = ("ratio", "aedr", "beta=0.5", "fitted")
AUTHORS = Provenance(
    UNVERIFIED_IDENTITY, ScoreSettings(latent="sample", seed=1, alignment="resize")
)


def load(reference: Path, result: str, glcm: str) -> list[dict]:
    """The authors' files as measurement records (loss1, loss2, homogeneity)."""
    losses = np.loadtxt(reference / "Result" / result)
    homogeneity = np.loadtxt(reference / "GLCM" / glcm)
    return [{"loss1": a, "loss2": b, "homogeneity": h}
            for (a, b), h in zip(losses[:, :2], homogeneity, strict=True)]  # fmt: skip


def threshold_and_values(mode: str, calibration: list[dict], alpha: float):
    """(threshold, value function) of ``mode`` calibrated on ``calibration`` records."""
    if mode == "beta=0.5":
        fitted = get_statistic("fitted")
        value = lambda record: fitted.value(record, {"beta": 0.5})  # noqa: E731
        return kde_threshold([value(r) for r in calibration], alpha), value, None
    fit = calibrate(calibration, "sd15", alpha, mode, assumed_provenance=AUTHORS)
    return fit.threshold, fit.value, fit.parameters.get("beta")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("AEDR_SHARED_DIR", REPO.parent / "shared"))
    parser.add_argument("--shared-dir", type=Path, default=default)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    reference = args.shared_dir / "reference" / "aedr-official"
    own = load(reference, "SD1.5_SD1.5_l2.txt", "SD1.5.txt")
    other = load(reference, "SD1.5_SD2.1_l2.txt", "SD2.1.txt")

    _, _, beta_all = threshold_and_values("fitted", own, args.alpha)
    print(
        f"# authors' SD 1.5 files: 500 SD 1.5 vs 500 SD 2.1 images; beta fitted on all SD 1.5 = {beta_all:.3f}"
    )
    print("| mode | ROC AUC |\n|---|---|")
    for mode in MODES:
        _, value, _ = threshold_and_values(mode, own, args.alpha)
        auc = roc_auc(np.array([value(r) for r in own]), np.array([value(r) for r in other]))
        print(f"| {mode} | {auc:.4f} |")

    rng = np.random.default_rng(0)
    print(
        f"\n| calibration images | mode | mean accuracy | std | beta mean | beta std |  ({args.repeats} random draws)"
    )
    print("|---|---|---|---|---|---|")
    for size in (20, 50, 100, 250):
        accuracy = {mode: [] for mode in MODES}
        betas = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            chosen = set(rng.choice(len(own), size, replace=False).tolist())
            calibration = [r for i, r in enumerate(own) if i in chosen]
            rest = [r for i, r in enumerate(own) if i not in chosen]
            for mode in MODES:
                threshold, value, beta = threshold_and_values(mode, calibration, args.alpha)
                if beta is not None:
                    betas[mode].append(beta)
                correct = sum(value(r) < threshold for r in rest)
                correct += sum(value(r) >= threshold for r in other)
                accuracy[mode].append(correct / (len(rest) + len(other)))
        for mode in MODES:
            fitted = betas[mode]
            beta_cells = f"{np.mean(fitted):.3f} | {np.std(fitted):.3f}" if fitted else " | "
            print(
                f"| {size} | {mode} | {np.mean(accuracy[mode]):.4f} | {np.std(accuracy[mode]):.4f} | {beta_cells} |"
            )


if __name__ == "__main__":
    main()
