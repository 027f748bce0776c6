import math

import pytest
from conftest import smooth_image

from aedr.scoring import SCORE_FIELDS, Scorer, ScoreSettings, score_array


def test_scores_every_image_for_every_model(random_tiny, image_folder):
    scorer = Scorer([random_tiny])
    records = list(scorer.score_paths([image_folder]))
    assert [r.path.rsplit("/", 1)[-1] for r in records] == ["a.png", "b.jpg", "c.png"]
    for record in records:
        assert record.ok, record.error
        assert set(record.as_dict()) == set(SCORE_FIELDS)
        assert record.ratio == pytest.approx(record.loss1 / record.loss2)
        assert record.signal == pytest.approx(record.ratio * record.homogeneity)
        assert (record.width, record.height) == (48, 64)


def test_bad_file_gets_an_error_record_and_others_are_scored(random_tiny, image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png")
    records = list(Scorer([random_tiny]).score_paths([image_folder, image_folder / "missing.png"]))
    errors = {r.path.rsplit("/", 1)[-1]: r.error for r in records if not r.ok}
    assert set(errors) == {"broken.png", "missing.png"}
    assert "not a recognised image" in errors["broken.png"]
    assert "file not found" in errors["missing.png"]
    assert sum(r.ok for r in records) == 3


def test_homogeneity_is_computed_once_per_image(random_tiny, image_folder, monkeypatch):
    import aedr.scoring

    calls = []
    original = aedr.scoring.glcm_homogeneity
    monkeypatch.setattr(
        aedr.scoring, "glcm_homogeneity", lambda *a: calls.append(1) or original(*a)
    )
    records = Scorer([random_tiny, random_tiny]).score_file(image_folder / "a.png")
    assert len(records) == 2 and len(calls) == 1


def test_too_small_image_is_an_error_not_a_nan(random_tiny):
    tiny = score_array(random_tiny, smooth_image(0, (4, 30)))
    assert "smaller than the autoencoder's size multiple" in tiny.error
    assert tiny.signal is None


def test_resize_and_sample_settings(random_tiny, tmp_path):
    from PIL import Image

    path = tmp_path / "odd.png"
    Image.fromarray(smooth_image(7, (60, 44))).save(path)
    cropped = Scorer([random_tiny]).score_file(path)[0]
    resized = Scorer([random_tiny], ScoreSettings(alignment="resize")).score_file(path)[0]
    assert cropped.ok and resized.ok and cropped.loss1 != resized.loss1
    sampled = Scorer([random_tiny], ScoreSettings(latent="sample", seed=1)).score_file(path)[0]
    assert math.isfinite(sampled.signal)
    assert ScoreSettings.from_dict(ScoreSettings(seed=4).as_dict()) == ScoreSettings(seed=4)
