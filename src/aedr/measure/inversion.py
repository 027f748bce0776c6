"""The inversion measurement, LatentTracer's, which AEDR is compared with on the same decision.

As published (ZhentingWang/LatentTracer, ``ddim_multi_sd_multilatent.py``): the latent starts at
the encoder's mean in the pipeline's scaled space (x ``scaling_factor``; a VQ model's codebook
entries) and is decoded as latent / ``scaling_factor``; the decoded image is mapped to [0, 1] and
clamped, and its MSE against the image in [0, 1] is minimised by Adam (lr 0.05, 100 steps), the
learning rate halved after every step ``i`` with ``i % 50 == 0`` (step 0 included). The
measurement is the smallest loss seen, each loss taken before its step. It needs gradients
through the decoder, which is what makes it ~100x slower than AEDR. The published input resizing
(512 x 512 by area, then the family's native size) is ``ScoreSettings(inversion_resize=True)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from aedr.autoencoders.base import Autoencoder

LATENTTRACER_STEPS = 100
LATENTTRACER_LR = 0.05
LATENTTRACER_HALVE_EVERY = 50


def latenttracer_losses(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    steps: int = LATENTTRACER_STEPS,
    lr: float = LATENTTRACER_LR,
    halve_every: int = LATENTTRACER_HALVE_EVERY,
) -> torch.Tensor:
    """Per-image minimum reconstruction MSE (in [0, 1] pixels) over the optimisation, float64, for
    a (B, 3, H, W) batch in [-1, 1]. Images of a batch are optimised jointly but scored
    separately: the summed loss has independent per-image gradients and Adam works per element,
    so each image follows the trajectory it would follow alone."""
    import torch

    x = autoencoder.as_input(images)
    target = x.float() * 0.5 + 0.5
    with torch.inference_mode():
        start = autoencoder.inversion_start(x)
    latent = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=lr)
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64, device=x.device)
    with torch.enable_grad():
        for step in range(steps):
            decoded = (autoencoder.inversion_decode(latent).float() * 0.5 + 0.5).clamp(0, 1)
            per_image = (decoded - target).square().mean(dim=(1, 2, 3))
            best = torch.minimum(best, per_image.detach().double())  # before this step
            optimizer.zero_grad(set_to_none=True)
            per_image.sum().backward()
            optimizer.step()
            if step % halve_every == 0:
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
    return best.cpu()
