"""Tensors in, tensors out: AEDR for images already in memory, in the style of ``lpips``.

>>> import aedr, torch                                           # doctest: +SKIP
>>> signal = aedr.AEDR(aedr.create_autoencoder("taesd"))         # doctest: +SKIP
>>> out = signal(torch.rand(4, 3, 256, 256) * 2 - 1)             # doctest: +SKIP
>>> out.signal, out.loss1, out.loss2, out.homogeneity            # doctest: +SKIP

The batch is measured exactly as files are (the same double reconstruction, float64 losses,
homogeneity on the OpenCV grey of the 8-bit image) and the statistic comes from
``aedr.decide.statistics``; give a calibration to apply its statistic and threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aedr.decide.statistics import DEFAULT_STATISTIC, get_statistic
from aedr.measure.homogeneity import glcm_homogeneity
from aedr.measure.images import luma_opencv
from aedr.measure.reconstruction import evidence_fields, reconstruction_measures
from aedr.measure.settings import ScoreSettings

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.base import Autoencoder, LatentMode
    from aedr.decide.calibration import Calibration


@dataclass(frozen=True)
class BatchSignals:
    """Per-image results for a batch: float64 tensors of shape (B,), ``belongs`` a bool tensor
    when a calibration was given. ``highpass_weight`` is the share of each image that carries
    high-pass evidence; too little of it accepts nowhere (``aedr.decide.statistics``)."""

    loss1: torch.Tensor
    loss2: torch.Tensor
    homogeneity: torch.Tensor
    signal: torch.Tensor
    belongs: torch.Tensor | None = None
    highpass_weight: torch.Tensor | None = None


class AEDR:
    """The AEDR signal of a batch against one autoencoder: ``AEDR(autoencoder)(images)``.

    ``images`` is a (B, 3, H, W) tensor in [-1, 1] with sides on the autoencoder's size multiple.
    The statistic is the default (``DEFAULT_STATISTIC``, as the CLI's) unless ``statistic`` names another, or a
    ``calibration`` supplies its own statistic, fitted parameters and threshold; the border left
    out of ``highpass`` is the default setting's, or the one the calibration was measured with.
    """

    def __init__(
        self,
        autoencoder: Autoencoder,
        statistic: str = DEFAULT_STATISTIC,
        *,
        calibration: Calibration | None = None,
        latent: LatentMode = "mode",
        generator: torch.Generator | None = None,
    ):
        self.autoencoder, self.calibration = autoencoder, calibration
        self.statistic = get_statistic(calibration.statistic if calibration else statistic)
        if self.statistic.measurement != "reconstruction":
            raise ValueError(
                f"statistic {self.statistic.name} does not read the double reconstruction"
            )
        self.parameters: dict[str, Any] = dict(calibration.parameters) if calibration else {}
        self.latent, self.generator = latent, generator
        measured = calibration.measurement_provenance.settings if calibration else ScoreSettings()
        self.border = measured.border

    def __call__(self, images: torch.Tensor) -> BatchSignals:
        import torch

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        multiple = self.autoencoder.size_multiple
        if images.shape[2] % multiple or images.shape[3] % multiple:
            raise ValueError(
                f"sides {images.shape[2]}x{images.shape[3]} are not multiples of "
                f"{multiple}, the autoencoder's grid: crop them first"
            )
        measured = reconstruction_measures(
            self.autoencoder, images, self.latent, self.generator, border=self.border
        )
        loss1, loss2 = measured.loss1, measured.loss2
        pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        homogeneity = [
            glcm_homogeneity(luma_opencv(np.ascontiguousarray(p.permute(1, 2, 0).numpy())))
            for p in pixels
        ]
        records = [
            {"measurement": "reconstruction", "loss1": a, "loss2": b, "homogeneity": h,
             **evidence_fields(*means, *energies)}
            for a, b, h, means, energies in zip(
                loss1.tolist(), loss2.tolist(), homogeneity, measured.evidence_means.tolist(),
                measured.ac_energies.tolist(), strict=True)
        ]  # fmt: skip
        signal = torch.tensor(
            [self.statistic.value(r, self.parameters) for r in records], dtype=torch.float64
        )
        belongs = None
        if self.calibration is not None:
            belongs = torch.tensor([
                self.calibration.belongs(value, self.statistic.shortfall(r))
                for value, r in zip(signal.tolist(), records, strict=True)
            ])  # fmt: skip
        return BatchSignals(
            loss1, loss2, torch.tensor(homogeneity, dtype=torch.float64), signal, belongs,
            measured.evidence_means[:, 1].double(),
        )  # fmt: skip
