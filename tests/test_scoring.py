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


def counting(random_tiny):
    from aedr.autoencoders.tiny import TinyAutoencoder

    class Counting(TinyAutoencoder):
        encoded = 0

        def encode(self, images, latent="mode", generator=None):
            type(self).encoded += images.shape[0]
            return super().encode(images, latent, generator)

    return Counting("random-tiny", random_tiny.module["encoder"], random_tiny.module["decoder"],
                    random_tiny.identity)  # fmt: skip


def test_store_answers_repeated_and_renamed_images_without_running_the_model(
    random_tiny, image_folder, tmp_path
):
    from aedr.store import ScoreStore

    model = counting(random_tiny)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        first = list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded == 6  # 3 images x 2 passes
        again = list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded == 6
        assert [r.as_dict() for r in again] == [r.as_dict() for r in first]
        (image_folder / "a.png").rename(tmp_path / "renamed.png")
        (renamed,) = Scorer([model], store=store).score_file(tmp_path / "renamed.png")
        assert type(model).encoded == 6 and renamed.path.endswith("renamed.png")
        assert renamed.signal == first[0].signal
        other = Scorer([model], ScoreSettings(crop=32), store=store).score_file(
            tmp_path / "renamed.png"
        )
        assert type(model).encoded == 8  # other settings: a miss
        assert other[0].signal != first[0].signal


def test_an_interrupted_run_resumes_where_it_stopped(random_tiny, image_folder, tmp_path):
    from aedr.store import ScoreStore

    model = counting(random_tiny)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        records = Scorer([model], store=store).score_paths([image_folder])
        next(records)  # the run is "killed" after its first image
        records.close()
        done = type(model).encoded
        list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded - done == 4  # only the two unscored images ran


def test_batches_give_the_scores_of_single_images(random_tiny, tmp_path):
    from PIL import Image

    for index in range(5):
        Image.fromarray(smooth_image(index, (48, 64))).save(tmp_path / f"{index}.png")
    Image.fromarray(smooth_image(9, (32, 32))).save(tmp_path / "odd-size.png")
    single = {r.path: r for r in Scorer([random_tiny]).score_paths([tmp_path])}
    batched = list(Scorer([random_tiny], batch_size=4).score_paths([tmp_path]))
    assert sorted(r.path for r in batched) == sorted(single)
    for record in batched:
        assert record.signal == pytest.approx(single[record.path].signal, rel=1e-4)


def test_records_of_one_image_come_together_in_model_order(random_tiny, image_folder):
    other = counting(random_tiny)
    other.name = "second"
    for records in Scorer([random_tiny, other], batch_size=2).score_images(
        sorted(image_folder.rglob("*.*"))
    ):
        assert [r.model for r in records] == ["random-tiny", "second"]
        assert len({r.path for r in records}) == 1


def test_crops_and_the_model_pixel_limit(random_tiny, tmp_path):
    from PIL import Image

    from aedr.images import grid_crops

    rgb = smooth_image(3, (100, 150))
    crops = grid_crops(rgb, 8, 40, 4)
    assert len(crops) == 4 and all(c.shape == (40, 40, 3) for c in crops)
    assert (crops[0] == rgb[:40, :40]).all() and (crops[-1] == rgb[56:96, 104:144]).all()
    path = tmp_path / "big.png"
    Image.fromarray(rgb).save(path)
    (refused,) = Scorer([random_tiny], max_model_pixels=2000).score_file(path)
    assert "--max-model-pixels 2000" in refused.error and "--crop" in refused.error
    (cropped,) = Scorer(
        [random_tiny], ScoreSettings(crop=40, crops=4), max_model_pixels=2000
    ).score_file(path)
    assert cropped.ok and math.isfinite(cropped.signal)


def test_methods_set_the_signal(random_tiny, image_folder):
    path = image_folder / "a.png"
    (aedr,) = Scorer([random_tiny]).score_file(path)
    (ratio,) = Scorer([random_tiny], ScoreSettings(method="ratio")).score_file(path)
    (single,) = Scorer([random_tiny], ScoreSettings(method="single-loss")).score_file(path)
    assert ratio.signal == pytest.approx(aedr.ratio) and single.signal == pytest.approx(aedr.loss1)
    (tracer,) = Scorer([random_tiny], ScoreSettings(method="latenttracer")).score_file(path)
    assert tracer.ok and tracer.loss2 is None and tracer.ratio is None
    assert tracer.signal == tracer.loss1 <= aedr.loss1 * (1 + 1e-5)
    with pytest.raises(ValueError, match="unknown method"):
        ScoreSettings(method="magic")


def test_scores_are_bitwise_identical_across_runs_on_cpu(random_tiny, image_folder):
    first = [r.as_dict() for r in Scorer([random_tiny]).score_paths([image_folder])]
    second = [r.as_dict() for r in Scorer([random_tiny], workers=1).score_paths([image_folder])]
    assert first == second  # exact equality of every float, not approximate
