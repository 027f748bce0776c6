import math

import pytest
import torch

from aedr.measure.reconstruction import (
    SignalError,
    ac_energy_means,
    ac_log_ratio,
    loss_ratio,
    reconstruction_measures,
)


def test_loss_ratio_refuses_undefined_values():
    assert loss_ratio(0.02, 0.01) == 2.0
    with pytest.raises(SignalError, match="loss2 is zero"):
        loss_ratio(0.01, 0.0)
    with pytest.raises(SignalError, match="non-finite"):
        loss_ratio(math.nan, 0.1)


def test_losses_are_per_image_and_batch_independent(random_tiny):
    torch.manual_seed(1)
    images = torch.rand(3, 3, 32, 40) * 2 - 1
    measured = reconstruction_measures(random_tiny, images)
    loss1, loss2 = measured.loss1, measured.loss2
    assert loss1.shape == (3,) and loss1.dtype == torch.float64
    assert torch.all(loss1 > 0) and torch.all(loss2 > 0)
    # float32 convolutions may be blocked differently per batch size: allow 1e-4 relative
    single = [reconstruction_measures(random_tiny, images[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(loss1, torch.cat([s.loss1 for s in single]), rtol=1e-4, atol=0)
    torch.testing.assert_close(loss2, torch.cat([s.loss2 for s in single]), rtol=1e-4, atol=0)


def test_losses_and_ac_energies_follow_the_definition(random_tiny):
    torch.manual_seed(2)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():  # the passes in the layout the measurement runs them in
        x1 = random_tiny.decode(random_tiny.encode(random_tiny.as_input(x)))
        x2 = random_tiny.decode(random_tiny.encode(x1))
    measured = reconstruction_measures(random_tiny, x)
    loss1, loss2 = measured.loss1, measured.loss2
    assert loss1.item() == pytest.approx(torch.mean((x - x1) ** 2).item(), rel=1e-5)
    assert loss2.item() == pytest.approx(torch.mean((x1 - x2) ** 2).item(), rel=1e-5)
    assert measured.ac_energies.dtype == torch.float64  # of the same reconstructions
    torch.testing.assert_close(measured.ac_energies, ac_energy_means(x, x1, x2), rtol=1e-4, atol=0)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    basis = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    basis[0] /= math.sqrt(2)
    return basis


def test_ac_energy_is_the_energy_of_every_dct_coefficient_but_dc():
    """Checked against an explicit 8 x 8 DCT on the blocks aligned with the top-left corner; the
    partial blocks at the right and bottom edges are left out."""
    torch.manual_seed(3)
    x, x1, x2 = (torch.rand(2, 3, 21, 35, dtype=torch.float64) * 2 - 1 for _ in range(3))
    basis = _dct_matrix()

    def dct_ac_energy(residual):  # (B, 3, 16, 32) -> (B,) summed over channels, mean per pixel
        blocks = residual.unfold(2, 8, 8).unfold(3, 8, 8)  # (B, 3, 2, 4, 8, 8)
        coefficients = basis @ blocks @ basis.T
        coefficients[..., 0, 0] = 0
        return coefficients.square().sum(dim=(1, 2, 3, 4, 5)) / (16 * 32)

    inner = (slice(None), slice(None), slice(0, 16), slice(0, 32))
    expected = torch.stack([dct_ac_energy((x - x1)[inner]), dct_ac_energy((x1 - x2)[inner])], 1)
    torch.testing.assert_close(ac_energy_means(x, x1, x2), expected)
    smooth = x + torch.linspace(0, 1, 21, dtype=torch.float64)[:, None]  # not blockwise constant
    blockwise = x1 + 0.3  # a constant shift is DC only
    assert ac_energy_means(x, blockwise, x1)[0, 1] == pytest.approx(0.0, abs=1e-20)
    assert ac_energy_means(smooth, x, x)[0, 0] > 0
    assert ac_energy_means(x[:, :, :7], x1[:, :, :7], x2[:, :, :7]).tolist() == [[0.0, 0.0]] * 2


def test_ac_log_ratio_floors_at_quantisation_noise_and_refuses_what_is_not_energy():
    assert ac_log_ratio(1e-3, 1e-3) == 0.0
    assert ac_log_ratio(1e-2, 1e-3) > ac_log_ratio(1e-3, 1e-3) > ac_log_ratio(1e-3, 1e-2)
    assert abs(ac_log_ratio(1e-12, 0.0)) < 1e-6  # both at the noise floor: equal
    for bad in ((-1.0, 1.0), (math.nan, 1.0), (1.0, math.inf)):
        with pytest.raises(SignalError, match="finite and non-negative"):
            ac_log_ratio(*bad)


def test_the_tiny_family_runs_channels_last_on_cpu_and_paper_mode_as_the_authors(random_tiny):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert random_tiny.channels_last
    assert random_tiny.as_input(x).is_contiguous(memory_format=torch.channels_last)
    assert random_tiny.as_input(x, fastest=False).is_contiguous()
    fast = reconstruction_measures(random_tiny, x)
    authors = reconstruction_measures(random_tiny, x, fastest_layout=False)
    # the order of summation only (random weights, 16 px: small losses, 2e-4 apart at most)
    torch.testing.assert_close(fast.loss1, authors.loss1, rtol=1e-3, atol=0)
    torch.testing.assert_close(fast.loss2, authors.loss2, rtol=1e-3, atol=0)
