"""Tiny autoencoders (TAESD family) from their original / ComfyUI weight files.

The files are state dicts of two ``nn.Sequential`` stacks in [0, 1] image space. The decoder's first
layer is a parameter-free soft clamp of the latents (``3 * tanh(z / 3)``), which is why its weight
keys start at index 1. FLUX.2's taef2 adds a group-normalised 1x1 bottleneck ("pool") to the
encoder's last three and the decoder's first three blocks; its presence is read from the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from aedr.autoencoders.base import (
    TINY_SIZE_MULTIPLE,
    Autoencoder,
    LatentMode,
    ModelUnavailableError,
)
from aedr.autoencoders.weights import load_state_dict


def _conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class SoftClamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class TinyBlock(nn.Module):
    """Residual block; with ``bottleneck`` it first adds a GroupNorm-ed 1x1 expansion (taef2)."""

    def __init__(self, channels: int, bottleneck: bool = False):
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
        )
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if bottleneck:
            wide = 4 * channels
            self.pool = nn.Sequential(
                nn.Conv2d(channels, wide, 1, bias=False),
                nn.GroupNorm(4, wide),
                nn.ReLU(),
                nn.Conv2d(wide, channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def tiny_encoder(latent_channels: int, bottleneck: bool = False) -> nn.Sequential:
    def stage(last: bool) -> list[nn.Module]:
        return [_conv(64, 64, stride=2, bias=False)] + [
            TinyBlock(64, bottleneck and last) for _ in range(3)
        ]

    return nn.Sequential(
        _conv(3, 64),
        TinyBlock(64),
        *stage(False),
        *stage(False),
        *stage(True),
        _conv(64, latent_channels),
    )


def tiny_decoder(latent_channels: int, bottleneck: bool = False) -> nn.Sequential:
    def stage(first: bool) -> list[nn.Module]:
        return [TinyBlock(64, bottleneck and first) for _ in range(3)] + [
            nn.Upsample(scale_factor=2),
            _conv(64, 64, bias=False),
        ]

    return nn.Sequential(
        SoftClamp(),
        _conv(latent_channels, 64),
        nn.ReLU(),
        *stage(True),
        *stage(False),
        *stage(False),
        TinyBlock(64),
        _conv(64, 3),
    )


class TinyAutoencoder(Autoencoder):
    """A TAESD-family autoencoder built from its two weight files."""

    channels_last = True
    spatial_factor = 8

    def __init__(
        self,
        name: str,
        encoder: nn.Sequential,
        decoder: nn.Sequential,
        identity: str,
        group: str | None = None,
        size_multiple: int = TINY_SIZE_MULTIPLE,
    ):
        self.name = name
        self.identity = identity
        self.group = group or name
        self.size_multiple = size_multiple
        self._module: Any = nn.ModuleDict({"encoder": encoder, "decoder": decoder}).eval()
        self._module.requires_grad_(False)
        last: Any = encoder[-1]  # the encoder's last convolution
        self.latent_channels = int(last.out_channels)

    @classmethod
    def random(
        cls,
        name: str,
        latent_channels: int,
        bottleneck: bool = False,
        seed: int = 0,
        identity: str | None = None,
        **kwargs,
    ) -> TinyAutoencoder:
        """The real architecture with seeded random weights (tests and speed measurements)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = tiny_encoder(latent_channels, bottleneck)
            decoder = tiny_decoder(latent_channels, bottleneck)
        return cls(name, encoder, decoder, identity or f"random:{name}:seed{seed}", **kwargs)

    @classmethod
    def from_files(
        cls, name: str, encoder_path: Path, decoder_path: Path, identity: str, **kwargs
    ) -> TinyAutoencoder:
        encoder_state = load_state_dict(encoder_path)
        decoder_state = load_state_dict(decoder_path)
        try:
            latent_channels = decoder_state["1.weight"].shape[1]
            encoder = tiny_encoder(latent_channels, bottleneck="11.pool.0.weight" in encoder_state)
            decoder = tiny_decoder(latent_channels, bottleneck="3.pool.0.weight" in decoder_state)
            encoder.load_state_dict(encoder_state)
            decoder.load_state_dict(decoder_state)
        except (KeyError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"{encoder_path.name} / {decoder_path.name} are not tiny-autoencoder weights: {exc}"
            ) from exc
        return cls(name, encoder.float(), decoder.float(), identity, **kwargs)

    def encode(
        self,
        images: torch.Tensor,
        latent: LatentMode = "mode",
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # The tiny encoder is deterministic: there is no posterior to sample, so both modes agree.
        return self._module["encoder"](images * 0.5 + 0.5)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._module["decoder"](latents) * 2 - 1
