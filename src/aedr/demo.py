"""``aedr demo``: the whole AEDR workflow on built-in examples, in about a minute on a CPU.

Real photos come from scikit-image's bundled sample images. "Generated" images are made the way a
latent diffusion model makes them: the model's decoder applied to latents that are not plain
reconstructions of any photo (a random mixture of two photos' latents plus a little noise), saved as
8-bit PNGs. The demo calibrates the model's threshold on some generated images, then attributes
held-out generated images and the real photos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aedr.attributor import Attributor
from aedr.decide.calibration import DEFAULT_ALPHA, Calibration
from aedr.measure.scorer import Scorer
from aedr.measure.store import ScoreStore
from aedr.synthesis import decoder_images, save_images
from aedr.workflows import calibrate_images

CROP = 256
PHOTO_LOADERS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class DemoRow:
    file: str
    truth: str
    ratio: float  # nan where the image could not be measured
    signal: float
    verdict: str


@dataclass(frozen=True)
class DemoResult:
    model: str
    calibration: Calibration
    rows: list[DemoRow]


def sample_photo_crops(per_photo: int = 2) -> list[np.ndarray]:
    """256 x 256 RGB crops of scikit-image's bundled colour photos (no download needed)."""
    from skimage import data

    crops = []
    for loader in PHOTO_LOADERS:
        photo = np.asarray(getattr(data, loader)())[..., :3]
        height, width = photo.shape[:2]
        for k in range(per_photo):
            # spread the crops from the top-left to the bottom-right corner
            top = (height - CROP) * k // max(per_photo - 1, 1)
            left = (width - CROP) * k // max(per_photo - 1, 1)
            crops.append(np.ascontiguousarray(photo[top : top + CROP, left : left + CROP]))
    return crops


def run_demo(
    workdir: Path,
    model: str = "taesd",
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    n_calibration: int = 20,
    n_test: int = 8,
    log: Callable[[str], None] | None = None,
    store: ScoreStore | None = None,
) -> DemoResult:
    from aedr.autoencoders import create_autoencoder

    say = log or (lambda message: None)
    autoencoder = create_autoencoder(model, weights_dir, device)
    say(f"loaded {autoencoder!r}")
    photos = sample_photo_crops()
    made = decoder_images(autoencoder, photos, n_calibration + n_test)
    calibration_paths = save_images(made[:n_calibration], workdir / "calibration", "generated-")
    test_generated = save_images(made[n_calibration:], workdir / "test" / "generated", "generated-")
    test_real = save_images(photos, workdir / "test" / "real", "photo-")
    say(f"wrote {len(made)} decoder-made images and {len(photos)} photo crops under {workdir}")

    # The paper's statistic: with only 20 calibration images a fitted beta is too noisy
    # (docs/results/complexity.md), so the walkthrough keeps the paper's fixed beta = 1.
    # Its real test photos are scikit-image's, the default negatives: they are not also negatives.
    run = calibrate_images(
        Scorer([autoencoder], store=store), calibration_paths, "aedr", DEFAULT_ALPHA,
        default_negatives=False,
    )  # fmt: skip
    calibration = run.calibration
    say(f"calibrated on {calibration.n} decoder-made images: threshold {calibration.threshold:.4f}")

    attributor = Attributor([calibration], [autoencoder], store=store)
    rows = []
    for truth, paths in ((autoencoder.name, test_generated), ("real", test_real)):
        for path, result in zip(paths, attributor.attribute_paths(paths), strict=True):
            ratio, signal = result.measurements[0].ratio, result.decisions[0].signal
            rows.append(DemoRow(path.name, truth, math.nan if ratio is None else ratio,
                                math.nan if signal is None else signal, result.verdict))  # fmt: skip
    return DemoResult(autoencoder.name, calibration, rows)


def format_table(result: DemoResult) -> str:
    """The per-image verdicts and the accuracy per source, as a plain-text table."""
    lines = [
        f"AEDR demo: model {result.model}, threshold {result.calibration.threshold:.4f} "
        f"(alpha {result.calibration.alpha}, {result.calibration.n} calibration images)",
        "",
        f"{'file':<18} {'source':<8} {'ratio':>7} {'signal':>7}  verdict",
    ]
    for row in result.rows:
        mark = (
            "ok"
            if (row.verdict == row.truth) or (row.truth == "real" and row.verdict == "none")
            else "WRONG"
        )
        lines.append(
            f"{row.file:<18} {row.truth:<8} {row.ratio:7.3f} {row.signal:7.3f}  {row.verdict:<8} {mark}"
        )
    lines.append("")
    for truth in dict.fromkeys(row.truth for row in result.rows):
        subset = [row for row in result.rows if row.truth == truth]
        expected = truth if truth != "real" else "none"
        correct = sum(row.verdict == expected for row in subset)
        mean_ratio = sum(row.ratio for row in subset) / len(subset)
        lines.append(
            f"{truth:<8} n={len(subset):<3} mean ratio {mean_ratio:6.3f}  "
            f"correct {correct}/{len(subset)} (expected verdict: {expected})"
        )
    return "\n".join(lines)
