"""What the statistics add to a score: the high-pass evidence means and AC energies beside the passes.

Usage: python benchmarks/highpass_cost.py [--sizes 192,512] [--repeats 5] [--weights-dir DIR]

``reconstruction_measures`` (the shipped double reconstruction: four autoencoder passes, the
losses, the evidence means ``highpass`` reads and the AC energies ``ac`` reads), and
``evidence_means`` and ``ac_energy_means`` alone on the same x, x1 and x2, timed side by side in
one process for each tiny autoencoder and size (one image, CPU, fp32, best of ``--repeats``).
The ratios are the shares of a score each statistic's numbers cost.
"""

from __future__ import annotations

import time

import torch
from attribution import MODELS, data_parser, tiny_autoencoders

from aedr.measure.evidence import evidence_means
from aedr.measure.reconstruction import ac_energy_means, reconstruction_measures


def best_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    parser.add_argument("--sizes", default="192,512")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    autoencoders = tiny_autoencoders(args)
    print(f"# CPU, {torch.get_num_threads()} threads, fp32, one image, best of {args.repeats}")
    print("| model | size | score (s) | evidence means (s) | share | AC energies (s) | share |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        for name in MODELS:
            model = autoencoders[name]
            with torch.inference_mode():
                x1 = model.decode(model.encode(x))
                x2 = model.decode(model.encode(x1))
                score = best_seconds(lambda: reconstruction_measures(model, x), args.repeats)  # noqa: B023
                means = best_seconds(lambda: evidence_means(x, x1, x2), args.repeats)  # noqa: B023
                ac = best_seconds(lambda: ac_energy_means(x, x1, x2), args.repeats)  # noqa: B023
            print(f"| {name} | {size} | {score:.4f} | {means:.4f} | {means / score:.1%} "
                  f"| {ac:.4f} | {ac / score:.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
