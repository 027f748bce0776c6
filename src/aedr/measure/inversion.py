"""The inversion measurement, LatentTracer's, which AEDR is compared with on the same decision.

Inversion by optimisation: the latent starts at the encoder's output and Adam minimises
||D(z) - x||^2 for ``steps`` steps (lr 0.05, halved every 50 steps); the smallest loss seen is the
measurement. It needs gradients through the decoder, which is what makes it ~100x slower.
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
    """Per-image minimum reconstruction MSE over the optimisation, float64, for a (B, 3, H, W)
    batch in [-1, 1]. Images of a batch are optimised jointly but scored separately (the summed
    loss has independent per-image gradients)."""
    import torch

    x = images.to(autoencoder.device, autoencoder.dtype)
    with torch.inference_mode():
        start = autoencoder.encode(x)
    latent = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=halve_every, gamma=0.5)
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64, device=x.device)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            per_image = (autoencoder.decode(latent) - x).float().square().mean(dim=(1, 2, 3))
            best = torch.minimum(best, per_image.detach().double())
            per_image.sum().backward()
            optimizer.step()
            scheduler.step()
        with torch.no_grad():
            final = (autoencoder.decode(latent) - x).float().square().mean(dim=(1, 2, 3))
            best = torch.minimum(best, final.double())
    return best.cpu()
