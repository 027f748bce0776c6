"""How often does the grid-phase search of ``--robust auto`` find the decoder's grid again?

Usage: python benchmarks/grid_phase.py [--size 192] [--images 12] [--windows 64,96,128]
       [--margins 0,16] [--refine-windows 0,192] [--models taesd,taef1]

A decoder writes its output in 8-pixel blocks; cropping a generated image by a number of pixels
that is not a multiple of 8 shifts the blocks, and AEDR's evidence goes (README, Robustness).
``aedr.measure.degradation.search_phase`` tries all 64 grid phases on a central window, one
reconstruction each, and keeps the phase whose residual has the least high-pass energy on the
pixels all windows share, less a border. This script crops decoder-made images (shared photos
through the shared tiny autoencoders; half reconstructions, half latent mixtures) by (3, 6)
pixels, so the true phase is (5, 2), and prints how often the search finds it and what it costs per image and model, for
several window sides, borders left out and second windows on which the best phases are compared
again (the shipped ones: 96, 16 and 192 px; a second window of 0 compares no phase again, as
aedr did before 0.18).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from attribution import data_parser, tiny_autoencoders

from aedr.measure.degradation import REFINED_PHASES, search_phase
from aedr.synthesis import decoder_images, photo_crops

SHIFT = (3, 6)
TRUE_PHASE = ((8 - SHIFT[0]) % 8, (8 - SHIFT[1]) % 8)


def main() -> None:
    parser = data_parser(__doc__.splitlines()[0], 192)
    parser.add_argument("--images", type=int, default=12, help="decoder images per model")
    parser.add_argument("--windows", default="64,96,128", help="window sides to try, in pixels")
    parser.add_argument("--margins", default="0,16", help="borders left out, in pixels")
    parser.add_argument("--refine-windows", default="0,192",
                        help=f"second windows for the best {REFINED_PHASES} phases; 0: none")  # fmt: skip
    parser.add_argument("--models", default="taesd,taef1")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    autoencoders = tiny_autoencoders(args)
    photos = photo_crops([Path(args.shared_dir) / "images" / "real"], args.size)[: args.images]
    print(f"# {args.images} decoder images per model, {args.size} px, cropped by {SHIFT} px; "
          f"true phase {TRUE_PHASE}")  # fmt: skip
    print("| model | window px | border px | second window px | true phase found "
          "| s per image and model |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        autoencoder = autoencoders[name]
        made = decoder_images(autoencoder, photos, args.images, seed=0,
                              reconstructions=args.images // 2)  # fmt: skip
        for window in map(int, args.windows.split(",")):
            for margin in map(int, args.margins.split(",")):
                for second in map(int, args.refine_windows.split(",")):
                    start = time.perf_counter()
                    found = [search_phase(autoencoder, image[SHIFT[0] :, SHIFT[1] :], window,
                                          margin, second or window) or (0, 0)
                             for image in made]  # fmt: skip
                    seconds = (time.perf_counter() - start) / len(made)
                    hits = sum(phase == TRUE_PHASE for phase in found)
                    print(f"| {name} | {window} | {margin} | {second or '-'} | {hits}/{len(made)} "
                          f"| {seconds:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
