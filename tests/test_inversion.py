import numpy as np
import pytest
import torch

from aedr.autoencoders.base import Autoencoder
from aedr.measure.inversion import latenttracer_losses


def decoder_made(autoencoder, seed: int = 0) -> torch.Tensor:
    """An image the decoder made from a random latent: inversion can reach it exactly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return autoencoder.decode(torch.randn(1, 4, 4, 4, generator=generator)).clamp(-1, 1)


def start_loss(autoencoder, x: torch.Tensor) -> torch.Tensor:
    """LatentTracer's loss at the encoder's latent: clamped [0, 1] pixels, MSE."""
    with torch.no_grad():
        decoded = (autoencoder.decode(autoencoder.encode(x)) * 0.5 + 0.5).clamp(0, 1)
        return (decoded - (x * 0.5 + 0.5)).square().mean(dim=(1, 2, 3)).double()


class Identity(Autoencoder):
    """Latents are the pixels: the optimiser's steps can be read off the loss."""

    name = identity = group = "identity"
    latent_channels, spatial_factor, size_multiple = 3, 1, 1

    def __init__(self):
        self._module = torch.nn.Linear(1, 1)

    def encode(self, images, latent="mode", generator=None, noise=None):
        return images

    def decode(self, latents):
        return latents


def test_the_optimiser_improves_on_the_encoder_start(random_tiny):
    x = decoder_made(random_tiny)
    frozen = latenttracer_losses(random_tiny, x, steps=20, lr=0.0)
    optimised = latenttracer_losses(random_tiny, x, steps=20)
    assert frozen.shape == (1,) and frozen.dtype == torch.float64
    torch.testing.assert_close(frozen, start_loss(random_tiny, x), rtol=1e-5, atol=0)
    assert (optimised < 0.9 * frozen).all()  # the steps must find a clearly better latent
    assert not any(p.requires_grad for p in random_tiny.module.parameters())


def test_each_loss_is_taken_before_its_step(random_tiny):
    x = decoder_made(random_tiny)
    one_step = latenttracer_losses(random_tiny, x, steps=1)
    torch.testing.assert_close(one_step, start_loss(random_tiny, x), rtol=1e-5, atol=0)


def test_the_learning_rate_halves_after_step_zero():
    # Pixel 0.9 against a target of 0.5: Adam's first step moves the latent by exactly lr, later
    # steps by about lr (a steady gradient sign); a latent step is half a [0, 1] pixel step. So
    # the losses show the schedule: lr 0.05 at step 0, then 0.025.
    x = torch.full((1, 3, 1, 1), 0.8)  # 0.9 in [0, 1]
    target = torch.zeros_like(x)  # 0.5 in [0, 1]
    model = Identity()
    model.encode = lambda images, *args, **kwargs: x.clone()
    losses = [float(latenttracer_losses(model, target, steps=n)[0]) for n in (1, 2, 3)]
    assert losses[0] == pytest.approx(0.4**2)
    assert losses[1] == pytest.approx(0.375**2, rel=1e-4)  # step 0 at lr 0.05
    assert losses[2] == pytest.approx((0.375 - 0.0125) ** 2, rel=0.01)  # step 1 at 0.025
    assert losses[2] > (0.375 - 0.02) ** 2  # not the 0.05 of a StepLR(50) schedule


def test_latents_are_optimised_in_the_pipelines_scaled_space(small_kl):
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        start = small_kl.inversion_start(x)
        torch.testing.assert_close(start, small_kl.encode(x) * 0.18215)
        torch.testing.assert_close(
            small_kl.inversion_decode(start), small_kl.decode(small_kl.encode(x)), rtol=1e-4,
            atol=1e-5,
        )  # fmt: skip


def test_images_of_a_batch_are_scored_separately(random_tiny):
    x = torch.cat([decoder_made(random_tiny, 1), decoder_made(random_tiny, 2)])
    together = latenttracer_losses(random_tiny, x, steps=10)
    alone = torch.cat([latenttracer_losses(random_tiny, x[i : i + 1], steps=10) for i in (0, 1)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=0)


def test_the_published_input_resizing_ends_at_the_native_size(random_tiny):
    from pathlib import Path

    from aedr.autoencoders.loading import resolve_model
    from aedr.measure.images import LoadedImage
    from aedr.measure.scorer import Scorer
    from aedr.measure.settings import ScoreSettings

    settings = ScoreSettings.paper("inversion")
    assert settings.inversion_resize and settings.provenance("x").settings.inversion_resize
    rgb = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    image = LoadedImage(Path("x.png"), rgb, rgb[..., 0], "PNG")
    sd21 = resolve_model("sd21", random_weights=True)  # generates at 768
    scorer = Scorer([random_tiny, sd21], settings)
    shapes = [scorer.model_input(image, *model.grid())[0].shape for model in scorer.models]
    assert shapes == [(3, 512, 512), (3, 768, 768)]
