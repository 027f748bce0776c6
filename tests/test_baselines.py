import torch

from aedr.baselines import latenttracer_losses
from aedr.signal import reconstruction_losses


def test_latenttracer_never_scores_worse_than_the_encoder_start(random_tiny):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = latenttracer_losses(random_tiny, x, steps=20)
    start, _ = reconstruction_losses(random_tiny, x)
    assert losses.shape == (2,) and losses.dtype == torch.float64
    assert torch.isfinite(losses).all()
    assert (losses <= start * (1 + 1e-5)).all()  # the minimum includes the starting latent
    assert (latenttracer_losses(random_tiny, x, steps=40) <= losses * (1 + 1e-5)).all()
    assert not any(p.requires_grad for p in random_tiny.module.parameters())
