"""The library workflows the CLI, the server and the demo call."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

from aedr.attributor import Attributor
from aedr.autoencoders.tiny import TinyAutoencoder
from aedr.decide.calibration import CalibrationError
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings
from aedr.measure.store import ScoreStore
from aedr.workflows import (
    calibrate_generator_free,
    calibrate_images,
    calibrate_measurements,
)


class Counting(TinyAutoencoder):
    """A tiny autoencoder that counts the images it encodes."""

    encoded = 0

    def encode(self, images, latent="mode", generator=None):
        type(self).encoded += images.shape[0]
        return super().encode(images, latent, generator)


def copy_of(random_tiny):
    """A counting autoencoder sharing ``random_tiny``'s modules (never change their dtype)."""
    return Counting("random-tiny", random_tiny.module["encoder"], random_tiny.module["decoder"],
               random_tiny.identity)  # fmt: skip


def smooth_folder(folder, shape, count: int = 6):
    """``folder`` holding ``count`` smooth PNG images of ``shape`` (rows, columns)."""
    folder.mkdir()
    for index in range(count):
        Image.fromarray(smooth_image(index, shape)).save(folder / f"{index}.png")
    return folder


@pytest.fixture
def own_images(tmp_path):
    return smooth_folder(tmp_path / "own", (48, 64))


def test_every_statistic_reads_one_measurement_per_image(random_tiny, own_images, tmp_path):
    model = copy_of(random_tiny)
    with ScoreStore(tmp_path / "s.sqlite") as store:
        fits = {
            statistic: calibrate_images(
                Scorer([model], store=store), [own_images], statistic, default_negatives=False
            )
            for statistic in ("aedr", "ratio", "fitted")
        }
    # six images and their enlargements x1.5 and x2, two encoder passes each: once for all three
    assert Counting.encoded == (6 + 2 * 6) * 2
    assert {s: f.calibration.statistic for s, f in fits.items()} == {
        "aedr": "aedr", "ratio": "ratio", "fitted": "fitted",
    }  # fmt: skip
    assert fits["aedr"].records == fits["ratio"].records == fits["fitted"].records
    assert len({f.calibration.threshold for f in fits.values()}) == 3


def test_a_bf16_calibration_is_refused_by_an_fp32_run_naming_dtype(random_tiny, own_images):
    bf16 = TinyAutoencoder.random("random-tiny", 4, identity="random:0")  # its own weights copy
    bf16.module.load_state_dict(random_tiny.module.state_dict())
    bf16.to(dtype=torch.bfloat16)
    calibration = calibrate_images(
        Scorer([bf16]), [own_images], "aedr", default_negatives=False
    ).calibration
    assert calibration.provenance["dtype"] == "bf16"
    with pytest.raises(CalibrationError, match="dtype: 'bf16' vs 'fp32'"):
        Attributor([calibration], [random_tiny])
    Attributor([calibration], [bf16])  # the same precision applies


def test_calibrating_from_records_keeps_their_provenance(random_tiny, own_images):
    run = calibrate_images(Scorer([random_tiny]), [own_images], "aedr", default_negatives=False)
    again = calibrate_measurements(run.records, statistic="aedr")
    assert again.calibration.provenance == run.calibration.provenance
    assert again.calibration.threshold == run.calibration.threshold
    assert again.calibration.model == "random-tiny" and again.skipped == 0


def test_alpha_auto_and_failed_images(random_tiny, own_images, tmp_path):
    (own_images / "broken.png").write_bytes(b"not an image")
    negatives_folder = tmp_path / "negatives"
    negatives_folder.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    for index in range(4):
        noise = rng.integers(0, 255, (48, 64, 3), dtype="uint8")
        Image.fromarray(noise).save(negatives_folder / f"{index}.png")
    negatives = [m.as_dict() for m in Scorer([random_tiny]).score_paths([negatives_folder])]
    run = calibrate_images(Scorer([random_tiny]), [own_images], "aedr", "auto",
                           negatives=negatives, default_negatives=False)  # fmt: skip
    assert run.calibration.tuning["alpha"] == "auto" and run.calibration.n == 6
    assert [m.path.rsplit("/", 1)[-1] for m in run.failed] == ["broken.png"]
    with pytest.raises(CalibrationError, match="alpha auto needs negatives"):
        calibrate_images(
            Scorer([random_tiny]), [own_images], "aedr", "auto", default_negatives=False
        )
    with pytest.raises(CalibrationError, match="for one model"):
        calibrate_images(Scorer([random_tiny, random_tiny]), [own_images])


def test_generator_free_calibration_loads_the_model_once(random_tiny, tmp_path):
    from aedr.autoencoders.loading import ModelHandle

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        Image.fromarray(smooth_image(index, (256, 256))).save(photos / f"{index}.png")
    loads = []

    class Handle(ModelHandle):
        def __init__(self):  # a handle whose load is counted (the weights: random_tiny's)
            self.name, self.group, self.identity = "random-tiny", "random-tiny", "random:0"
            self.dtype_name, self.device_kind = "fp32", "cpu"

        def load(self):
            loads.append(1)
            return random_tiny

    run = calibrate_generator_free(
        Scorer([Handle()]),
        photos,
        8,
        "aedr",
        save_to=tmp_path / "made",
        default_negatives=False,
        enlargements=(),
    )
    assert loads == [1] and run.calibration.n == 8 and len(run.images) == 8
    assert (
        "generator-free: 8 decoder-made images from 3 photos"
        in (run.calibration.tuning["belonging_images"])
    )


def test_calibrations_of_every_pixel_carry_thresholds_for_smaller_images_measured_once(
    random_tiny, tmp_path
):
    folder = smooth_folder(tmp_path / "own", (128, 128))
    model = copy_of(random_tiny)
    every = ScoreSettings(border=0)  # size thresholds make up for the edges measured
    Counting.encoded = 0
    with ScoreStore(tmp_path / "s.sqlite") as store:
        runs = [
            calibrate_images(
                Scorer([model], every, store=store),
                [folder],
                s,
                default_negatives=False,
                enlargements=(),
            )
            for s in ("ratio", "aedr")
        ]
    assert Counting.encoded == (6 + 6) * 2  # each image and its crop once, for both statistics
    calibration = runs[0].calibration
    assert calibration.sizes["side"] == 128 and list(calibration.sizes["crops"]) == ["64"]
    assert calibration.sizes["crops"]["64"]["n"] == 6
    bare = calibrate_images(Scorer([model], every), [folder], "ratio", default_negatives=False,
                            size_thresholds=False, enlargements=()).calibration  # fmt: skip
    assert not bare.sizes and bare.threshold == calibration.threshold
    Counting.encoded = 0  # with the default border the full-size thresholds hold for crops
    bordered = calibrate_images(
        Scorer([model]), [folder], "ratio", default_negatives=False, enlargements=()
    )
    assert not bordered.calibration.sizes and Counting.encoded == 6 * 2

    crop = tmp_path / "crop.png"
    Image.fromarray(smooth_image(9, (128, 128))[32:96, 32:96]).save(crop)
    whole = tmp_path / "whole.png"
    Image.fromarray(smooth_image(9, (128, 128))).save(whole)
    attributor = Attributor([calibration], [model])
    small, large = attributor.attribute_file(crop), attributor.attribute_file(whole)
    assert small.decisions[0].threshold_side == 64
    assert small.decisions[0].threshold == calibration.at_size(64).threshold
    assert large.decisions[0].threshold_side is None
    assert large.decisions[0].threshold == calibration.threshold
    assert small.rows()[0]["threshold_side"] == 64


def test_jpeg_thresholds_read_ac_below_90_and_measure_each_image_once_per_quality(
    random_tiny, tmp_path, monkeypatch
):
    """JPEG thresholds at 95, 85 and 70 (``ac`` below 90 for a highpass calibration), on up to
    ``LADDER_IMAGES`` of the images; a JPEG file is decided at its nearest quality's."""
    monkeypatch.setattr("aedr.workflows.LADDER_IMAGES", 4)  # of the 6
    folder = smooth_folder(tmp_path / "own", (64, 64))
    model = copy_of(random_tiny)
    Counting.encoded = 0
    with ScoreStore(tmp_path / "s.sqlite") as store:
        runs = [
            calibrate_images(
                Scorer([model], store=store), [folder], s, default_negatives=False,
                jpeg_qualities=(95, 85, 70), enlargements=(),
            )
            for s in ("highpass", "ratio")
        ]  # fmt: skip
    assert Counting.encoded == (6 + 3 * 4) * 2  # each image once, 4 once more per quality
    calibration, ratio = (run.calibration for run in runs)
    assert calibration.jpeg_qualities == ratio.jpeg_qualities == (70, 85, 95)
    assert {q: e.get("statistic", "highpass") for q, e in calibration.jpeg.items()} == {
        "95": "highpass", "85": "ac", "70": "ac",
    }  # fmt: skip
    assert all("statistic" not in e for e in ratio.jpeg.values())  # ac only replaces highpass

    jpeg = tmp_path / "test.jpg"
    Image.fromarray(smooth_image(9, (64, 64))).save(jpeg, quality=75)
    png = tmp_path / "test.png"
    Image.fromarray(smooth_image(9, (64, 64))).save(png)
    attributor = Attributor([calibration], [model])
    (row,) = attributor.attribute_file(jpeg).rows()
    at_70 = calibration.at_jpeg_quality(70)
    assert (row["threshold_quality"], row["statistic"], row["threshold"]) == (
        70, "ac", at_70.threshold,
    )  # fmt: skip
    (row,) = attributor.attribute_file(png).rows()
    assert (row["threshold_quality"], row["threshold"]) == (None, calibration.threshold)


def enlarged_file(path, seed: int, factor: float, side: int = 64):
    """A smooth image of ``side`` px enlarged by ``factor`` (bicubic), saved as PNG ``path``."""
    size = round(side * factor)
    image = Image.fromarray(smooth_image(seed, (side, side)))
    image.resize((size, size), Image.Resampling.BICUBIC).save(path)
    return path


def test_enlargement_thresholds_measure_each_enlarged_image_once_and_decide_enlarged_images(
    random_tiny, tmp_path
):
    """The plain calibration fits thresholds for images enlarged x1.5 and x2, each enlarged
    image measured once; attribution decides an image found enlarged at the nearest factor's,
    and says so in its row and caution."""
    folder = smooth_folder(tmp_path / "own", (64, 64))
    model = copy_of(random_tiny)
    Counting.encoded = 0
    with ScoreStore(tmp_path / "s.sqlite") as store:
        runs = [
            calibrate_images(Scorer([model], store=store), [folder], s, default_negatives=False)
            for s in ("highpass", "ratio")
        ]
    assert Counting.encoded == (6 + 2 * 6) * 2  # each image once, and once more per factor
    calibration = runs[0].calibration
    assert calibration.enlargement_factors == runs[1].calibration.enlargement_factors == (1.5, 2)
    assert calibration.enlargements["1.5"]["n"] == 6  # every enlargement found and undone

    attributor = Attributor([calibration], [model])
    result = attributor.attribute_file(enlarged_file(tmp_path / "big.png", 9, 1.4))
    (row,) = result.rows()
    assert row["threshold_enlargement"] == 1.5
    assert row["threshold"] == calibration.at_enlargement(1.5).threshold != calibration.threshold
    assert "fitted on the calibration images enlarged x1.5" in result.caution
    (row,) = attributor.attribute_file(folder / "0.png").rows()
    assert (row["threshold_enlargement"], row["threshold"]) == (None, calibration.threshold)

    older = Attributor([replace(calibration, enlargements={})], [model])
    caution = older.attribute_file(tmp_path / "big.png").caution
    assert "the calibrations have no thresholds for enlarged images" in caution

    plain = Scorer([model], ScoreSettings(enlargement="off"))
    assert not calibrate_images(plain, [folder], default_negatives=False).calibration.enlargements
    bare = calibrate_images(Scorer([model]), [folder], default_negatives=False, enlargements=())
    assert not bare.calibration.enlargements
    with pytest.raises(CalibrationError, match="need a scorer that looks for enlargements"):
        calibrate_images(plain, [folder], default_negatives=False, enlargements=(1.5,))


def test_the_plain_calibration_fits_the_chain_and_decides_a_resized_jpeg_at_it(
    random_tiny, tmp_path
):
    """With thresholds for JPEG files and enlargements, the calibration fits them for their
    chain (x1.5, then JPEG 85) by default, each copy measured once; a JPEG found enlarged is
    decided at the chain's thresholds, and its row and caution say so. Noise images: a JPEG's
    blocks hide the enlargement of smooth ones (``aedr.measure.resampling``)."""
    folder = tmp_path / "own"
    folder.mkdir()
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(7)]
    for index, rgb in enumerate(noise[:6]):
        Image.fromarray(rgb).save(folder / f"{index}.png")
    model = copy_of(random_tiny)
    Counting.encoded = 0
    run = calibrate_images(Scorer([model]), [folder], "ratio", default_negatives=False,
                           jpeg_qualities=(85,), enlargements=(1.5,))  # fmt: skip
    assert Counting.encoded == 2 * (6 + 3 * 6)  # each image, then once per ladder step
    calibration = run.calibration
    assert calibration.chain_steps == ((1.5, 85),)
    chain = calibration.at_chain(1.5, 85)
    assert chain.n >= 2 and chain.threshold not in (calibration.threshold,
                                                     calibration.at_jpeg_quality(85).threshold)  # fmt: skip

    resized = tmp_path / "resized.jpg"
    enlarged = Image.fromarray(noise[6]).resize((96, 96), Image.Resampling.BICUBIC)
    enlarged.save(resized, quality=85)
    attributor = Attributor([calibration], [model])
    result = attributor.attribute_file(resized)
    (row,) = result.rows()
    assert (row["threshold_enlargement"], row["threshold_quality"]) == (1.5, 85)
    assert row["threshold"] == chain.threshold
    assert "enlarged x1.5, then re-encoded near its quality (85)" in result.caution
    older = Attributor([replace(calibration, chains={}, aedr_version="0.18.0")], [model])
    result = older.attribute_file(resized)
    (row,) = result.rows()
    assert (row["threshold_enlargement"], row["threshold_quality"]) == (None, 85)
    assert "calibrated before aedr 0.19 (random-tiny): no thresholds for JPEG files found" in (
        result.caution
    )
    none = calibrate_images(Scorer([model]), [folder], "ratio", default_negatives=False,
                            jpeg_qualities=(85,), enlargements=(1.5,), chains=())  # fmt: skip
    assert not none.calibration.chains
    with pytest.raises(CalibrationError, match="need a scorer that looks for enlargements"):
        calibrate_images(Scorer([model]), [folder], default_negatives=False, jpeg_qualities=(85,),
                         enlargements=(), chains=((1.5, 85),))  # fmt: skip


def test_an_own_image_found_enlarged_is_left_out_of_the_clean_threshold(random_tiny, tmp_path):
    """It would be decided at an enlargement's thresholds; measured undone it stretched the
    clean one (a built taef2 image falsely found enlarged x2 moved it 0.787 -> 0.861)."""
    folder = smooth_folder(tmp_path / "own", (64, 64))
    enlarged_file(folder / "big.png", 9, 1.5)
    with_ladder = calibrate_images(Scorer([random_tiny]), [folder], default_negatives=False,
                                   enlargements=(1.5,))  # fmt: skip
    calibration = with_ladder.calibration
    assert calibration.n == 6 and calibration.tuning["enlargement_found_left_out"] == 1
    assert len(with_ladder.records) == 7  # measured and reported all the same
    assert calibration.enlargements["1.5"]["n"] == 7  # the ladder enlarges every image
    without = calibrate_images(Scorer([random_tiny]), [folder], default_negatives=False,
                               enlargements=())  # fmt: skip
    assert (
        without.calibration.n == 7
        and "enlargement_found_left_out" not in without.calibration.tuning
    )


def test_the_ladder_caps_each_factor_on_each_filter_s_negatives(random_tiny, tmp_path, monkeypatch):
    """The default negatives reach the fit grouped by the filter that enlarged them (pooled, one
    filter's negatives make room for the other's: docs/results/robustness.md)."""
    import aedr.workflows

    fit, seen = aedr.workflows.fit_enlargement_thresholds, []

    def spy(calibration, records, negatives=None, sources=()):
        seen.append({f: {name: len(group) for name, group in groups.items()}
                     for f, groups in negatives.items()})  # fmt: skip
        return fit(calibration, records, negatives, sources)

    monkeypatch.setattr(aedr.workflows, "fit_enlargement_thresholds", spy)
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)  # 16 of the 64: faster
    folder = smooth_folder(tmp_path / "own", (64, 64))
    run = calibrate_images(Scorer([random_tiny]), [folder], "highpass", enlargements=(1.5,))
    assert seen == [{1.5: {"bicubic": 8, "bilinear": 8}}]
    assert run.calibration.enlargements["1.5"]["negatives"]["sources"][0].startswith("default")


def test_the_plain_calibration_fits_thresholds_for_grey_images_and_attribution_uses_them(
    random_tiny, tmp_path, monkeypatch
):
    """With the default negatives, its own images and the negatives are made grey and measured
    once each; a grey file is decided at the grey threshold and says so, a colour one is not."""
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)  # 16 of the 64: faster
    folder = smooth_folder(tmp_path / "own", (64, 64))
    model = copy_of(random_tiny)
    Counting.encoded = 0
    run = calibrate_images(Scorer([model]), [folder], "highpass", enlargements=(),
                           jpeg_qualities=())  # fmt: skip
    assert Counting.encoded == 2 * 2 * (6 + 16)  # own and negatives, then both made grey: 2 passes
    calibration = run.calibration
    assert calibration.grey["n"] == 6 and calibration.grey["negatives"]["n"] == 16
    assert calibration.grey["negatives"]["sources"][0].endswith("made grey")
    assert calibration.at_grey(True).false_acceptance <= calibration.alpha

    grey = tmp_path / "grey.png"
    Image.open(folder / "0.png").convert("L").save(grey)
    attributor = Attributor([calibration], [model])
    result = attributor.attribute_file(grey)
    (row,) = result.rows()
    assert row["threshold_grey"] is True and result.reliability == "tentative"
    assert row["threshold"] == calibration.at_grey(True).threshold
    assert "fitted on the calibration images made grey" in result.caution
    (row,) = attributor.attribute_file(folder / "0.png").rows()
    assert (row["threshold_grey"], row["threshold"]) == (False, calibration.threshold)

    bare = calibrate_images(Scorer([model]), [folder], default_negatives=False, enlargements=())
    assert not bare.calibration.grey and not bare.calibration.jpeg  # nothing to cap them on
    resized = calibrate_images(Scorer([model], ScoreSettings(resized_by=1.5)), [folder],
                               enlargements=())  # fmt: skip
    assert not resized.calibration.grey and not resized.calibration.jpeg  # the chain: opt-in


def test_the_enlargement_ladder_enlarges_with_bicubic_and_bilinear_in_turn(random_tiny, tmp_path):
    from aedr.workflows import _enlarged_copies

    path = tmp_path / "a.png"
    image = Image.fromarray(smooth_image(3, (64, 64)))
    image.save(path)
    copies = _enlarged_copies(Scorer([random_tiny]), [path, path], tmp_path / "out", 1.5, False)
    assert list(copies) == ["bicubic", "bilinear"]  # by filter: each caps a threshold
    filters = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR)
    for (copy,), resample in zip(copies.values(), filters, strict=True):
        expected = np.asarray(image.resize((96, 96), resample))
        assert np.array_equal(np.asarray(Image.open(copy)), expected)


def test_the_workflows_doctests_hold():
    import doctest

    import aedr.workflows

    failed, tried = doctest.testmod(aedr.workflows)
    assert tried > 0 and failed == 0
