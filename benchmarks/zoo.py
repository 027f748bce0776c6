"""Every registry family loaded and run: facts, encode/decode time at 256x256, finite outputs.

Usage: python benchmarks/zoo.py [--device cpu|cuda] [--size 256] [--weights-dir DIR] [--models ...]

Big families are built from their published configs with random weights (speed does not depend on
weight values; no download); the tiny autoencoders use their real weights when --weights-dir (or
$AEDR_WEIGHTS_DIR) holds them, random weights otherwise (said in the `weights` column). Each model
runs in its default dtype for --device (fp32 on CPU, the family's GPU dtype on a GPU), so on a GPU
this is also the smoke test that every family gives finite outputs in its default precision.
Exit code 1 when any output is non-finite.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from speed import device_name

from aedr.autoencoders import ModelUnavailableError, create_autoencoder, list_models
from aedr.autoencoders.check import check_autoencoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--models", nargs="*", help="registry names (default: all)")
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    print(f"# {device_name(args.device)}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    header = ("model", "class", "ch", "factor", "multiple", "dtype", "group", "weights",
              "encode ms", "decode ms", "enc+dec ms", "finite")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    all_finite = True
    for spec in list_models():
        if args.models and spec.name not in args.models:
            continue
        weights = "random"
        try:
            autoencoder = create_autoencoder(spec.name, args.weights_dir, device)
            weights = "trained"
        except ModelUnavailableError:
            autoencoder = create_autoencoder(spec.name, device=device, random_weights=True)
        if spec.weight_prefix is None and weights == "trained":
            weights = "trained (cache)"
        result = check_autoencoder(autoencoder, args.size, args.repeats)
        all_finite &= result.finite
        row = (spec.name, spec.diffusers_class, spec.latent_channels,
               spec.spatial_factor, spec.size_multiple, result.dtype, spec.equivalence_group,
               weights, f"{result.encode_ms:.0f}", f"{result.decode_ms:.0f}",
               f"{result.encode_ms + result.decode_ms:.0f}", result.finite)  # fmt: skip
        print("| " + " | ".join(map(str, row)) + " |", flush=True)
        del autoencoder
    return 0 if all_finite else 1


if __name__ == "__main__":
    sys.exit(main())
