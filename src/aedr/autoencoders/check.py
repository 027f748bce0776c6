"""A quick health and speed check of one loaded autoencoder: does it run, how fast, finite?"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from aedr.autoencoders.base import Autoencoder


@dataclass(frozen=True)
class CheckResult:
    model: str
    identity: str
    device: str
    dtype: str
    size: int
    encode_ms: float
    decode_ms: float
    finite: bool
    ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_autoencoder(
    autoencoder: Autoencoder, size: int = 256, repeats: int = 3, seed: int = 0
) -> CheckResult:
    """Median encode and decode time of one ``size`` x ``size`` image (after a warm-up pass), and
    whether a full AEDR double reconstruction of it is finite. ``size`` is rounded up to the
    autoencoder's size multiple."""
    import torch

    from aedr.measure.reconstruction import reconstruction_measures

    multiple = autoencoder.size_multiple
    side = -(-size // multiple) * multiple
    generator = torch.Generator().manual_seed(seed)
    # A smooth image: upsampled noise, so the autoencoder sees structure rather than pure noise.
    coarse = torch.rand(1, 3, side // 8, side // 8, generator=generator) * 2 - 1
    image = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")
    device, dtype = autoencoder.device, autoencoder.dtype
    x = image.to(device, dtype)
    encode_times, decode_times = [], []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first pass warms up kernels and allocators
            start = time.perf_counter()
            latents = autoencoder.encode(x)
            _synchronize(device)
            middle = time.perf_counter()
            autoencoder.decode(latents)
            _synchronize(device)
            encode_times.append(middle - start)
            decode_times.append(time.perf_counter() - middle)
    measured = reconstruction_measures(autoencoder, image)
    loss1, loss2 = measured.loss1, measured.loss2
    finite = bool(torch.isfinite(loss1).all() and torch.isfinite(loss2).all())
    ratio = float(loss1[0] / loss2[0]) if finite and float(loss2[0]) > 0 else None
    return CheckResult(
        autoencoder.name,
        autoencoder.identity,
        str(device),
        str(dtype).removeprefix("torch."),
        side,
        1000 * statistics.median(encode_times[1:]),
        1000 * statistics.median(decode_times[1:]),
        finite,
        ratio,
    )
