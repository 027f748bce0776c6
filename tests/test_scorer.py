import math

import pytest
from conftest import smooth_image
from PIL import Image

from aedr.measure.provenance import Provenance
from aedr.measure.record import MEASUREMENT_FIELDS, Measurement
from aedr.measure.scorer import Scorer, score_array, store_key
from aedr.measure.settings import ScoreSettings, SettingsError


def test_measures_every_image_for_every_model(random_tiny, image_folder):
    scorer = Scorer([random_tiny])
    records = list(scorer.score_paths([image_folder]))
    assert [r.path.rsplit("/", 1)[-1] for r in records] == ["a.png", "b.jpg", "c.png"]
    for record in records:
        assert record.ok, record.error
        assert set(record.as_dict()) == set(MEASUREMENT_FIELDS)
        assert record.ratio == pytest.approx(record.loss1 / record.loss2)
        assert (record.width, record.height) == (48, 64) and len(record.content_sha256) == 64
        assert record.provenance == Provenance(
            "random:0", ScoreSettings(robust="auto"), aedr_version=record.provenance.aedr_version
        )  # the default: auto where it applies
    assert Measurement.from_dict(records[0].as_dict()) == records[0]


def test_bad_file_gets_an_error_record_and_others_are_scored(random_tiny, image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png")
    records = list(Scorer([random_tiny]).score_paths([image_folder, image_folder / "missing.png"]))
    errors = {r.path.rsplit("/", 1)[-1]: r.error for r in records if not r.ok}
    assert set(errors) == {"broken.png", "missing.png"}
    assert "not a recognised image" in errors["broken.png"]
    assert "file not found" in errors["missing.png"]
    assert sum(r.ok for r in records) == 3


def test_homogeneity_is_computed_once_per_image(random_tiny, image_folder, monkeypatch):
    import aedr.measure.scorer

    calls = []
    original = aedr.measure.scorer.glcm_homogeneity
    monkeypatch.setattr(
        aedr.measure.scorer, "glcm_homogeneity", lambda *a: calls.append(1) or original(*a)
    )
    records = Scorer([random_tiny, random_tiny]).score_file(image_folder / "a.png")
    assert len(records) == 2 and len(calls) == 1


def test_too_small_image_is_an_error_not_a_nan(random_tiny):
    tiny = score_array(random_tiny, smooth_image(0, (4, 30)))
    assert "smaller than the autoencoder's size multiple" in tiny.error
    assert tiny.loss1 is None and tiny.ratio is None


def test_alignment_changes_the_pixels_measured(random_tiny, tmp_path):
    path = tmp_path / "odd.png"
    Image.fromarray(smooth_image(7, (60, 44))).save(path)
    (cropped,) = Scorer([random_tiny]).score_file(path)
    (resized,) = Scorer([random_tiny], ScoreSettings(alignment="resize")).score_file(path)
    assert cropped.loss1 != resized.loss1
    cropped_values, resized_values = cropped.provenance.as_dict(), resized.provenance.as_dict()
    assert (cropped_values["alignment"], resized_values["alignment"]) == ("crop", "resize")
    assert resized_values["resize_filter"] == "bilinear" and cropped_values["resize_filter"] is None


def test_sampled_latents_are_seeded_and_recorded(small_kl, image_folder):
    path = image_folder / "a.png"

    def measure(settings):
        return Scorer([small_kl], settings).score_file(path)[0]

    mode, again = measure(ScoreSettings()), measure(ScoreSettings(seed=5))
    assert mode.loss1 == again.loss1 and mode.provenance == again.provenance  # mode ignores seed
    first, same = (
        measure(ScoreSettings(latent="sample", seed=1)),
        measure(ScoreSettings(latent="sample", seed=1)),
    )
    other = measure(ScoreSettings(latent="sample", seed=2))
    assert first.loss1 == same.loss1 and first.loss1 != other.loss1 != mode.loss1
    first_values, mode_values = first.provenance.as_dict(), mode.provenance.as_dict()
    assert (first_values["latent"], first_values["seed"], mode_values["seed"]) == (
        "sample",
        1,
        None,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"crop": -5}, "crop must be a whole number of at least 1"),
        ({"crops": 0}, "crops must be a whole number of at least 1"),
        ({"latent": "median"}, "latent must be one of"),
        ({"measurement": "magic"}, "measurement must be one of"),
        ({"alignment": "stretch"}, "alignment must be one of"),
        ({"inversion_resize": True}, "inversion_resize applies only to the inversion measurement"),
        ({"resized_by": 1.5, "robust": "off"}, "resized_by applies only to robust measurement"),
    ],
)
def test_settings_that_cannot_run_are_refused(settings, message):
    with pytest.raises(SettingsError, match=message):
        ScoreSettings(**settings)


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
    from aedr.measure.store import ScoreStore

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
        model.name, model.group = "same-weights", "another-name"  # e.g. named by path this time
        (named,) = Scorer([model], store=store).score_file(tmp_path / "renamed.png")
        assert type(model).encoded == 6 and (named.model, named.group) == (model.name, model.group)
        assert renamed.loss1 == first[0].loss1
        other = Scorer([model], ScoreSettings(crop=32), store=store).score_file(
            tmp_path / "renamed.png"
        )
        assert type(model).encoded == 8  # other settings: a miss
        assert other[0].loss1 != first[0].loss1


@pytest.mark.parametrize("missing", ["highpass_log_ratio", "highpass_weight", "ac_log_ratio"])
def test_a_stored_record_without_the_newer_numbers_is_measured_again(
    random_tiny, image_folder, tmp_path, missing
):
    """Stores written before ``highpass_log_ratio``, ``highpass_weight`` or ``ac_log_ratio``
    existed hold records a statistic cannot fully read: they are misses, measured again and
    replaced."""
    from aedr.measure.store import ScoreStore

    model, path = counting(random_tiny), sorted(image_folder.iterdir())[0]
    with ScoreStore(tmp_path / "s.sqlite") as store:
        (first,) = Scorer([model], store=store).score_file(path)
        assert first.highpass_log_ratio is not None and type(model).encoded == 2
        assert 0.0 <= first.highpass_weight <= 1.0 and math.isfinite(first.ac_log_ratio)
        key = (first.content_sha256, store_key(first.provenance))
        old = {k: v for k, v in store.get(*key).items() if k != missing}
        store.put(*key, old)
        (again,) = Scorer([model], store=store).score_file(path)
        assert type(model).encoded == 4 and again.as_dict() == first.as_dict()
        assert store.get(*key)[missing] == getattr(first, missing)
        Scorer([model], store=store).score_file(path)
        assert type(model).encoded == 4  # replaced: a hit again


def test_a_stored_record_from_before_grey_is_answered_with_the_grey_read_from_the_pixels(
    random_tiny, tmp_path
):
    """``grey`` is a property of the pixels, not of a pass: a record stored without it (0.14)
    is completed from a decode of the file, and the autoencoder is not run again."""
    from PIL import Image

    from aedr.measure.store import ScoreStore

    model = counting(random_tiny)
    colour, grey = tmp_path / "colour.png", tmp_path / "grey.png"
    Image.fromarray(smooth_image(1, (64, 64))).save(colour)
    Image.open(colour).convert("L").save(grey)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        first = list(Scorer([model], store=store).score_paths([colour, grey]))
        assert [m.grey for m in first] == [False, True] and type(model).encoded == 4
        for measured in first:
            key = (measured.content_sha256, store_key(measured.provenance))
            store.put(*key, {k: v for k, v in store.get(*key).items() if k != "grey"})
        again = list(Scorer([model], store=store).score_paths([colour, grey]))
        assert [m.grey for m in again] == [False, True] and type(model).encoded == 4
        assert [m.as_dict() for m in again] == [m.as_dict() for m in first]


def test_store_never_serves_a_measurement_made_another_way(random_tiny, tmp_path):
    """bf16 then fp32, mode then sample, crop then resize on one store: each equals a run
    without the store."""
    import torch

    from aedr.autoencoders.tiny import TinyAutoencoder
    from aedr.measure.store import ScoreStore

    path = tmp_path / "off-grid.png"  # 60 x 44: cropping and resizing see different pixels
    Image.fromarray(smooth_image(7, (60, 44))).save(path)
    bf16 = TinyAutoencoder.random("random-tiny", 4, identity="random:0")
    bf16.module.load_state_dict(random_tiny.module.state_dict())
    bf16.to(dtype=torch.bfloat16)
    runs = [
        (bf16, ScoreSettings()), (random_tiny, ScoreSettings()),
        (random_tiny, ScoreSettings(alignment="resize")),
    ]  # fmt: skip
    with ScoreStore(tmp_path / "s.sqlite") as store:
        stored = [Scorer([m], s, store=store).score_file(path)[0] for m, s in runs]
    fresh = [Scorer([m], s).score_file(path)[0] for m, s in runs]
    assert [r.as_dict() for r in stored] == [r.as_dict() for r in fresh]
    assert stored[0].provenance.dtype == "bf16" and stored[1].provenance.dtype == "fp32"
    assert len({r.loss1 for r in stored}) == 3


def test_an_interrupted_run_resumes_where_it_stopped(random_tiny, image_folder, tmp_path):
    from aedr.measure.store import ScoreStore

    model = counting(random_tiny)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        records = Scorer([model], store=store).score_paths([image_folder])
        next(records)  # the run is "killed" after its first image
        records.close()
        done = type(model).encoded
        list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded - done == 4  # only the two unscored images ran


def test_batches_give_the_measurements_of_single_images(random_tiny, tmp_path):
    for index in range(5):
        Image.fromarray(smooth_image(index, (48, 64))).save(tmp_path / f"{index}.png")
    Image.fromarray(smooth_image(9, (32, 32))).save(tmp_path / "odd-size.png")
    single = {r.path: r for r in Scorer([random_tiny]).score_paths([tmp_path])}
    batched = list(Scorer([random_tiny], batch_size=4).score_paths([tmp_path]))
    assert sorted(r.path for r in batched) == sorted(single)
    for record in batched:
        assert record.ratio == pytest.approx(single[record.path].ratio, rel=1e-4)


def test_records_of_one_image_come_together_in_model_order(random_tiny, image_folder):
    other = counting(random_tiny)
    other.name = "second"
    for records in Scorer([random_tiny, other], batch_size=2).score_images(
        sorted(image_folder.rglob("*.*"))
    ):
        assert [r.model for r in records] == ["random-tiny", "second"]
        assert len({r.path for r in records}) == 1


def test_crops_and_the_model_pixel_limit(random_tiny, tmp_path):
    from aedr.measure.images import grid_crops

    rgb = smooth_image(3, (100, 150))
    crops = grid_crops(rgb, 8, 40, 4)
    assert len(crops) == 4 and all(c.shape == (40, 40, 3) for c in crops)
    assert (crops[0] == rgb[:40, :40]).all() and (crops[-1] == rgb[56:96, 104:144]).all()
    path = tmp_path / "big.png"
    Image.fromarray(rgb).save(path)
    (refused,) = Scorer([random_tiny], max_model_pixels=2000).score_file(path)
    assert "model-pixel limit 2000" in refused.error and "crops" in refused.error
    (cropped,) = Scorer(
        [random_tiny], ScoreSettings(crop=40, crops=4), max_model_pixels=2000
    ).score_file(path)
    assert cropped.ok and (cropped.provenance.settings.crop, cropped.provenance.settings.crops) == (
        40,
        4,
    )


def test_inversion_is_its_own_measurement_kind(random_tiny, image_folder):
    path = image_folder / "a.png"
    (reconstruction,) = Scorer([random_tiny]).score_file(path)
    (inversion,) = Scorer([random_tiny], ScoreSettings(measurement="inversion")).score_file(path)
    assert inversion.ok and inversion.measurement == "inversion"
    assert inversion.loss1 is inversion.loss2 is inversion.ratio is None
    assert inversion.inversion_loss < reconstruction.loss1  # the optimiser improved on E(x)
    assert inversion.provenance.settings.measurement == "inversion"


def test_measurements_are_bitwise_identical_across_runs_on_cpu(random_tiny, image_folder):
    first = [r.as_dict() for r in Scorer([random_tiny]).score_paths([image_folder])]
    second = [r.as_dict() for r in Scorer([random_tiny], workers=1).score_paths([image_folder])]
    assert first == second  # exact equality of every float, not approximate


def test_a_release_that_changes_no_number_answers_from_the_same_store(
    random_tiny, image_folder, tmp_path, monkeypatch
):
    """The store keys on the measurement version: a new package version (a docs-only release)
    finds every measurement; a new measurement version measures again."""
    import aedr
    from aedr.measure import settings as settings_module
    from aedr.measure.store import ScoreStore

    model = counting(random_tiny)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        first = list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded == 6
        monkeypatch.setattr(aedr, "__version__", "99.0.0")
        again = list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded == 6  # answered from the store
        assert [r.loss1 for r in again] == [r.loss1 for r in first]
        monkeypatch.setattr(settings_module, "MEASUREMENT_VERSION", 99)
        list(Scorer([model], store=store).score_paths([image_folder]))
        assert type(model).encoded == 12  # numbers of another version: measured again
