"""Any diffusers autoencoder (``AutoencoderKL``, ``AutoencoderTiny``, ...) behind one interface.

Encoders return their latents under different names (``latent_dist`` for KL autoencoders,
``latents`` for the tiny ones, ``latent`` for deep-compression ones); this adapter is the single
place that knows. Scaling and shift factors are not applied: they cancel in D(E(x)).
"""

from __future__ import annotations

import torch

from aedr.autoencoders.base import Autoencoder, LatentMode


def latents_from_encoder_output(
    output, latent: LatentMode = "mode", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Normalise a diffusers encoder output to a latent tensor."""
    distribution = getattr(output, "latent_dist", None)
    if distribution is not None:
        return distribution.sample(generator) if latent == "sample" else distribution.mode()
    for name in ("latents", "latent"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"unrecognised encoder output {type(output).__name__}")


class DiffusersAutoencoder(Autoencoder):
    """Wraps a loaded diffusers autoencoder model."""

    def __init__(self, name: str, model: torch.nn.Module, identity: str):
        self.name = name
        self.identity = identity
        self._module = model.eval()
        self._module.requires_grad_(False)
        config = model.config
        self.latent_channels = int(config.latent_channels)
        block_channels = getattr(config, "block_out_channels", None) or ()
        # diffusers' own rule (VaeImageProcessor): each extra block halves the resolution.
        self.spatial_factor = 2 ** (len(block_channels) - 1) if block_channels else 8
        self.size_multiple = self.spatial_factor

    def encode(
        self,
        images: torch.Tensor,
        latent: LatentMode = "mode",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return latents_from_encoder_output(self._module.encode(images), latent, generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._module.decode(latents).sample
