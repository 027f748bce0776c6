"""Ray engine throughput on this machine: 1 against 2 scoring actors, beside the local engine.

Usage: python benchmarks/ray_workers.py [--images 48] [--size 256] [--model taesd]

Scores the same shared-photo crops (never holdout/) three ways in one run: the local engine
(one process, torch using every core), then ``--engine ray`` on a local Ray instance with as
many CPUs as the machine has, with 1 and with 2 actors (Ray gives each actor one CPU, so torch in
it runs one thread). Times include Ray starting the actors and loading the model, which a long
job pays once; images/s and ratios are printed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import ray
from attribution import data_parser

from aedr.autoencoders import create_autoencoder
from aedr.measure.scorer import Scorer
from aedr.ray_engine import RayOptions, model_loader, score_with_ray
from aedr.synthesis import photo_crops, save_images


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 256)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--model", default="taesd")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    weights = args.weights_dir or str(Path(args.shared_dir) / "weights" / "tae")
    photos = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size)[: args.images]
    cpus = os.cpu_count()
    print(f"# {len(photos)} images of {args.size} px, model {args.model}, {cpus} CPUs")
    print("| engine | images/s | vs local |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in save_images(photos, Path(tmp) / "images", "photo-")]
        start = time.perf_counter()
        records = list(Scorer([create_autoencoder(args.model, weights)]).score_paths(paths))
        local = len(records) / (time.perf_counter() - start)
        print(f"| local (1 process) | {local:.2f} | 1.00 |")
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")  # fmt: skip
        for workers in (1, 2):
            start = time.perf_counter()
            written, _ = score_with_ray(
                [str(Path(tmp) / "images")], model_loader([args.model], weights), [args.model],
                str(Path(tmp) / f"out-{workers}"), options=RayOptions(workers=workers, batch_size=1),
            )  # fmt: skip
            rate = written / (time.perf_counter() - start)
            print(f"| ray, {workers} actor{'s' if workers > 1 else ''} | {rate:.2f} | "
                  f"{rate / local:.2f} |")  # fmt: skip
        ray.shutdown()


if __name__ == "__main__":
    main()
