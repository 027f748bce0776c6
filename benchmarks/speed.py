"""Side-by-side speed of AEDR implementations on the same images, machine and autoencoder.

Usage: python benchmarks/speed.py [--device cpu|cuda] [--images 32] [--weights-dir DIR]
       [--plan full|quick|default|tracer|sd] [--shared-dir DIR]

For each (autoencoder, size) it times, end to end with model loading, each in its own process
(so peak memory is its own):

1. ``reference``: the loop as the paper's authors wrote it: one image at a time, fp32, sampled
   latents, PIL + torchvision-style preprocessing, cv2 + scikit-image GLCM, no overlap;
2. ``aedr default``: this package's pipeline with default settings (posterior mode, ``--dtype
   auto``: bf16 on a CPU with native bf16 for the models measured in it, else fp32), and ``aedr
   sample``: the same pipeline with the reference's sampled latents;
3. the other precision, stated (``--dtype fp32`` where auto chose bf16, ``--dtype bf16`` where it
   chose fp32; batches of 16 on GPU);
4. ``latenttracer``: the inversion baseline (100 Adam steps through the decoder), on fewer images;
5. the score store: a cold CLI run, then a warm re-run over the same files;
6. where the plain command's time goes: ``aedr score PATHS --model M --out FILE`` in one process
   with every stage timed (``aedr.timing``: model loading, hashing, the score store, decoding,
   homogeneity, preprocessing, encoder, decoder, losses and high-pass evidence, writing).

Half of the images are made by the autoencoder's decoder, half are photo crops from
shared/images/real (never holdout/). Verdicts use one threshold, fitted (KDE, alpha 0.05) on the
reference's signals of the decoder-made images; `agree` counts verdicts equal to the reference's.
Timers start after each process's imports and include model loading; the store rows are whole
CLI runs (start-up included). FLOP/s counts convolutions and matmuls of the four passes (torch's
FlopCounterMode) and is compared with a measured dense GEMM peak of this machine in the same
dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLANS = {
    # (model, size, images, latenttracer images); None images = --images
    "full": [("taesd", 256, None, 2), ("sd15", 256, 8, 0), ("sd15", 512, 2, 0)],
    "quick": [("taesd", 128, 8, 1)],
    "default": [("taesd", 256, None, 0)],  # the check: 32 images, 256 px, taesd
    "tracer": [("taesd", 256, 8, 2)],
    "sd": [("sd15", 256, 8, 0), ("sd15", 512, 2, 0)],
}


def device_name(device: str) -> str:
    """The CPU or GPU a benchmark ran on, for its table's heading."""
    import platform

    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# children: one measurement each, printed as JSON


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def handle(model: str, weights_dir: str | None, device: str = "cpu", dtype: str = "auto"):
    """The model's local or cached weights, else its architecture with random weights (speed
    does not depend on weight values)."""
    from aedr.autoencoders import ModelUnavailableError, resolve_model

    try:
        found = resolve_model(model, weights_dir, device, dtype)
        if found.identity is not None:  # local, or in the hub cache
            return found
    except ModelUnavailableError:
        pass
    return resolve_model(model, device=device, dtype=dtype, random_weights=True)


def load(model: str, weights_dir: str | None, device: str, dtype: str = "auto"):
    return handle(model, weights_dir, device, dtype).load()


def child_reference(job: dict) -> dict:
    """The authors' loop, written the way their script is: nothing batched, nothing overlapped."""
    import cv2
    import numpy as np
    import torch
    from PIL import Image
    from skimage.feature import graycomatrix, graycoprops

    start = time.perf_counter()
    autoencoder = load(job["model"], job["weights_dir"], job["device"], "fp32")
    generator = torch.Generator(job["device"]).manual_seed(0)
    signals = []
    for path in job["paths"]:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        # torchvision's ToTensor returns a contiguous (C, H, W) tensor: the layout their passes ran in
        x = torch.from_numpy((rgb - 0.5) / 0.5).permute(2, 0, 1).contiguous()[None]
        x = x.to(job["device"])
        with torch.no_grad():
            x1 = autoencoder.decode(autoencoder.encode(x, "sample", generator))
            x2 = autoencoder.decode(autoencoder.encode(x1, "sample", generator))
            loss1 = torch.nn.functional.mse_loss(x1, x).item()
            loss2 = torch.nn.functional.mse_loss(x2, x1).item()
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE) // 8
        glcm = graycomatrix(gray, [1], [0], levels=32, symmetric=True, normed=True)
        signals.append(loss1 / loss2 * float(graycoprops(glcm, "homogeneity")[0, 0]))
    synchronize(job["device"])
    return {"seconds": time.perf_counter() - start, "signals": signals}


def child_pipeline(job: dict) -> dict:
    import torch  # noqa: F401  (imports are outside the timed region in every child)

    from aedr.decide.statistics import get_statistic
    from aedr.measure.scorer import Scorer
    from aedr.measure.settings import ScoreSettings

    start = time.perf_counter()
    model = handle(job["model"], job["weights_dir"], job["device"], job["dtype"])
    scorer = Scorer(
        [model], ScoreSettings(latent=job["latent"]), batch_size=job["batch_size"], workers=2
    )
    paper = get_statistic("aedr")
    by_path = {r.path: paper.value(r.as_dict()) for r in scorer.score_paths(job["paths"])}
    synchronize(job["device"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "signals": [by_path[p] for p in job["paths"]]}


def child_latenttracer(job: dict) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from aedr.measure.images import to_model_input
    from aedr.measure.inversion import latenttracer_losses

    start = time.perf_counter()
    autoencoder = load(job["model"], job["weights_dir"], job["device"], "fp32")
    losses = []
    for path in job["paths"]:
        x = torch.from_numpy(to_model_input(np.asarray(Image.open(path).convert("RGB"))))[None]
        losses.append(float(latenttracer_losses(autoencoder, x)[0]))
    synchronize(job["device"])
    return {"seconds": time.perf_counter() - start, "signals": losses}


def child_flops(job: dict) -> dict:
    """FLOPs of one image's four passes, and this machine's dense GEMM peak in the same dtype."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aedr.measure.reconstruction import reconstruction_measures

    autoencoder = load(job["model"], job["weights_dir"], job["device"], job["dtype"])
    size = job["size"]
    x = torch.rand(1, 3, size, size) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        reconstruction_measures(autoencoder, x)
    n = 4096
    a = torch.rand(n, n, device=job["device"], dtype=autoencoder.dtype)
    torch.mm(a, a)
    peak = 0.0
    for _ in range(3):  # best of three: the machine's sustained dense GEMM rate
        synchronize(job["device"])
        start = time.perf_counter()
        torch.mm(a, a)
        synchronize(job["device"])
        peak = max(peak, 2 * n**3 / (time.perf_counter() - start))
    return {"flops_per_image": counter.get_total_flops(), "gemm_peak_flops": peak}


def child_breakdown(job: dict) -> dict:
    """The plain ``aedr score`` in this process (a fresh store), every stage timed."""
    from aedr import timing
    from aedr.cli import main as aedr

    folder = Path(job["folder"])
    os.environ["AEDR_STORE"] = str(folder / "breakdown.sqlite")
    arguments = ["score", *job["paths"], "--model", job["model"], "--device", job["device"],
                 "--out", str(folder / "breakdown.jsonl"), "--overwrite", "-q"]  # fmt: skip
    if job["weights_dir"]:
        arguments += ["--weights-dir", job["weights_dir"]]
    start = time.perf_counter()
    with timing.collect() as times:
        code = aedr(arguments)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "code": code, "stages": times.seconds, "calls": times.calls}


CHILDREN = {
    "reference": child_reference,
    "pipeline": child_pipeline,
    "latenttracer": child_latenttracer,
    "flops": child_flops,
    "breakdown": child_breakdown,
}


def run_child(kind: str, job: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the parent: data, plan, table


def make_images(model: str, size: int, count: int, folder: Path, args) -> list[str]:
    """Half decoder-made images (mixed latents of photos), half photo crops, as 8-bit PNG."""
    import numpy as np
    from PIL import Image

    from aedr.measure.images import read_image
    from aedr.synthesis import decoder_images

    real = Path(args.shared_dir) / "images" / "real"
    photos = sorted(p for p in real.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    crops = []
    for path in photos:
        rgb = read_image(path).rgb
        if min(rgb.shape[:2]) >= size:
            crops.append(rgb[:size, :size].copy())
        if len(crops) >= count:
            break
    made_count = count // 2
    made = decoder_images(load(model, args.weights_dir, "cpu"), crops[:made_count], made_count, 1)
    paths = []
    for kind, images in (("made", made), ("photo", crops[made_count:count])):
        for index, image in enumerate(images):
            path = folder / f"{kind}{index:03d}.png"
            Image.fromarray(np.asarray(image)).save(path)
            paths.append(str(path))
    return paths


def cli_seconds(arguments: list[str]) -> float:
    """Wall time of one ``aedr`` run, process start-up and imports included."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "aedr", *arguments, "-q"],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return time.perf_counter() - start


def print_breakdown(model: str, size: int, count: int, run: dict) -> None:
    """Where the plain command's wall time went, stage by stage."""
    from aedr.timing import STAGES

    wall, stages = run["seconds"], run["stages"]
    print(f"\n{model}, {size} px, {count} images: `aedr score` in one process, {wall:.1f} s wall "
          f"(exit {run['code']}); reader-thread stages (hash, store lookups, decode, homogeneity) "
          "overlap the passes")  # fmt: skip
    print("| stage | s | % of wall | ms per image | calls |\n|---|---|---|---|---|")
    for name in STAGES:
        seconds = stages.get(name, 0.0)
        print(f"| {name} | {seconds:.2f} | {100 * seconds / wall:.1f} | "
              f"{1000 * seconds / count:.1f} | {run['calls'].get(name, 0)} |")  # fmt: skip
    compute = ("load", "preprocessing", "encoder", "decoder", "evidence", "write")
    rest = wall - sum(stages.get(name, 0.0) for name in compute)
    print(
        f"| wall less the main thread's stages ({', '.join(compute)}): CLI set-up, store "
        f"saves, Python, waits for reads | {rest:.2f} | "
        f"{100 * rest / wall:.1f} | {1000 * rest / count:.1f} | |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared_default = os.environ.get("AEDR_SHARED_DIR", str(REPO.parent / "shared"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--plan", choices=sorted(PLANS), default="full")
    parser.add_argument("--weights-dir", default=os.environ.get("AEDR_WEIGHTS_DIR"))
    parser.add_argument("--shared-dir", default=shared_default)
    args = parser.parse_args()

    import numpy as np

    from aedr.autoencoders import devices, get_spec
    from aedr.autoencoders.registry import dtype_name
    from aedr.decide.calibration import kde_threshold

    cpu = args.device.startswith("cpu")
    print(f"# device {args.device}, {os.cpu_count()} CPUs, native bf16: {devices.native_bf16()}; "
          "times include model loading")  # fmt: skip
    header = ["model", "size", "method", "images", "s", "img/s", "x ref", "peak MB", "GFLOP/s",
              "% peak", "agree"]  # fmt: skip
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for model, size, images, tracer_images in PLANS[args.plan]:
        count = images or args.images
        with tempfile.TemporaryDirectory() as tmp:
            paths = make_images(model, size, count, Path(tmp), args)
            base = {"model": model, "weights_dir": args.weights_dir, "device": args.device,
                    "paths": paths, "size": size, "folder": tmp}  # fmt: skip
            auto = dtype_name("auto", get_spec(model), args.device)
            other = {"fp32": "bf16", "bf16": "fp32", "fp16": "fp32"}[auto]
            batch = 1 if cpu else 16
            dtypes = {"reference": "fp32", "aedr default": auto, "aedr sample": auto,
                      f"aedr --dtype {other} (stated), batch {batch}": other}  # fmt: skip
            flops = {d: run_child("flops", {**base, "dtype": d}) for d in set(dtypes.values())}
            runs = {"reference": run_child("reference", base)}
            configs = {
                "aedr default": {"dtype": "auto", "batch_size": 1, "latent": "mode"},
                "aedr sample": {"dtype": "auto", "batch_size": 1, "latent": "sample"},
                f"aedr --dtype {other} (stated), batch {batch}": {"dtype": other,
                                                                  "batch_size": batch,
                                                                  "latent": "mode"},
            }  # fmt: skip
            for name, config in configs.items():
                runs[name] = run_child("pipeline", {**base, **config})
            made = count // 2
            threshold = kde_threshold(np.array(runs["reference"]["signals"][:made]), 0.05)
            reference_verdicts = np.array(runs["reference"]["signals"]) < threshold
            reference_rate = count / runs["reference"]["seconds"]
            for name, run in runs.items():
                rate = count / run["seconds"]
                dtype = dtypes[name]
                achieved = flops[dtype]["flops_per_image"] * rate
                agree = int(((np.array(run["signals"]) < threshold) == reference_verdicts).sum())
                row = [model, size, f"{name} ({dtype})", count, f"{run['seconds']:.1f}", f"{rate:.3f}",
                       f"{rate / reference_rate:.2f}", f"{run.get('peak_mb', 0):.0f}",
                       f"{achieved / 1e9:.1f}",
                       f"{100 * achieved / flops[dtype]['gemm_peak_flops']:.0f}",
                       f"{agree}/{count}"]  # fmt: skip
                print("| " + " | ".join(map(str, row)) + " |", flush=True)
            if tracer_images:
                tracer = run_child("latenttracer", {**base, "paths": paths[:tracer_images]})
                rate = tracer_images / tracer["seconds"]
                default_rate = count / runs["aedr default"]["seconds"]
                row = [model, size, "latenttracer (100 steps)", tracer_images,
                       f"{tracer['seconds']:.1f}", f"{rate:.4f}", f"{rate / reference_rate:.3f}",
                       f"{tracer['peak_mb']:.0f}", "", "",
                       f"aedr default is {default_rate / rate:.0f}x faster"]  # fmt: skip
                print("| " + " | ".join(map(str, row)) + " |", flush=True)
            store = Path(tmp) / "store.sqlite"
            out = Path(tmp) / "scores.jsonl"
            common = ["score", *paths, "--model", model, "--store", str(store), "--device",
                      args.device, "--out", str(out), "--overwrite"]  # fmt: skip
            if args.weights_dir:
                common += ["--weights-dir", args.weights_dir]
            if handle(model, args.weights_dir).location.kind == "random":
                print(f"(store rows skipped for {model}: random weights have no CLI path)")
                continue
            cold, warm = cli_seconds(common), cli_seconds(common)
            print(f"| {model} | {size} | store: cold CLI run | {count} | {cold:.1f} | | | | | | |")
            print(f"| {model} | {size} | store: warm re-run | {count} | {warm:.2f} | "
                  f"{count / warm:.1f} | cold/warm = {cold / warm:.0f}x | | | | |", flush=True)  # fmt: skip
            print_breakdown(model, size, count, run_child("breakdown", base))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        outcome = CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))
        outcome["peak_mb"] = peak_rss_mb()
        print(json.dumps(outcome))
    else:
        main()
