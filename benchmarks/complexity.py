"""Complexity calibration on the paper authors' SD 1.5 files: ratio, paper (beta = 1), fitted beta.

Usage: python benchmarks/complexity.py [--shared-dir DIR] [--repeats 50]

Data: shared/reference/aedr-official, the authors' losses and GLCM homogeneity of 500 SD 1.5 images
and 500 SD 2.1 images, both under the SD 1.5 autoencoder. Statistics (lower = SD 1.5):
``ratio`` = L1/L2; ``paper`` = ratio * H; ``beta=0.5`` = ratio * H^0.5; ``fitted`` =
log ratio + beta log H with beta = -slope of log ratio on log H over the calibration images.

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

from aedr.calibration import kde_threshold
from aedr.evaluation import roc_auc

REPO = Path(__file__).resolve().parents[1]
MODES = ("ratio", "paper", "beta=0.5", "fitted")


def load(reference: Path, result: str, glcm: str) -> tuple[np.ndarray, np.ndarray]:
    losses = np.loadtxt(reference / "Result" / result)
    return losses[:, 0] / losses[:, 1], np.loadtxt(reference / "GLCM" / glcm)


def fitted_beta(ratio: np.ndarray, homogeneity: np.ndarray) -> float:
    slope, _ = np.polyfit(np.log(homogeneity), np.log(ratio), 1)
    return float(-slope)


def statistic(mode: str, ratio: np.ndarray, homogeneity: np.ndarray, beta: float) -> np.ndarray:
    if mode == "ratio":
        return ratio
    if mode == "paper":
        return ratio * homogeneity
    if mode == "beta=0.5":
        return ratio * homogeneity**0.5
    return np.log(ratio) + beta * np.log(homogeneity)


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

    beta_all = fitted_beta(*own)
    print(
        f"# authors' SD 1.5 files: 500 SD 1.5 vs 500 SD 2.1 images; beta fitted on all SD 1.5 = {beta_all:.3f}"
    )
    print("| mode | ROC AUC |\n|---|---|")
    for mode in MODES:
        auc = roc_auc(statistic(mode, *own, beta_all), statistic(mode, *other, beta_all))
        print(f"| {mode} | {auc:.4f} |")

    rng = np.random.default_rng(0)
    print(
        f"\n| calibration images | mode | mean accuracy | std | beta mean | beta std |  ({args.repeats} random draws)"
    )
    print("|---|---|---|---|---|---|")
    n_own = own[0].size
    for size in (20, 50, 100, 250):
        accuracy = {mode: [] for mode in MODES}
        betas = []
        for _ in range(args.repeats):
            chosen = rng.choice(n_own, size, replace=False)
            rest = np.setdiff1d(np.arange(n_own), chosen)
            beta = fitted_beta(own[0][chosen], own[1][chosen])
            betas.append(beta)
            for mode in MODES:
                calibration = statistic(mode, own[0][chosen], own[1][chosen], beta)
                threshold = kde_threshold(calibration, args.alpha)
                positives = statistic(mode, own[0][rest], own[1][rest], beta)
                negatives = statistic(mode, *other, beta)
                correct = (positives < threshold).sum() + (negatives >= threshold).sum()
                accuracy[mode].append(correct / (positives.size + negatives.size))
        for mode in MODES:
            beta_cells = (
                f"{np.mean(betas):.3f} | {np.std(betas):.3f}" if mode == "fitted" else " | "
            )
            print(
                f"| {size} | {mode} | {np.mean(accuracy[mode]):.4f} | {np.std(accuracy[mode]):.4f} | {beta_cells} |"
            )


if __name__ == "__main__":
    main()
