"""GPU timings ready to paste into docs/performance.md: the SD VAE at 512 px per precision, the
authors' loop beside it, LatentTracer, and the zoo's throughput.

Usage: python benchmarks/gpu.py [--device cuda] [--model sd15] [--size 512] [--images 16]
       [--dtypes fp32,bf16,fp16] [--batch 16] [--tracer-images 2] [--zoo-size 512]
       [--zoo-models ...]

Runs the shipped paths of ``benchmarks/speed.py`` each in its own process (model loading
included, as there): the authors' one-image loop (fp32), ``aedr score``'s pipeline at fp32, bf16
and fp16 (batch 1, and batch 16 at the model's GPU precision), LatentTracer (100 Adam steps,
fp32); then ``benchmarks/zoo.py`` (every registry family, random weights where none are local,
encode and decode milliseconds at --zoo-size in the family's GPU precision). Verdicts of every
row are compared with the loop's (one KDE threshold on its decoder-made images). The model's
weights are the local or cached ones, else its published architecture with random weights (speed
does not depend on weight values; the header says which). Without CUDA, ``--device cpu`` with
small sizes checks the script's logic (tests do).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from speed import REPO, device_name, handle, make_images, run_child

DTYPES = ("fp32", "bf16", "fp16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=16, help="half decoder-made, half photos")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="aedr's rows at batch 1")
    parser.add_argument("--batch", type=int, default=16, help="the batched row's batch size")
    parser.add_argument("--tracer-images", type=int, default=2, help="0 skips LatentTracer")
    parser.add_argument("--zoo-size", type=int, default=512)
    parser.add_argument("--zoo-models", nargs="*", help="registry names (default: all)")
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--shared-dir", default=os.environ.get("AEDR_SHARED_DIR",
                                                                str(REPO.parent / "shared")))  # fmt: skip
    args = parser.parse_args()

    import numpy as np
    import torch

    from aedr.autoencoders import get_spec
    from aedr.autoencoders.registry import dtype_name
    from aedr.decide.calibration import kde_threshold

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu.py: no CUDA device here; GPU numbers are not measured", file=sys.stderr)
        return 2
    weights = handle(args.model, args.weights_dir).location.kind
    print(f"## {device_name(args.device)}: {args.model} ({'random weights' if weights == 'random' else 'trained weights'}), "
          f"{args.size} px, {args.images} images; {datetime.date.today()}, torch {torch.__version__}\n")  # fmt: skip
    header = ("method", "precision", "batch", "images", "s per image", "x the authors' loop",
              "peak host MB", "verdicts = loop's")  # fmt: skip
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(args.model, args.size, args.images, Path(tmp), args)
        base = {"model": args.model, "weights_dir": args.weights_dir, "device": args.device,
                "paths": paths, "size": args.size, "folder": tmp}  # fmt: skip
        gpu_dtype = dtype_name("auto", get_spec(args.model), args.device)
        plan = [("the authors' loop", "reference", "fp32", 1)]
        plan += [("aedr score", "pipeline", dtype, 1) for dtype in args.dtypes.split(",")]
        if args.batch > 1:
            plan.append(("aedr score", "pipeline", gpu_dtype, args.batch))
        runs = []
        for method, kind, dtype, batch in plan:
            job = {**base, "dtype": dtype, "batch_size": batch, "latent": "mode"}
            runs.append((method, dtype, batch, run_child(kind, job)))
        made = len(paths) // 2
        loop = runs[0][3]
        threshold = kde_threshold(np.array(loop["signals"][:made]), 0.05)
        verdicts = np.array(loop["signals"]) < threshold
        for method, dtype, batch, run in runs:
            agree = int(((np.array(run["signals"]) < threshold) == verdicts).sum())
            per_image = run["seconds"] / len(paths)
            row = (method, dtype, batch, len(paths), f"{per_image:.4f}",
                   f"{loop['seconds'] / run['seconds']:.2f}", f"{run['peak_mb']:.0f}",
                   f"{agree}/{len(paths)}")  # fmt: skip
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
        if args.tracer_images:
            tracer = run_child("latenttracer", {**base, "paths": paths[: args.tracer_images]})
            per_image = tracer["seconds"] / args.tracer_images
            row = ("LatentTracer (100 steps)", "fp32", 1, args.tracer_images, f"{per_image:.4f}",
                   f"{loop['seconds'] / len(paths) / per_image:.3f}", f"{tracer['peak_mb']:.0f}",
                   "")  # fmt: skip
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
    print(f"\n### The zoo at {args.zoo_size} px ({args.device})\n", flush=True)
    zoo = [sys.executable, str(Path(__file__).with_name("zoo.py")), "--device", args.device,
           "--size", str(args.zoo_size)]  # fmt: skip
    if args.zoo_models:
        zoo += ["--models", *args.zoo_models]
    return subprocess.run(zoo, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
