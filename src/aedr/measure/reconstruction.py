"""The double reconstruction: how much more the first reconstruction loses than the second.

For an image x and autoencoder (E, D): x1 = D(E(x)), x2 = D(E(x1)), loss1 = MSE(x, x1) and
loss2 = MSE(x1, x2). Images the decoder made lie on its output manifold already, so their loss
ratio is near 1; other images lose much more the first time. What is decided from these losses
(the paper's ratio x homogeneity, or another statistic) lives in ``aedr.decide.statistics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aedr.errors import AedrError
from aedr.timing import stage

if TYPE_CHECKING:
    import numpy as np
    import torch

    from aedr.autoencoders.base import Autoencoder, LatentMode
    from aedr.measure.degradation import Observations


class SignalError(AedrError, ValueError):
    """A measurement or statistic that is not a finite number; the message says why."""


@dataclass
class ReconstructionMeasures:
    """Per-image losses of one double reconstruction and, when asked, its per-pixel evidence."""

    loss1: torch.Tensor  # (B,) float64
    loss2: torch.Tensor
    # (B, 2) float64: mean weighted high-pass log ratio and mean weight, on the observed pixels
    # (``aedr.measure.evidence.evidence_means``)
    evidence_means: torch.Tensor
    # (B, 2) float64: the two residuals' mean AC energies per pixel (``ac_energy_means``)
    ac_energies: torch.Tensor
    evidence: np.ndarray | None = None  # (B, 2, H, W) float32, see aedr.measure.evidence


def reconstruction_measures(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    latent: LatentMode = "mode",
    generator: torch.Generator | None = None,
    *,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss_dtype: str = "fp64",
    evidence: bool = False,
    observations: Observations | None = None,
    fastest_layout: bool = True,
    distance: str = "l2",
    border: int = 0,
) -> ReconstructionMeasures:
    """The double reconstruction of a (B, 3, H, W) batch in [-1, 1]: its losses, and with
    ``evidence`` the per-pixel map computed from the same x, x1 and x2 (no extra passes).
    ``fastest_layout`` runs the passes in the model's fastest memory layout
    (:meth:`~aedr.autoencoders.base.Autoencoder.as_input`); off, as the authors' loop ran them.

    With ``observations`` (the batch's, see ``aedr.measure.degradation``) both reconstructions
    are taken through each image's degradation and compared in its observed pixels, each loss
    floored at 8-bit quantisation noise; ``images`` are then the views. The high-pass evidence
    is taken before a JPEG file's re-encoding, the losses and AC energies after it.

    x1 enters the second pass as the decoder returned it: unclamped and unquantised, as in the
    paper. Losses are reduced in float64 so that they do not depend on the batch size, or with
    ``loss_dtype="model"`` in the model's precision, as the authors' ``nn.MSELoss`` reduces them.
    With ``latent="sample"``, ``noise`` gives each pass's noise (drawn per image beforehand);
    without it the noise comes from ``generator``. A batch that comes out non-finite in half
    precision is recomputed with float32 arithmetic on the same weights (with generator noise the
    recomputation draws fresh noise); what is still non-finite is left for ``loss_ratio`` to flag.
    ``distance`` is what the losses measure (``aedr.measure.distances``; MSE by default); the
    high-pass evidence and AC energies do not depend on it. Observations need the MSE.
    ``border`` pixels along each edge are left out of the high-pass evidence's means
    (``aedr.measure.evidence.evidence_means``), not of the map, the losses or the AC energies.
    """
    import torch

    def measure() -> ReconstructionMeasures:
        return _double_reconstruction(
            autoencoder, images, latent, generator, noise, loss_dtype, evidence, observations,
            fastest_layout, distance, border,
        )  # fmt: skip

    with torch.inference_mode():
        result = measure()
        finite = torch.isfinite(torch.cat((result.loss1, result.loss2))).all()
        if autoencoder.dtype != torch.float32 and not finite:
            with autoencoder.upcast():
                result = measure()
    return result


def _double_reconstruction(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    latent: LatentMode,
    generator: torch.Generator | None,
    noise: tuple[torch.Tensor, torch.Tensor] | None,
    loss_dtype: str,
    evidence: bool,
    observations: Observations | None,
    fastest_layout: bool,
    distance: str,
    border: int,
) -> ReconstructionMeasures:
    def reconstruct(images: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
        with stage("encoder"):
            if given is None:  # autoencoders written before per-image noise existed still work
                latents = autoencoder.encode(images, latent, generator)
            else:
                latents = autoencoder.encode(images, latent, generator, given)
        with stage("decoder"):
            return autoencoder.decode(latents)

    first, second = noise if noise is not None else (None, None)
    with stage("preprocessing"):
        x = autoencoder.as_input(images, fastest_layout)
    x1 = reconstruct(x, first)
    x2 = reconstruct(x1, second)
    with stage("evidence"):
        return _measures(x, x1, x2, loss_dtype, evidence, observations, distance, border)


def _measures(
    x: torch.Tensor,
    x1: torch.Tensor,
    x2: torch.Tensor,
    loss_dtype: str,
    evidence: bool,
    observations: Observations | None,
    distance: str,
    border: int,
) -> ReconstructionMeasures:
    import torch

    from aedr.measure.distances import distance_losses
    from aedr.measure.evidence import evidence_means, pixel_evidence

    if observations is not None and distance != "l2":
        raise ValueError("measurement through observations needs the l2 distance")
    pixel_map = None
    if evidence:
        pixel_map = pixel_evidence(x, x1, x2)
    if observations is not None:
        from aedr.measure.degradation import QUANTISATION_FLOOR

        x = observations.reference.to(x1.device, x1.dtype)
        x1, x2 = observations.resampled(x1), observations.resampled(x2)
    means = evidence_means(x, x1, x2, border).cpu()  # in float32 whatever the loss precision
    if observations is not None:  # highpass reads the detail JPEG drops: not re-encoded
        x1, x2 = observations.reencoded(x1), observations.reencoded(x2)
    ac_energies = ac_energy_means(x, x1, x2).cpu()
    if loss_dtype != "model":
        x, x1, x2 = (t.to(torch.float64) for t in (x, x1, x2))
    loss1 = distance_losses(distance, x, x1)
    loss2 = distance_losses(distance, x1, x2)
    if observations is not None:
        loss1, loss2 = loss1.clamp(min=QUANTISATION_FLOOR), loss2.clamp(min=QUANTISATION_FLOOR)
    return ReconstructionMeasures(
        loss1.double().cpu(), loss2.double().cpu(), means, ac_energies, pixel_map
    )


AC_BLOCK = 8
"""Side of the blocks whose mean is removed: JPEG's 8 x 8 DCT blocks, whose DC term it is."""


def ac_energy_means(x: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """(B, 2) float64: the mean energy per pixel (summed over colour channels) of the residuals
    x - x1 and x1 - x2 once each 8 x 8 block's mean is removed, on the blocks whole in the image
    and aligned with its top-left corner, where a JPEG file's blocks lie.

    What is left is the residuals' AC energy: by the DCT's orthonormality, exactly the energy of
    every coefficient but the DC of the blocks JPEG transforms. It drops the residuals' slow
    colour drift like the high-pass of ``highpass`` does, but keeps the low and middle
    frequencies that JPEG quantises least (docs/results/robustness.md). Means over equal-sized crops
    average to the mean over all their pixels.

    >>> import torch
    >>> x = torch.zeros(1, 3, 8, 16)
    >>> x1 = x.clone(); x1[:, :, :, :8] = 0.5  # a flat block: DC only, no AC energy
    >>> x2 = x1.clone(); x2[:, 0, 0, 8] = 0.5  # one pixel: AC energy 0.25 * 63 / 64 in 128 px
    >>> [round(e * 128 / 0.25 * 64, 9) for e in ac_energy_means(x, x1, x2)[0].tolist()]
    [0.0, 63.0]
    """
    import torch
    import torch.nn.functional as F

    rows = x.shape[2] // AC_BLOCK * AC_BLOCK
    cols = x.shape[3] // AC_BLOCK * AC_BLOCK
    if rows == 0 or cols == 0:
        return torch.zeros(x.shape[0], 2, dtype=torch.float64)
    energies = []
    for residual in (x - x1, x1 - x2):
        residual = residual[:, :, :rows, :cols].double()
        block_means = F.avg_pool2d(residual, AC_BLOCK)
        dc = block_means.repeat_interleave(AC_BLOCK, 2).repeat_interleave(AC_BLOCK, 3)
        energies.append((residual - dc).square().sum(dim=1).mean(dim=(1, 2)))
    return torch.stack(energies, dim=1)


def loss_ratio(loss1: float, loss2: float) -> float:
    """loss1 / loss2, refusing values that would put NaN or infinity into results. Losses are
    non-negative, or both negative for the ``psnr`` distance (-PSNR).

    >>> loss_ratio(0.02, 0.01), loss_ratio(-30.0, -40.0)
    (2.0, 0.75)
    """
    if loss2 == 0.0 or loss2 == -math.inf:  # -inf: -PSNR of reconstructions that coincide
        raise SignalError(
            "loss2 is zero: the two reconstructions coincide exactly, so the ratio is undefined "
            "(typically a flat, single-colour image)"
        )
    if not (math.isfinite(loss1) and math.isfinite(loss2)):
        raise SignalError(
            "non-finite reconstruction loss: the autoencoder's output holds NaN or infinite "
            "values (broken weights, or an overflow in half precision)"
        )
    if (loss1 < 0) != (loss2 < 0):
        raise SignalError(
            f"loss1 ({loss1:g}) and loss2 ({loss2:g}) have opposite signs: no distance the "
            "ratio is defined for measures them (a reconstruction identical to its input)"
        )
    return loss1 / loss2


def ac_log_ratio(energy1: float, energy2: float) -> float:
    """The whole image's AC evidence: log(e1 + q) - log(e2 + q) of the residuals' mean AC
    energies (``ac_energy_means``), q the energy of 8-bit quantisation noise, so that residuals
    at the noise floor compare as equal. Lower means "consistent with this decoder".

    >>> ac_log_ratio(0.0, 0.0)
    0.0
    """
    from aedr.measure.evidence import QUANTISATION_ENERGY

    if not (math.isfinite(energy1) and math.isfinite(energy2)) or min(energy1, energy2) < 0:
        raise SignalError(
            f"AC energies must be finite and non-negative, got {energy1!r}, {energy2!r}"
        )
    return math.log(energy1 + QUANTISATION_ENERGY) - math.log(energy2 + QUANTISATION_ENERGY)


EVIDENCE_FIELDS = ("highpass_log_ratio", "highpass_weight", "ac_log_ratio")
"""What a reconstruction record carries beside its losses (``evidence_fields``)."""


def evidence_fields(
    weighted_mean: float, weight_mean: float, ac_energy1: float, ac_energy2: float
) -> dict[str, float]:
    """A record's numbers beside its losses, from one image's means (``evidence_means`` and
    ``ac_energy_means``, averaged over its crops first): what ``highpass`` and ``ac`` read. The
    scorer and the tensor API both fill records from it.

    >>> sorted(evidence_fields(0.0, 0.0, 0.0, 0.0).items())
    [('ac_log_ratio', 0.0), ('highpass_log_ratio', 1.0), ('highpass_weight', 0.0)]
    """
    from aedr.measure.evidence import highpass_log_ratio

    values = (
        highpass_log_ratio(weighted_mean, weight_mean),
        weight_mean,
        ac_log_ratio(ac_energy1, ac_energy2),
    )
    return dict(zip(EVIDENCE_FIELDS, values, strict=True))
