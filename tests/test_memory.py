"""The memory budget: a pass's peak counted from the model's own operators, and checked."""

import numpy as np
import pytest
import torch

from aedr.measure import memory
from aedr.measure.memory import (
    HEADROOM,
    MemoryBudgetError,
    check_budget,
    peak_bytes_per_pixel,
)
from aedr.measure.scorer import Scorer


def test_the_count_is_per_pixel_whatever_the_probe_size(random_tiny):
    small, large = (peak_bytes_per_pixel(random_tiny, side) for side in (64, 128))
    assert small == pytest.approx(large, rel=0.02)
    # at least the decoder's widest activations at full size: 64 float32 channels, twice
    assert small >= 2 * 64 * 4


def test_the_count_sees_every_returned_tensor():
    with memory._PeakCount() as count:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 4000 more while both live
        del a
        c = b + 1  # b and c: 8000, not more than before
        view = c[:10]  # a view adds nothing
    assert count.peak == 8000 and view.numel() == 10


def test_a_pass_over_the_budget_is_refused_naming_it():
    with pytest.raises(MemoryBudgetError, match=r"4000x4000 pixels with taesd needs about 18\.2 "
                                                r"GiB, over the memory budget of 4 GiB"):  # fmt: skip
        check_budget("taesd", 816, 4000, 4000, 1, 4 * 2**30)
    needed = int(816 * 10**6 * HEADROOM)  # the count x the headroom
    check_budget("taesd", 816, 1000, 1000, 1, needed)
    with pytest.raises(MemoryBudgetError):
        check_budget("taesd", 816, 1000, 1000, 1, needed - 1)
    with pytest.raises(MemoryBudgetError):  # a batch of two needs twice as much
        check_budget("taesd", 816, 1000, 1000, 2, 2 * needed - 1)


def test_the_default_budget_is_a_share_of_the_memory_available(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 8 * 2**30)
    assert memory.default_budget("cpu") == 6 * 2**30
    monkeypatch.setattr(memory, "available_memory", lambda device: None)
    assert memory.default_budget("cpu") is None


def test_a_container_limit_caps_the_available_memory(tmp_path):
    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "memory.current").write_text("268435456\n")
    assert memory._cgroup_free(str(tmp_path)) == 3 * 2**28
    (tmp_path / "memory.max").write_text("max\n")
    assert memory._cgroup_free(str(tmp_path)) is None


def test_batches_shrink_to_what_the_budget_holds(random_tiny):
    per_pixel = peak_bytes_per_pixel(random_tiny)
    budget = int(per_pixel * 256 * 256 * HEADROOM * 2.5)  # two 256 px inputs, not three
    scorer = Scorer([random_tiny], batch_size=8, max_memory=budget)
    model = scorer.models[0]
    assert scorer._batch_limit(model, 256, 256) == 2
    assert scorer._batch_limit(model, 16, 16) == 8
    scorer.check_memory(model, 256, 256)
    with pytest.raises(MemoryBudgetError):
        scorer.check_memory(model, 512, 512)


def test_crops_are_budgeted_as_the_passes_they_are(random_tiny, tmp_path):
    """A budget that refuses a whole 256 px image lets its 64 px crops through."""
    from PIL import Image

    from aedr.measure.settings import ScoreSettings

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    budget = 20 * 2**20
    whole = Scorer([random_tiny], max_memory=budget).score_file(tmp_path / "a.png")[0]
    assert "over the memory budget of 20 MiB" in whole.error
    cropped = Scorer([random_tiny], ScoreSettings(crop=64, crops=4), max_memory=budget)
    record = cropped.score_file(tmp_path / "a.png")[0]
    assert not record.error and record.loss1 > 0
