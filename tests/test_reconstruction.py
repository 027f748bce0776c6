import math

import pytest
import torch

from aedr.measure.reconstruction import SignalError, loss_ratio, reconstruction_measures


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


def test_losses_follow_the_definition(random_tiny):
    torch.manual_seed(2)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        x1 = random_tiny.decode(random_tiny.encode(x))
        x2 = random_tiny.decode(random_tiny.encode(x1))
    measured = reconstruction_measures(random_tiny, x)
    loss1, loss2 = measured.loss1, measured.loss2
    assert loss1.item() == pytest.approx(torch.mean((x - x1) ** 2).item(), rel=1e-5)
    assert loss2.item() == pytest.approx(torch.mean((x1 - x2) ** 2).item(), rel=1e-5)
