"""The one interface AEDR needs from an autoencoder: images in [-1, 1] -> latents -> images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

from aedr.errors import AedrError

if TYPE_CHECKING:  # torch loads only when an autoencoder is actually built
    import torch

LatentMode = Literal["mode", "sample"]
TINY_SIZE_MULTIPLE = 8
"""The grid of the TAESD family's output, unless a registry entry says otherwise."""


class ModelUnavailableError(AedrError, RuntimeError):
    """An autoencoder that cannot be loaded here (not cached, offline, gated, bad files)."""


class Autoencoder(ABC):
    """An encoder/decoder pair working on (B, 3, H, W) images in [-1, 1].

    ``identity`` names the exact weights (hub id and revision, or a hash of the weight files), so a
    calibration made with one autoencoder is never silently applied to another. ``group`` names the
    equivalence group: models that ship these very weights, which AEDR cannot tell apart.
    ``size_multiple`` is the grid images are cropped to (the family's pipeline output grid).
    """

    name: str
    identity: str
    group: str
    latent_channels: int
    spatial_factor: int
    size_multiple: int

    _module: torch.nn.Module

    @property
    def module(self) -> torch.nn.Module:
        """The torch module holding every weight (used for device and dtype moves)."""
        return self._module

    channels_last: bool = False
    """Whether the passes run faster on channels-last inputs on a CPU: measured for the tiny
    autoencoders (1.5-1.8x faster), not for the SD VAE (1.2x slower) (docs/performance.md)."""

    def as_input(self, images: torch.Tensor, fastest: bool = True) -> torch.Tensor:
        """``images`` on the model's device, in its dtype and, with ``fastest``, in the memory
        layout its passes run fastest in (else as given: the authors' loop ran contiguous
        tensors). The layout changes no value, only the order of summation (losses move by
        about 1e-6, relative)."""
        import torch

        x = images.to(self.device, self.dtype)
        if fastest and self.channels_last and x.device.type == "cpu" and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    latent_scale: float = 1.0
    """The pipeline's ``scaling_factor``: the latents a diffusion model sees are
    (z - latent_shift) * latent_scale. AEDR never needs it (it cancels in D(E(x))); LatentTracer's
    optimiser steps live in that space."""
    latent_shift: float = 0.0

    @abstractmethod
    def encode(
        self,
        images: torch.Tensor,
        latent: LatentMode = "mode",
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Latents of ``images``; ``latent`` picks the posterior mode or a sample where there is one.

        A sample is mean + std * noise, the noise drawn from ``generator`` unless given (shaped
        like the latents, or one per image with the same number of elements).
        """

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in (roughly) [-1, 1], unclamped."""

    def inversion_start(self, images: torch.Tensor) -> torch.Tensor:
        """Where LatentTracer's optimisation starts: the encoder's latent in the pipeline's
        scaled space (a VQ model's snapped to its codebook)."""
        return (self.encode(images) - self.latent_shift) * self.latent_scale

    def inversion_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The decoder as LatentTracer calls it on a scaled latent."""
        return self.decode(latents / self.latent_scale + self.latent_shift)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        import torch

        # nn.Module.to itself: diffusers' override warns on every dtype cast, wanted or not.
        torch.nn.Module.to(self.module, device=device, dtype=dtype)
        return self

    def compile(self) -> Autoencoder:
        """``torch.compile`` encode and decode (``--compile``): worth it only for long runs, as
        compiling takes about a minute and gained about 10% on the SD VAE on our 2-core CPU."""
        import torch

        self.encode = torch.compile(self.encode)  # type: ignore[method-assign]
        self.decode = torch.compile(self.decode)  # type: ignore[method-assign]
        return self

    @contextmanager
    def upcast(self) -> Iterator[Autoencoder]:
        """Run in float32 for the duration (the fallback when half precision overflows)."""
        import torch

        original = self.dtype
        self.to(dtype=torch.float32)
        try:
            yield self
        finally:
            self.to(dtype=original)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, latent_channels={self.latent_channels}, "
            f"spatial_factor={self.spatial_factor}, device={self.device}, dtype={self.dtype})"
        )
