import pytest
import torch
from conftest import loss_record, smooth_image

from aedr.decide.calibration import calibrate
from aedr.measure.scorer import score_array
from aedr.tensors import AEDR


def test_the_default_statistic_reads_a_batch_as_it_reads_a_file(random_tiny, monkeypatch):
    """Tensors in, tensors out with ``highpass``: the same numbers as the file pipeline, and a
    calibration's threshold applied, flat images accepted nowhere."""
    images = [smooth_image(seed, (64, 64)) for seed in (1, 2)]
    batch = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float() / 127.5 - 1
    out = AEDR(random_tiny, "highpass")(batch)
    files = [score_array(random_tiny, image) for image in images]
    assert out.signal.tolist() == pytest.approx([m.highpass_log_ratio for m in files], rel=1e-5)
    assert out.highpass_weight.tolist() == pytest.approx([m.highpass_weight for m in files])
    middle = float(out.signal.mean())
    records = [loss_record(0.02, 0.01, 0.9, highpass_log_ratio=middle + d, highpass_weight=0.5)
               for d in (-0.02, -0.01, 0.0, 0.01)]  # fmt: skip
    calibration = calibrate(records, "random-tiny", 0.05, "highpass")
    decided = AEDR(random_tiny, calibration=calibration)(batch)
    assert decided.belongs.tolist() == [s < calibration.threshold for s in decided.signal.tolist()]
    assert decided.belongs.any()
    monkeypatch.setattr("aedr.decide.statistics.MIN_HIGHPASS_WEIGHT", 1.01)  # all too flat
    assert not AEDR(random_tiny, calibration=calibration)(batch).belongs.any()
