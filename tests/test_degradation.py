"""Degradation-aware measurement: JPEG tables, the grid-phase search, a stated resize, and the
switch through the scorer, the attribution rows and the CLI."""

import json

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

from aedr.attributor import Attributor
from aedr.autoencoders.base import Autoencoder
from aedr.decide.attribution import caution_of
from aedr.decide.calibration import CalibrationError, calibrate, kde_threshold
from aedr.measure.degradation import (
    MAX_SEARCH_PHASES,
    QUANTISATION_FLOOR,
    REFINED_PHASES,
    SEARCH_BATCH,
    SEARCH_WINDOW,
    Degradation,
    describe,
    save_jpeg_copies,
    search_phase,
)
from aedr.measure.images import read_image, to_model_input
from aedr.measure.provenance import Provenance
from aedr.measure.scorer import Scorer, store_key
from aedr.measure.settings import ScoreSettings, SettingsError
from aedr.measure.store import ScoreStore
from aedr.workflows import calibrate_images


class BlockMean(Autoencoder):
    """Encodes 8 x 8 block means and decodes them as flat blocks, dimmed by 1%: its own outputs
    are reproduced (but for the dimming) on its grid and nowhere else, which makes the grid
    phase unambiguous."""

    name = identity = group = "block-mean"
    latent_channels, spatial_factor, size_multiple = 3, 8, 8

    def __init__(self):
        self._module = torch.nn.Linear(1, 1)

    def encode(self, images, latent="mode", generator=None, noise=None):
        return torch.nn.functional.avg_pool2d(images, 8)

    def decode(self, latents):
        return 0.99 * torch.nn.functional.interpolate(latents, scale_factor=8, mode="nearest")


def block_image(seed: int, size: int = 96) -> np.ndarray:
    """An image BlockMean made: flat 8 x 8 blocks of random colours."""
    blocks = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3), np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)


class Identity(BlockMean):
    name = identity = group = "identity"

    def encode(self, images, latent="mode", generator=None, noise=None):
        return images

    def decode(self, latents):
        return latents


def jpeg_file(path, rgb: np.ndarray, **options) -> None:
    Image.fromarray(rgb).save(path, "JPEG", **options)


def test_tables_are_read_from_colour_jpegs_only(tmp_path):
    jpeg_file(tmp_path / "a.jpg", smooth_image(0), quality=75)
    jpeg_file(tmp_path / "b.jpg", smooth_image(0), quality=90, subsampling=0)
    Image.fromarray(smooth_image(0)[..., 0]).save(tmp_path / "grey.jpg", quality=75)
    Image.fromarray(smooth_image(0)).save(tmp_path / "c.png")
    first, second = (read_image(tmp_path / n).jpeg for n in ("a.jpg", "b.jpg"))
    assert describe(Degradation(jpeg=first).as_record()) == "jpeg q=75 4:2:0"
    assert describe(Degradation(jpeg=second).as_record()) == "jpeg q=90 4:4:4"
    assert len(first.tables) == 2 and len(first.tables[0]) == 64
    assert read_image(tmp_path / "grey.jpg").jpeg is None
    assert read_image(tmp_path / "c.png").jpeg is None


def test_reencoding_with_the_file_tables_falls_on_the_file_blocks(tmp_path):
    """A decoded JPEG re-encoded with its own tables on its own 8 x 8 blocks barely changes; cut
    off its blocks, it changes much more: the observation must re-encode in the whole frame."""
    jpeg_file(tmp_path / "a.jpg", smooth_image(1, (96, 96)), quality=50)
    image = read_image(tmp_path / "a.jpg")
    observation = Degradation(jpeg=image.jpeg, phase=(3, 5)).observation(image.rgb, 8)
    reference = observation.reference
    in_frame = (observation.reencoded(reference) - reference).square().mean()
    off_blocks = (image.jpeg.reencode(reference) - reference).square().mean()
    assert observation.view.shape == (3, 88, 88) and reference.shape == (1, 3, 88, 88)
    assert 0 < in_frame < 0.5 * off_blocks


class CountingBlockMean(BlockMean):
    def __init__(self):
        super().__init__()
        self.batches = []

    def encode(self, images, latent="mode", generator=None, noise=None):
        self.batches.append(len(images))
        return super().encode(images)


def test_jpeg_files_alike_in_shape_share_a_batch_each_through_its_own_tables(tmp_path):
    """auto is the default, so a folder of JPEGs must keep the run's batch size: files of equal
    size are measured together, each re-encoded with its own tables, as each alone."""
    paths = [tmp_path / f"{quality}.jpg" for quality in (90, 70, 50)]
    for seed, path in enumerate(paths):
        jpeg_file(path, smooth_image(seed, (64, 64)), quality=int(path.stem))
    Image.fromarray(smooth_image(9, (64, 64))).save(tmp_path / "plain.png")
    paths.append(tmp_path / "plain.png")
    alone, together = CountingBlockMean(), CountingBlockMean()
    one = [r for (r,) in Scorer([alone], ScoreSettings(robust="auto")).score_images(paths)]
    many = [r for (r,) in Scorer([together], batch_size=4).score_images(paths)]
    assert alone.batches == [1] * 8 and sorted(together.batches) == [1, 1, 3, 3]
    assert [describe(r.degradation) for r in many] == [
        "jpeg q=90 4:2:0", "jpeg q=70 4:2:0", "jpeg q=50 4:2:0", "",
    ]  # fmt: skip
    for single, batched in zip(one, many, strict=True):
        for field in ("loss1", "loss2", "ac_log_ratio", "highpass_log_ratio"):
            assert getattr(batched, field) == pytest.approx(getattr(single, field), rel=1e-6)


def test_losses_are_floored_at_quantisation_noise(tmp_path):
    """An autoencoder that returns its input makes both re-encoded reconstructions identical:
    the loss2 of 0 is floored, so the measurement is a number, not an error."""
    jpeg_file(tmp_path / "a.jpg", smooth_image(2, (64, 64)), quality=60)
    record = Scorer([Identity()], ScoreSettings(robust="auto")).score_file(tmp_path / "a.jpg")[0]
    assert record.ok, record.error
    assert record.degradation == {"jpeg_quality": 60, "subsampling": "4:2:0"}
    assert record.loss2 == pytest.approx(QUANTISATION_FLOOR)
    assert record.loss1 > QUANTISATION_FLOOR  # JPEG is not idempotent: re-encoding moves pixels


def test_a_jpeg_reencodes_what_ac_and_the_losses_read_not_what_highpass_reads(tmp_path):
    """Through the file's tables the high-pass evidence compares mostly quantisation noise, so
    on a JPEG on the grid ``highpass`` reads what it reads without the correction; the losses
    and the AC energies are taken on the re-encoded reconstructions."""
    jpeg_file(tmp_path / "a.jpg", smooth_image(4, (96, 96)), quality=75)
    plain, robust = (
        Scorer([BlockMean()], ScoreSettings(robust=mode)).score_file(tmp_path / "a.jpg")[0]
        for mode in ("off", "auto")
    )
    assert describe(robust.degradation) == "jpeg q=75 4:2:0" and plain.ok and robust.ok
    for field in ("highpass_log_ratio", "highpass_weight"):
        assert getattr(robust, field) == pytest.approx(getattr(plain, field), rel=1e-9), field
    assert robust.ac_log_ratio != pytest.approx(plain.ac_log_ratio, rel=1e-3)
    assert robust.loss1 != pytest.approx(plain.loss1, rel=1e-3)


def test_the_search_finds_the_grid_phase_of_a_crop():
    made = block_image(0)
    assert search_phase(BlockMean(), made[3:, 6:]) == (5, 2)
    assert search_phase(BlockMean(), made) is None  # on its grid: nothing to undo


def test_the_search_compares_its_best_phases_again_on_a_larger_window():
    """Blocks at phase (5, 2) everywhere, overlaid at the centre by slightly stronger blocks at
    (1, 1): the first window, all centre, prefers (1, 1) with (5, 2) close behind; the larger
    window, mostly (5, 2)'s, picks it from the first window's best phases."""
    made = block_image(0, 256)[3:, 6:].astype(np.float64)
    other = block_image(1, 272)[7 : 7 + made.shape[0], 7 : 7 + made.shape[1]]
    centre = (slice(64, 184), slice(64, 184))
    made[centre] = 0.45 * made[centre] + 0.55 * other[centre]
    image = np.round(made).astype(np.uint8)
    assert search_phase(BlockMean(), image, refine_window=SEARCH_WINDOW) == (1, 1)
    assert search_phase(BlockMean(), image) == (5, 2)


def test_the_store_keys_the_refined_search_apart_and_library_keys_stay():
    """What 0.13-0.17 stored after a one-window search is not reused (it may be at another
    phase); provenances, which name the library's calibrations, are unchanged."""
    provenance = Provenance("weights:1", ScoreSettings())
    assert store_key(provenance) != f"{provenance.digest()}+enlargement"  # 0.13-0.17's key
    assert provenance.as_dict()["measurement_version"] == 1
    stated = Provenance("weights:1", ScoreSettings(resized_by=1.5))  # nothing searched
    assert store_key(stated) == stated.digest()


def test_the_search_leaves_out_the_border_the_decoder_pads():
    class Padded(BlockMean):
        """BlockMean whose output's outer 4 px are a checkerboard, as padding can shape them."""

        def decode(self, latents):
            decoded = super().decode(latents)
            rows, columns = decoded.shape[-2:]
            checker = (torch.arange(rows)[:, None] + torch.arange(columns)) % 2 * 2.0 - 1
            border = torch.ones(rows, columns, dtype=torch.bool)
            border[4:-4, 4:-4] = False
            return torch.where(border, checker, decoded)

    faint = 120 + block_image(0, 160) // 16  # blocks of low contrast: the border outweighs them
    cropped = faint[3:, 6:]
    assert search_phase(Padded(), cropped) == (5, 2)
    assert search_phase(Padded(), cropped, margin=0) != (5, 2)  # misled by the border


def test_a_large_spatial_factor_is_searched_on_a_capped_set_of_phases():
    class BlockMean32(BlockMean):
        spatial_factor = size_multiple = 32
        windows = 0

        def encode(self, images, latent="mode", generator=None, noise=None):
            BlockMean32.windows += images.shape[0]
            return torch.nn.functional.avg_pool2d(images, 32)

        def decode(self, latents):
            return 0.99 * torch.nn.functional.interpolate(latents, scale_factor=32, mode="nearest")

    blocks = np.random.default_rng(1).integers(0, 256, (6, 6, 3), np.uint8)
    made = np.repeat(np.repeat(blocks, 32, axis=0), 32, axis=1)
    assert search_phase(BlockMean32(), made[4:, 6:]) == (28, 26)  # even: on the searched phases
    # not 32 x 32 = 1,024; and the best few again on the larger window
    assert BlockMean32.windows == MAX_SEARCH_PHASES + REFINED_PHASES == 256 + 4


def test_a_cropped_image_is_measured_at_its_phase(tmp_path):
    Image.fromarray(block_image(1)[3:, 6:]).save(tmp_path / "cropped.png")
    Image.fromarray(block_image(2)).save(tmp_path / "clean.png")
    paths = [tmp_path / "clean.png", tmp_path / "cropped.png"]
    plain = [r[0] for r in Scorer([BlockMean()], ScoreSettings(robust="off")).score_images(paths)]
    robust = [r[0] for r in Scorer([BlockMean()], ScoreSettings(robust="auto")).score_images(paths)]
    assert robust[0].as_dict() == {
        **plain[0].as_dict(),
        "provenance": robust[0].provenance.as_dict(),
    }
    assert robust[1].degradation == {"grid_phase": [5, 2]}
    assert plain[1].ratio > 10 and robust[1].ratio < 1.1  # on its own grid it is the decoder's


def test_a_stated_resize_is_undone_and_redone(tmp_path):
    made = block_image(3, 64)
    Image.fromarray(made).resize((128, 128), Image.Resampling.BICUBIC).save(tmp_path / "up.png")
    settings = ScoreSettings(robust="auto", resized_by=2.0)
    observation = Degradation(resize=2.0).observation(read_image(tmp_path / "up.png").rgb, 8)
    assert observation.view.shape == (3, 64, 64) and observation.reference.shape[-2:] == (128, 128)
    robust = Scorer([BlockMean()], settings).score_file(tmp_path / "up.png")[0]
    plain = Scorer([BlockMean()], ScoreSettings(robust="off")).score_file(tmp_path / "up.png")[0]
    assert robust.degradation == {"resized_by": 2.0}
    assert robust.loss1 < 0.5 * plain.loss1


@pytest.mark.parametrize(
    "options, message",
    [({"robust": "off", "resized_by": 1.5}, "applies only to robust"),
     ({"alignment": "resize", "resized_by": 1.5}, "applies only to robust"),
     ({"robust": "auto", "resized_by": 1.0}, "not 1"),
     ({"robust": "auto", "alignment": "resize"}, "crop alignment"),
     ({"robust": "auto", "crop": 32}, "no --crop")],
)  # fmt: skip
def test_settings_that_cannot_be_corrected_are_refused(options, message):
    with pytest.raises(SettingsError, match=message):
        ScoreSettings(**options)


@pytest.mark.parametrize(
    "options, local_maps, expected",
    [({}, False, "auto"), ({"resized_by": 1.5}, False, "auto"), ({}, True, "off"),
     ({"alignment": "resize"}, False, "off"), ({"crop": 32}, False, "off"),
     ({"measurement": "inversion"}, False, "off"), ({"robust": "off"}, False, "off")],
)  # fmt: skip
def test_the_default_is_auto_where_it_applies(options, local_maps, expected):
    settings = ScoreSettings(**options)
    assert settings.robust is None or "robust" in options
    resolved = settings.resolved(local_maps)
    assert resolved.robust == expected
    assert settings.provenance("w").settings.robust == settings.resolved().robust


def test_the_settings_doctests_hold():
    import doctest

    import aedr.measure.settings

    failed, tried = doctest.testmod(aedr.measure.settings)
    assert failed == 0 and tried >= 4


def test_a_scorer_measures_resolved_settings(tmp_path):
    """By default a JPEG goes through its tables and a scorer keeping local maps measures off."""
    jpeg_file(tmp_path / "a.jpg", smooth_image(3, (64, 64)), quality=80)
    default = Scorer([BlockMean()])
    (record,) = default.score_file(tmp_path / "a.jpg")
    assert default.settings.robust == "auto" and record.provenance.settings.robust == "auto"
    assert describe(record.degradation) == "jpeg q=80 4:2:0"
    local = Scorer([BlockMean()], local_maps=True)
    (record,) = local.score_file(tmp_path / "a.jpg")
    assert local.settings.robust == "off" and record.degradation == {}
    with pytest.raises(SettingsError, match="local maps"):
        Scorer([BlockMean()], ScoreSettings(robust="auto"), local_maps=True)


def calibration_measured(model: Autoencoder, settings: ScoreSettings):
    provenance = settings.provenance(model.identity).as_dict()
    records = [{"model": model.name, "measurement": "reconstruction", "loss1": r * 1e-4,
                "loss2": 1e-4, "homogeneity": 0.5, "error": "", "provenance": provenance}
               for r in np.linspace(1.0, 1.6, 12)]  # fmt: skip
    return calibrate(records, model.name, 0.05, "ratio")


def test_an_attributor_measures_as_its_calibrations_and_local_maps_off():
    calibration = calibration_measured(BlockMean(), ScoreSettings())
    assert calibration.measurement_provenance.settings.robust == "auto"
    assert Attributor([calibration], [BlockMean()]).scorer.settings.robust == "auto"
    assert Attributor([calibration], [BlockMean()]).scorer.settings.estimates_enlargement()
    off = Attributor([calibration], [BlockMean()], enlargement="off")  # lenient: it applies
    assert not off.scorer.settings.estimates_enlargement()
    older = calibration_measured(Identity(), ScoreSettings(robust="off"))
    assert Attributor([older], [Identity()]).scorer.settings.robust == "off"
    for pair in ([calibration, older], [older, calibration]):  # mixed: the default, either order
        models = [BlockMean() if c is calibration else Identity() for c in pair]
        assert Attributor(pair, models).scorer.settings.robust == "auto"
    local = Attributor([calibration], [BlockMean()], local_maps=True)
    assert local.scorer.settings.robust == "off" and local.scorer.local_maps
    with pytest.raises(SettingsError, match="local maps"):
        Attributor([calibration], [BlockMean()], local_maps=True, robust="auto")


def test_corrections_are_kept_apart_in_the_store_but_not_by_calibrations():
    plain = Provenance("weights:1", ScoreSettings(robust="off"), aedr_version="1")
    assert "robust" not in plain.as_dict() and "resized_by" not in plain.as_dict()
    robust = Provenance("weights:1", ScoreSettings(robust="auto"), aedr_version="1")
    assert robust.digest() != plain.digest()  # the store keeps them apart
    assert plain.differences(robust) == []  # a calibration applies across the switch


def test_attribution_rows_carry_the_degradation(tmp_path):
    """A calibration measured without corrections applies to a cropped JPEG measured with them
    (no provenance refusal), and the row says what was undone."""
    calibration = calibration_measured(BlockMean(), ScoreSettings(robust="off"))
    made = np.round(0.99 * block_image(20).astype(float)).astype(np.uint8)
    jpeg_file(tmp_path / "test.jpg", made[3:, 6:], quality=90)
    attributor = Attributor([calibration], [BlockMean()], store=ScoreStore(tmp_path / "s.sqlite"),
                            robust="auto")  # fmt: skip
    (row,) = next(attributor.attribute_paths([tmp_path / "test.jpg"])).rows()
    assert row["degradation"] == "grid phase (5, 2) (estimated); jpeg q=90 4:2:0"
    assert row["caution"].startswith("tentative: 90x93")
    assert row["signal"] is not None and not row["error"]


def test_caution_names_the_correction():
    assert caution_of(96, 96, {"jpeg_quality": 75, "subsampling": "4:2:0"}) == ""
    assert caution_of(93, 96).startswith("unreliable")
    assert "grid phase (5, 2)" in caution_of(93, 96, {"grid_phase": [5, 2]})


def test_cli_flags(cli_main, tmp_path, model_file):
    jpeg_file(tmp_path / "a.jpg", smooth_image(3, (64, 64)), quality=80)
    out = tmp_path / "scores.jsonl"
    for flags, found, provenance in (((), {"jpeg_quality": 80, "subsampling": "4:2:0"}, "auto"),
                                     (("--robust", "off"), {}, None)):  # fmt: skip
        rc, err = cli_main("score", tmp_path / "a.jpg", "--model", model_file, *flags,
                           "--out", out, "--no-cache", "--overwrite")  # fmt: skip
        assert rc == 0, err
        (record,) = [json.loads(line) for line in out.read_text().splitlines()]
        assert record["degradation"] == found
        assert record["provenance"].get("robust") == provenance
    rc, err = cli_main("score", tmp_path / "a.jpg", "--model", model_file, "--resized-by", "2",
                       "--robust", "off", "--no-cache")  # fmt: skip
    assert rc == 2 and "applies only to robust" in err and "Traceback" not in err


@pytest.fixture
def cli_main(capsys, monkeypatch):
    from aedr.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:
            code = exit.code
        return code, capsys.readouterr().err

    return run


def test_model_input_of_an_observation_matches_the_crop():
    rgb = smooth_image(4, (70, 75))
    observation = Degradation(phase=(2, 1)).observation(rgb, 8)
    np.testing.assert_array_equal(observation.view, to_model_input(rgb[2:66, 1:73]))


def test_a_failing_search_is_an_error_record_and_the_run_goes_on(tmp_path):
    class Failing(BlockMean):
        def encode(self, images, latent="mode", generator=None, noise=None):
            if images.shape[0] == SEARCH_BATCH:  # the search's windows (images come one by one)
                raise RuntimeError("out of memory")
            return super().encode(images, latent, generator, noise)

    Image.fromarray(block_image(5)[3:, 6:]).save(tmp_path / "a.png")
    Image.fromarray(block_image(6)).save(tmp_path / "b.png")
    scorer = Scorer([Failing()], ScoreSettings(robust="auto"))
    first, second = (r[0] for r in scorer.score_images([tmp_path / "a.png", tmp_path / "b.png"]))
    assert first.error == "robust measurement failed: RuntimeError: out of memory"
    assert second.ok


def noisy_own_images(folder, seeds) -> list:
    """Images BlockMean made, with a little noise of varying strength: their signals spread."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        noisy = block_image(seed) + rng.normal(0, 0.5 + seed % 4 * 0.5, (96, 96, 3))
        paths.append(folder / f"own-{seed}.png")
        Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def test_jpeg_thresholds_are_fitted_on_reencoded_images_and_decide_jpeg_files(
    tmp_path, monkeypatch
):
    """Recompression moves a model's own signals; thresholds fitted on its calibration images
    re-encoded at the nearest quality accept what the clean threshold rejects, but no more of
    the re-encoded negatives than the clean calibration (this toy's photos score below its own
    JPEGs, so there the negatives hold the threshold down)."""
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)  # 16 of the 64: faster
    noisy_own_images(tmp_path / "own", range(10))
    scorer = Scorer([BlockMean()], ScoreSettings(robust="off"))
    calibration = calibrate_images(scorer, [tmp_path / "own"], "ratio",
                                   jpeg_qualities=(90, 60)).calibration  # fmt: skip
    assert calibration.jpeg_qualities == (60, 90)
    means = [np.mean(calibration.at_jpeg_quality(q).signals) for q in (None, 90, 60)]
    assert means[0] < means[1] < means[2]
    at_60 = calibration.at_jpeg_quality(60)
    # the 16 tiles' copies in colour only: a grey JPEG is decided at the grey thresholds
    assert at_60.n == 10 and 0 < at_60.negatives["n"] < 16 and "grey" not in at_60.negatives
    assert set(at_60.negatives["keys"]).isdisjoint(calibration.negatives["keys"])  # re-encoded
    assert at_60.false_acceptance <= calibration.false_acceptance_limit
    assert at_60.threshold < kde_threshold(at_60.signals, at_60.alpha)  # the negatives bind
    (png,) = noisy_own_images(tmp_path / "test", [50])
    Image.open(png).save(tmp_path / "test" / "own.jpg", quality=65)
    attributor = Attributor([calibration], [BlockMean()])
    jpeg = attributor.attribute_file(tmp_path / "test" / "own.jpg")
    (row,) = jpeg.rows()
    assert (row["threshold_quality"], row["threshold"]) == (60, at_60.threshold)
    assert "re-encoded at JPEG quality 60" in jpeg.false_attribution.sources[0]
    (row,) = attributor.attribute_file(png).rows()
    assert (row["threshold_quality"], row["threshold"]) == (None, calibration.threshold)
    free = calibrate_images(scorer, [tmp_path / "own"], "ratio", jpeg_qualities=(90, 60),
                            default_negatives=False).calibration  # fmt: skip
    (row,) = Attributor([free], [BlockMean()]).attribute_file(tmp_path / "test" / "own.jpg").rows()
    assert row["threshold"] == kde_threshold(free.at_jpeg_quality(60).signals, free.alpha)
    assert row["belongs"] and row["signal"] > free.threshold  # clean would reject it
    # measured otherwise, a JPEG is decided at the clean threshold, as without JPEG thresholds
    (row,) = (
        Attributor([calibration], [BlockMean()], robust="auto")
        .attribute_file(tmp_path / "test" / "own.jpg")
        .rows()
    )
    assert (row["threshold_quality"], row["threshold"]) == (None, calibration.threshold)
    with pytest.raises(CalibrationError, match="JPEG qualities are distinct"):
        calibrate_images(scorer, [tmp_path / "own"], "ratio", jpeg_qualities=(90, 90))


def test_jpeg_copies_carry_the_quality_asked_for(tmp_path):
    (png,) = noisy_own_images(tmp_path, [1])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    copies = save_jpeg_copies([png, tmp_path / "broken.png"], tmp_path, 70)
    assert len(copies) == 1 and read_image(copies[0]).jpeg.quality == 70
    with pytest.raises(ValueError, match="from 1 to 100"):
        save_jpeg_copies([png], tmp_path, 0)


def test_cli_calibrates_jpeg_thresholds(cli_main, tmp_path, model_file, image_folder):
    out = tmp_path / "c.json"
    rc, err = cli_main("calibrate", "--model", model_file, image_folder, "--out", out,
                       "--jpeg-qualities", "80", "--no-default-negatives")  # fmt: skip
    assert rc == 0, err
    assert "JPEG q=80: ac threshold" in err  # below 90 the default reads ac
    saved = json.loads(out.read_text())
    assert saved["statistic"] == "highpass" and saved["jpeg"]["80"]["statistic"] == "ac"
    assert saved["jpeg"]["80"]["n"] == 3
    rc, err = cli_main("calibrate", "--model", model_file, image_folder, "--out", out,
                       "--overwrite", "--jpeg-qualities", "80", "--jpeg-statistic", "highpass",
                       "--no-default-negatives")  # fmt: skip
    assert rc == 0 and "JPEG q=80: highpass threshold" in err, err
    assert "statistic" not in json.loads(out.read_text())["jpeg"]["80"]
    rc, err = cli_main("calibrate", "--model", model_file, image_folder, "--out", out,
                       "--overwrite", "--jpeg-statistic", "ac", "--jpeg-qualities", "none")  # fmt: skip
    assert rc == 2 and "--jpeg-qualities none fits none" in err
    rc, err = cli_main("calibrate", "--model", model_file, image_folder, "--out", out,
                       "--overwrite", "--no-default-negatives")  # fmt: skip
    assert rc == 0 and "jpeg" not in json.loads(out.read_text()), err  # uncapped: none by default
    rc, err = cli_main("calibrate", "--model", model_file, image_folder, "--out", out,
                       "--overwrite", "--jpeg-qualities", "0,80")  # fmt: skip
    assert rc == 2 and "distinct JPEG qualities from 1 to 100" in err
    rc, err = cli_main("calibrate", "--scores", out, "--out", tmp_path / "d.json",
                       "--jpeg-qualities", "80")  # fmt: skip
    assert rc == 2 and "--jpeg-qualities re-encodes images" in err


def test_cli_calibrates_enlargement_thresholds_by_default(cli_main, tmp_path, model_file):
    own = tmp_path / "own"
    own.mkdir()
    for index in range(4):
        Image.fromarray(smooth_image(index, (64, 64))).save(own / f"{index}.png")
    out = tmp_path / "c.json"
    rc, err = cli_main("calibrate", "--model", model_file, own, "--out", out,
                       "--no-default-negatives")  # fmt: skip
    assert rc == 0, err
    assert "enlarged x1.5: highpass threshold" in err and "enlarged x2: highpass threshold" in err
    assert sorted(json.loads(out.read_text())["enlargements"]) == ["1.5", "2"]
    rc, err = cli_main("calibrate", "--model", model_file, own, "--out", out, "--overwrite",
                       "--no-default-negatives", "--enlargements", "none")  # fmt: skip
    assert rc == 0 and "enlargements" not in json.loads(out.read_text()), err
    rc, err = cli_main("calibrate", "--model", model_file, own, "--out", out, "--overwrite",
                       "--enlargements", "1.5,3")  # fmt: skip
    assert rc == 2 and "expected 'none' or distinct enlargement factors" in err
    rc, err = cli_main("calibrate", "--model", model_file, own, "--out", out, "--overwrite",
                       "--enlargement", "off", "--enlargements", "1.5")  # fmt: skip
    assert rc == 2 and "need a scorer that looks for enlargements" in err
    rc, err = cli_main("calibrate", "--scores", out, "--out", tmp_path / "d.json",
                       "--enlargements", "1.5")  # fmt: skip
    assert rc == 2 and "--enlargements enlarges images" in err
    for chains in ("1.5", "3@85", "1.5@85,1.5@85"):
        rc, err = cli_main("calibrate", "--model", model_file, own, "--out", out, "--overwrite",
                           "--chains", chains)  # fmt: skip
        assert rc == 2 and "expected 'none' or distinct F@Q pairs" in err
    rc, err = cli_main("calibrate", "--scores", out, "--out", tmp_path / "d.json",
                       "--chains", "1.5@85")  # fmt: skip
    assert rc == 2 and "--chains enlarges images" in err


def test_resize_thresholds_are_fitted_on_resized_copies_and_decide_resized_files(
    tmp_path, monkeypatch
):
    """Undoing a resize shifts a model's own signals; a calibration whose images were resized by
    the same factor first holds for such images, and says so in the caution."""
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)  # 16 of the 64: faster
    own = noisy_own_images(tmp_path / "own", range(10))
    (tmp_path / "own" / "broken.png").write_bytes(b"not an image")
    clean = calibrate_images(Scorer([BlockMean()]), [tmp_path / "own"], "ratio").calibration
    settings = ScoreSettings(robust="auto", resized_by=1.3)
    run = calibrate_images(Scorer([BlockMean()], settings), [tmp_path / "own"], "ratio")
    resized = run.calibration
    assert resized.measurement_provenance.settings.resized_by == 1.3 and resized.n == 10
    assert sorted(r["path"] for r in run.records) == sorted(str(p) for p in own)
    assert [m.path for m in run.failed] == [str(tmp_path / "own" / "broken.png")]
    assert all((r["width"], r["degradation"]) == (125, {"resized_by": 1.3})
               for r in run.records)  # fmt: skip
    assert "resized by 1.3" in resized.negatives["sources"][0]
    assert np.mean(resized.signals) > 1.5 * np.mean(clean.signals)
    (png,) = noisy_own_images(tmp_path / "test", [50])
    upload = tmp_path / "test" / "upload.png"
    Image.open(png).resize((125, 125), Image.Resampling.BICUBIC).save(upload)  # off the grid
    at_clean = Attributor([clean], [BlockMean()], robust="auto", resized_by=1.3)
    (at_clean,) = at_clean.attribute_file(upload).rows()
    (at_factor,) = Attributor([resized], [BlockMean()]).attribute_file(upload).rows()
    assert at_clean["signal"] == at_factor["signal"] and not at_clean["belongs"]
    assert at_factor["belongs"] and at_factor["verdict"] == "block-mean"
    assert "thresholds fitted on images that were not resized" in at_clean["caution"]
    assert "thresholds fitted on images resized by the same factor" in at_factor["caution"]
    with pytest.raises(CalibrationError, match=r"holds for images resized by 1\.3, not by 2"):
        Attributor([resized], [BlockMean()], resized_by=2.0)


def test_chain_thresholds_decide_a_resized_jpeg_at_its_quality(tmp_path, monkeypatch):
    """A calibration with a resize factor and JPEG qualities fits thresholds on its images
    resized, then re-encoded (the common upload chain); a file resized by the factor and saved
    as JPEG is decided at its quality's chain threshold."""
    monkeypatch.setattr("aedr.measure.default_photos.TILES_PER_PHOTO", 1)
    own = noisy_own_images(tmp_path / "own", range(10))
    settings = ScoreSettings(robust="auto", resized_by=1.3)
    chain = calibrate_images(Scorer([BlockMean()], settings), own, "ratio",
                             jpeg_qualities=(70,)).calibration  # fmt: skip
    fitted = chain.jpeg["70"]
    assert fitted["n"] == 10 and "resized by 1.3" in fitted["negatives"]["sources"][0]
    # measured as uploaded (resized, then re-encoded), the own JPEGs sit with the resized own
    # images (re-encoded without the resize, undoing it would put them far above)
    assert max(fitted["signals"]) < chain.threshold
    resized_only = calibrate_images(Scorer([BlockMean()], settings), own, "ratio").calibration
    assert chain.threshold == resized_only.threshold != fitted["threshold"]
    (png,) = noisy_own_images(tmp_path / "test", [50])
    upload = tmp_path / "test" / "upload.jpg"
    resized = Image.open(png).resize((125, 125), Image.Resampling.BICUBIC)
    resized.save(upload, "JPEG", quality=70)
    (row,) = Attributor([chain], [BlockMean()]).attribute_file(upload).rows()
    assert row["threshold_quality"] == 70 and row["threshold"] == fitted["threshold"]
    assert row["belongs"] and row["verdict"] == "block-mean"
    assert row["degradation"].startswith("resized x1.3 (undone); jpeg q=70")


def test_the_search_finds_a_real_decoders_grid_phase(tae_dir, shared_dir):
    """taesd's images cropped by (3, 3) px: the search, reading the residual's high-pass part,
    finds the true phase (5, 5) in at least half of them (5 of these 6; a plain squared error
    finds it in none: README, *The grid-phase search*)."""
    from aedr.autoencoders import create_autoencoder
    from aedr.synthesis import decoder_images, photo_crops

    autoencoder = create_autoencoder("taesd", tae_dir)
    crops = photo_crops([shared_dir / "images" / "real"], 128)[:6]
    made = decoder_images(autoencoder, crops, 6, seed=0, reconstructions=3)
    found = [search_phase(autoencoder, image[3:, 3:]) for image in made]
    assert sum(phase == (5, 5) for phase in found) >= 3, found
