"""What loss1 and loss2 measure: the distance between an image and its reconstruction.

The paper's distance is the mean squared error (``l2``); the authors' ``cal_loss_ratio.py``
offers four more for its ablation, and each is computed here with their exact criterion:
``nn.L1Loss`` and ``nn.MSELoss`` on [-1, 1]; ``1 - SSIM`` and ``-PSNR`` as torchmetrics computes
them on ``(x + 1) / 2`` with ``data_range=2.0`` (the authors' setting, kept although those pixels
span 1); LPIPS (AlexNet, v0.1) on [-1, 1]. Lower is closer for every one, so loss1 / loss2 reads
the same way; for ``psnr`` both losses are negative and their ratio is PSNR1 / PSNR2.

LPIPS needs two weight files that ``aedr`` never downloads: torchvision's ImageNet AlexNet
(``alexnet-owt-7be5be79.pth``) and LPIPS's linear layers (``lpips-alex-v0.1.pth``, shipped in the
``lpips`` package as ``weights/v0.1/alex.pth``). :func:`lpips_files` says where they are looked
for; a missing one is a :class:`DistanceError` naming it and how to get it.
"""

from __future__ import annotations

import functools
import math
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from aedr.errors import AedrError

if TYPE_CHECKING:
    import torch

Distance = Literal["l2", "l1", "ssim", "psnr", "lpips"]
DISTANCES: tuple[str, ...] = get_args(Distance)
DEFAULT_DISTANCE = "l2"
DATA_RANGE = 2.0
"""The authors' ``data_range`` for SSIM and PSNR, on pixels mapped to [0, 1]."""
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LINEAR_FILE = "lpips-alex-v0.1.pth"
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_TAPS = (1, 4, 7, 9, 11)
"""The AlexNet layers (ReLU outputs, torchvision's ``features`` indices) LPIPS compares."""


class DistanceError(AedrError, RuntimeError):
    """A distance that cannot be computed here (LPIPS weights missing or not what they claim)."""


def distance_losses(
    distance: str, images: torch.Tensor, reconstructions: torch.Tensor
) -> torch.Tensor:
    """(B,) the distance of each reconstruction to its image, both (B, 3, H, W) in [-1, 1], in
    the inputs' precision (LPIPS: float32).

    >>> import torch
    >>> x = torch.zeros(1, 3, 16, 16); y = x + 0.5
    >>> [round(float(distance_losses(d, x, y)[0]), 4) for d in ("l2", "l1", "psnr")]
    [0.25, 0.5, -18.0618]
    """
    if distance == "l2":
        return (images - reconstructions).square().mean(dim=(1, 2, 3))
    if distance == "l1":
        return (images - reconstructions).abs().mean(dim=(1, 2, 3))
    if distance == "psnr":
        mse = ((images + 1) / 2 - (reconstructions + 1) / 2).square().mean(dim=(1, 2, 3))
        return -(2 * math.log(DATA_RANGE) - mse.log()) * (10 / math.log(10))
    if distance == "ssim":
        return 1 - ssim((reconstructions + 1) / 2, (images + 1) / 2)
    if distance == "lpips":
        return lpips_network(str(images.device))(images.float(), reconstructions.float())
    raise DistanceError(f"unknown distance {distance!r}; use one of {', '.join(DISTANCES)}")


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean SSIM per image as torchmetrics' ``structural_similarity_index_measure`` computes
    it with ``data_range=2.0``: an 11-tap Gaussian window (sigma 1.5), reflect padding, the
    variances clamped at 0, the map averaged over channels and pixels."""
    import torch
    import torch.nn.functional as F

    channels, dtype, device = preds.shape[1], preds.dtype, preds.device
    size = int(3.5 * SSIM_SIGMA + 0.5) * 2 + 1
    offsets = torch.arange((1 - size) / 2, (1 + size) / 2, step=1, dtype=dtype, device=device)
    taps = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    taps = taps / taps.sum()
    pad = (size - 1) // 2
    preds = F.pad(preds, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat((preds, target, preds * preds, target * target, preds * target))
    # The Gaussian window is the outer product of ``taps``: two 1-D passes, 2 x 11 taps per pixel
    # instead of 121, the same sums up to rounding.
    rows = F.conv2d(stacked, taps.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    mean_p, mean_t, square_p, square_t, product = F.conv2d(
        rows, taps.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels
    ).split(preds.shape[0])
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    variance_p = torch.clamp(square_p - mean_p.pow(2), min=0.0)
    variance_t = torch.clamp(square_t - mean_t.pow(2), min=0.0)
    covariance = product - mean_p * mean_t
    index = ((2 * mean_p * mean_t + c1) * (2 * covariance + c2)) / (
        (mean_p.pow(2) + mean_t.pow(2) + c1) * (variance_p + variance_t + c2)
    )
    return index.reshape(index.shape[0], -1).mean(-1)


def lpips_files() -> dict[str, list[Path]]:
    """Where each LPIPS weight file is looked for, in order: ``$AEDR_WEIGHTS_DIR``, then torch's hub cache for AlexNet and the installed ``lpips``
    package for the linear layers. Nothing is downloaded."""
    from aedr.autoencoders.registry import weights_dirs

    folders = weights_dirs()
    alexnet = [folder / ALEXNET_FILE for folder in folders]
    alexnet.append(Path(_hub_dir()) / "checkpoints" / ALEXNET_FILE)
    linear = [folder / LINEAR_FILE for folder in folders]
    spec = find_spec("lpips")  # located, not imported: the package imports torchvision
    if spec is not None and spec.origin:
        linear.append(Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth")
    return {ALEXNET_FILE: alexnet, LINEAR_FILE: linear}


def _hub_dir() -> str:
    import torch

    return torch.hub.get_dir()


def check_distance(distance: str) -> None:
    """Fail now, before any image, when ``distance`` cannot be computed on this machine."""
    if distance == "lpips":
        _found_lpips_files()


def _found_lpips_files() -> tuple[Path, Path]:
    found: list[Path] = []
    missing: list[str] = []
    for name, places in lpips_files().items():
        present = next((place for place in places if place.is_file()), None)
        if present is None:
            missing.append(f"{name} (looked for {', '.join(map(str, places))})")
        else:
            found.append(present)
    if missing:
        raise DistanceError(
            "the lpips distance needs weight files that are not on this machine: "
            + "; ".join(missing),
            hint=f"put torchvision's AlexNet ({ALEXNET_URL}) and LPIPS's linear layers (the "
            f"lpips package's weights/v0.1/alex.pth, saved as {LINEAR_FILE}) in "
            "$AEDR_WEIGHTS_DIR, or `pip install lpips` and cache AlexNet once with "
            "`python -c \"import torchvision; torchvision.models.alexnet(weights='DEFAULT')\"`",
        )
    return found[0], found[1]


@functools.cache
def lpips_network(device: str = "cpu") -> torch.nn.Module:
    """LPIPS (AlexNet, v0.1) from the local weight files, on ``device``, in evaluation mode;
    loaded once per device."""
    alexnet, linear = _found_lpips_files()
    network = _lpips()
    try:
        network.load(_state(alexnet), _state(linear))
    except (RuntimeError, KeyError) as exc:
        raise DistanceError(
            f"the LPIPS weights in {alexnet} and {linear} are not torchvision's AlexNet and "
            f"LPIPS v0.1's linear layers: {exc}"
        ) from None
    return network.requires_grad_(False).to(device).eval()


def _state(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DistanceError(f"cannot read the LPIPS weight file {path}: {exc}") from None


def _lpips() -> Any:
    """An LPIPS network without weights (its class defined here: torch is imported on use)."""
    import torch
    from torch import nn

    class LPIPS(nn.Module):
        """AlexNet's ``features`` (torchvision's layout), LPIPS's input scaling, unit-normalised
        activations at five taps, squared differences weighted by the linear layers, averaged
        over space and summed over taps."""

        shift: torch.Tensor  # LPIPS's input scaling, as buffers: they follow .to(device)
        scale: torch.Tensor

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            )  # fmt: skip
            self.linear = nn.ModuleList(
                nn.Conv2d(channels, 1, 1, bias=False) for channels in (64, 192, 384, 256, 256)
            )
            for name, value in (("shift", LPIPS_SHIFT), ("scale", LPIPS_SCALE)):
                self.register_buffer(name, torch.tensor(value).view(1, 3, 1, 1), persistent=False)

        def load(self, alexnet: dict, linear: dict) -> None:
            features = {k.removeprefix("features."): v for k, v in alexnet.items()
                        if k.startswith("features.")}  # fmt: skip
            self.features.load_state_dict(features)
            for tap, layer in enumerate(self.linear):
                layer.weight.data.copy_(linear[f"lin{tap}.model.1.weight"])

        def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
            x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
            out = []
            for index, layer in enumerate(self.features):
                x = layer(x)
                if index in LPIPS_TAPS:
                    out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
            return out

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
            for layer, ta, tb in zip(self.linear, self.taps(a), self.taps(b), strict=True):
                total = total + layer((ta - tb).square()).mean(dim=(1, 2, 3))
            return total

    return LPIPS()
