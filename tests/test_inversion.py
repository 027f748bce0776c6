import torch

from aedr.measure.inversion import latenttracer_losses
from aedr.measure.reconstruction import reconstruction_losses


def decoder_made(autoencoder, seed: int = 0) -> torch.Tensor:
    """An image the decoder made from a random latent: inversion can reach it exactly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return autoencoder.decode(torch.randn(1, 4, 4, 4, generator=generator)).clamp(-1, 1)


def test_the_optimiser_improves_on_the_encoder_start(random_tiny):
    x = decoder_made(random_tiny)
    start, _ = reconstruction_losses(random_tiny, x)
    frozen = latenttracer_losses(random_tiny, x, steps=20, lr=0.0)
    optimised = latenttracer_losses(random_tiny, x, steps=20)
    assert frozen.shape == (1,) and frozen.dtype == torch.float64
    assert torch.allclose(frozen, start, rtol=1e-5)  # lr 0: the encoder's latent, nothing more
    assert (optimised < 0.9 * frozen).all()  # the steps must find a clearly better latent
    assert not any(p.requires_grad for p in random_tiny.module.parameters())


def test_images_of_a_batch_are_scored_separately(random_tiny):
    x = torch.cat([decoder_made(random_tiny, 1), decoder_made(random_tiny, 2)])
    together = latenttracer_losses(random_tiny, x, steps=10)
    alone = torch.cat([latenttracer_losses(random_tiny, x[i : i + 1], steps=10) for i in (0, 1)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=0)
