"""Any diffusers autoencoder (KL, FLUX.2, VQ/MoVQ, DC-AE, Qwen-Image, tiny) behind one interface.

This adapter is the single place that knows how the families differ:

- Encoders return their latents under different names: ``latent_dist`` (KL autoencoders: mode by
  default, a seeded sample on request), ``latents`` (VQ and tiny), ``latent`` (DC-AE).
- Scaling and shift factors are not applied to AEDR's passes (they cancel in D(E(x))); they are
  kept as ``latent_scale``/``latent_shift`` for LatentTracer, which optimises scaled latents.
- Video-shaped autoencoders (Qwen-Image) take (B, C, T, H, W): images go in as one frame.
- Quantised autoencoders decode either through the codebook (``quantize=True``) or straight from
  the continuous encoder output (``quantize=False``, what the Kandinsky pipelines do with
  ``force_not_quantize=True`` for the UNet's latents).
"""

from __future__ import annotations

from typing import Any

import torch

from aedr.autoencoders.base import Autoencoder, LatentMode


def latents_from_encoder_output(
    output,
    latent: LatentMode = "mode",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalise a diffusers encoder output to a latent tensor.

    A sample with given ``noise`` is computed as diffusers' ``sample`` does (mean + std * noise).
    Deterministic encoders (VQ, tiny, DC-AE) have no posterior: ``latent`` and ``noise`` change
    nothing, as in diffusers' ``retrieve_latents``.
    """
    distribution = getattr(output, "latent_dist", None)
    if distribution is not None:
        if latent != "sample":
            return distribution.mode()
        if noise is None:
            return distribution.sample(generator)
        mean = distribution.mean
        return mean + distribution.std * noise.to(mean.device, mean.dtype).reshape(mean.shape)
    for name in ("latents", "latent"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"unrecognised encoder output {type(output).__name__}")


def spatial_factor_of(config) -> int:
    """Downsampling factor from a diffusers config: each block after the first halves the size."""
    for key in ("block_out_channels", "encoder_block_out_channels", "dim_mult"):
        blocks = getattr(config, key, None)
        if blocks:
            return 2 ** (len(blocks) - 1)
    return 8


def latent_channels_of(config) -> int:
    """Channels of the latent the decoder receives (after a VQ model's ``quant_conv``)."""
    for key in ("vq_embed_dim", "latent_channels", "z_dim"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    raise ValueError("config names no latent channel count")


class DiffusersAutoencoder(Autoencoder):
    """Wraps a loaded diffusers autoencoder model."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        identity: str,
        *,
        group: str | None = None,
        size_multiple: int | None = None,
        quantize: bool | None = None,
    ):
        self.name = name
        self.group = group or name
        self._module: Any = model.eval()  # a diffusers autoencoder of any class
        self._module.requires_grad_(False)
        config = model.config
        self.latent_channels = latent_channels_of(config)
        self.spatial_factor = spatial_factor_of(config)
        self.size_multiple = size_multiple or self.spatial_factor
        self._video = hasattr(config, "temperal_downsample")  # diffusers' spelling
        self.channels_last = type(model).__name__ == "AutoencoderTiny"  # the tiny family
        self.quantize = None
        if hasattr(config, "num_vq_embeddings"):
            self.quantize = True if quantize is None else quantize
        self.identity = identity  # built by aedr.autoencoders.loading.weights_identity
        if self.quantize is None:  # KL and DC-AE families: the pipeline's latent scaling
            self.latent_scale = float(getattr(config, "scaling_factor", None) or 1.0)
            self.latent_shift = float(getattr(config, "shift_factor", None) or 0.0)

    def encode(
        self,
        images: torch.Tensor,
        latent: LatentMode = "mode",
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self._video:
            images = images.unsqueeze(2)
        output = self._module.encode(images)
        return latents_from_encoder_output(output, latent, generator, noise)

    def decode(self, latents: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        quantize = self.quantize if quantize is None else quantize
        if self.quantize is not None:
            output = self._module.decode(latents, force_not_quantize=not quantize)
        else:
            output = self._module.decode(latents)
        images = output.sample
        return images.squeeze(2) if self._video else images

    def inversion_start(self, images: torch.Tensor) -> torch.Tensor:
        if self.quantize is None:
            return super().inversion_start(images)
        # LatentTracer on VQ models: the codebook entries of the encoder's output, unscaled.
        return self._module.quantize(self.encode(images))[0]

    def inversion_decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.quantize is None:
            return super().inversion_decode(latents)
        return self.decode(latents, quantize=False)  # force_not_quantize, as LatentTracer
