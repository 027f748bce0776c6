"""Peak memory of scoring one image against its size, under the default memory budget.

Each (model, size) is scored in a fresh child process through ``Scorer.score_file`` (the path
``aedr score`` runs) on a noise PNG; the parent reads the child's peak resident memory from
``os.wait4``. Printed per row: the budget's estimate for the pass, the process's peak, the peak of
the same process scoring a 64 px image (what loading costs), and whether the image was measured
or refused. Models: taesd (trained weights from $AEDR_WEIGHTS_DIR) and the SD VAE built from its
published config with random weights (the same shapes and activations as the real one).

    python benchmarks/memory.py                       # 0.25, 1, 4, 16 MP; taesd and sd15
    python benchmarks/memory.py --sizes 0.25 --models taesd
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def child(model: str, path: str) -> None:
    """Score ``path`` with ``model`` (the default budget) and print the record as JSON."""
    from aedr.autoencoders import create_autoencoder
    from aedr.measure.memory import default_budget, estimate
    from aedr.measure.scorer import Scorer

    autoencoder = create_autoencoder(model, random_weights=model.startswith("sd"))
    scorer = Scorer([autoencoder])
    record = scorer.score_file(path)[0]
    per_pixel = scorer.models[0].peak_per_pixel()
    with Image.open(path) as image:
        pixels = image.width * image.height
    print(json.dumps({"error": record.error, "estimate": estimate(per_pixel, pixels),
                      "per_pixel": per_pixel, "budget": default_budget("cpu")}))  # fmt: skip


def run_child(model: str, path: Path) -> tuple[dict, int, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", model, str(path)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        return {"error": f"exit status {status}"}, usage.ru_maxrss * 1024, seconds
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss * 1024, seconds


def noise_png(folder: Path, megapixels: float) -> Path:
    side = round((megapixels * 1e6) ** 0.5 / 8) * 8
    path = folder / f"noise-{side}.png"
    if not path.exists():
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["taesd", "sd15"])
    parser.add_argument("--sizes", nargs="+", type=float, default=[0.25, 1, 4, 16])
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    gib = 2**30
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print("| model | image | estimate x headroom | process peak | peak at 64 px | peak rise | "
              "outcome | seconds |\n| --- | --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
        for model in args.models:
            _, base, _ = run_child(model, noise_png(folder, 0.004))
            for size in args.sizes:
                path = noise_png(folder, size)
                result, peak, seconds = run_child(model, path)
                outcome = (f"refused: {result['error']}" if result.get("error")
                           else "measured")  # fmt: skip
                estimate = result.get("estimate", 0) / gib
                print(f"| {model} | {path.stem.split('-')[1]} px ({size:g} MP) | "
                      f"{estimate:.2f} GiB | {peak / gib:.2f} GiB | {base / gib:.2f} GiB | "
                      f"{(peak - base) / gib:.2f} GiB | {outcome} | {seconds:.0f} |",
                      flush=True)  # fmt: skip
        budget = result.get("budget")
        if budget:
            print(f"\ndefault budget here: {budget / gib:.1f} GiB (3/4 of the memory available)")


if __name__ == "__main__":
    main()
