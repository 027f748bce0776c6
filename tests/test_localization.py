"""Local maps (aedr.measure.evidence), their threshold and regions (aedr.decide.localization),
``aedr localize``, ``calibrate --local`` and the ``partial`` verdict."""

from __future__ import annotations

import doctest
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import aedr.decide.localization
import aedr.measure.evidence
from aedr.cli import main
from aedr.decide.calibration import Calibration
from aedr.decide.localization import (
    LocalCalibrationError,
    consistent_regions,
    fit_local_threshold,
    map_samples,
)
from aedr.measure.evidence import (
    PRIOR_EVIDENCE,
    PRIOR_WEIGHT,
    QUANTISATION_ENERGY,
    evidence_means,
    highpass_log_ratio,
    image_map,
    local_map,
    pixel_evidence,
)
from aedr.measure.scorer import Scorer
from aedr.measure.settings import ScoreSettings, SettingsError

REPO = Path(__file__).resolve().parents[1]


def test_docstring_examples():
    for module in (aedr.measure.evidence, aedr.decide.localization):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0, module.__name__


# -- measuring -----------------------------------------------------------------------------------


def test_evidence_is_zero_where_both_reconstructions_lose_alike_and_high_where_the_first_loses_more():
    generator = torch.Generator().manual_seed(0)
    x1 = torch.rand((1, 3, 32, 48), generator=generator) * 2 - 1
    detail = torch.randn((1, 3, 32, 48), generator=generator) * 0.2
    x2 = x1 + detail  # the second reconstruction loses `detail`
    x = x1 + detail  # ... and so does the first: lies on the manifold
    weighted, weight = pixel_evidence(x, x1, x2)[0]
    assert np.allclose(weighted, 0.0, atol=1e-5) and np.median(weight) > 0.99  # detail: informative
    real = x1 + 3 * detail  # three times the detail: log(9) more first-pass energy
    evidence = pixel_evidence(real, x1, x2)
    assert evidence.shape == (1, 2, 32, 48) and evidence.dtype == np.float32
    assert np.median(evidence[0, 0] / evidence[0, 1]) == pytest.approx(np.log(9), abs=0.1)


def test_smooth_offsets_carry_no_evidence_and_flat_areas_no_weight():
    """The high-pass removes colour drift; areas at the noise floor weigh nothing."""
    x1 = torch.zeros((1, 3, 24, 24))
    drift = torch.linspace(0, 0.3, 24).reshape(1, 1, 1, 24).expand(1, 3, 24, 24)
    weighted, weight = pixel_evidence(x1 + drift, x1, x1)[0]  # a ramp lost only the first time
    assert np.abs(weighted[4:-4, 4:-4]).max() < 0.05 and weight[4:-4, 4:-4].max() < 0.05
    flat = pixel_evidence(x1, x1, x1)
    assert np.isfinite(flat).all() and np.abs(flat).max() == 0.0
    assert pytest.approx(3 * (2 / 255) ** 2 / 12) == QUANTISATION_ENERGY


def test_local_map_is_the_weighted_mean_over_the_window_and_the_prior_where_nothing_is_known():
    evidence = np.zeros((2, 64, 64), np.float32)
    evidence[1, :, :32] = 1.0  # the left half is informative, with evidence 0: consistent
    statistic = local_map(evidence, 8)
    shrunk = PRIOR_WEIGHT * PRIOR_EVIDENCE / (1 + PRIOR_WEIGHT)  # full weight, the prior's share
    assert np.allclose(statistic[:, :16], shrunk, atol=1e-4)
    assert statistic[:, 50:].min() == pytest.approx(PRIOR_EVIDENCE)  # no information: the prior
    evidence[0, :, :32] = -0.5  # the same weight, lower evidence: lower statistic
    assert local_map(evidence, 8)[:, :16].max() < statistic[:, :16].min()
    narrow, wide = local_map(evidence, 8), local_map(evidence, 32)
    assert narrow[:, 24].mean() < wide[:, 24].mean()  # a wide window mixes in the empty half
    for window in (0, -3, float("nan")):
        with pytest.raises(ValueError, match="positive number of pixels"):
            local_map(evidence, window)
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        local_map(np.zeros((3, 4)), 8)


def test_image_map_puts_crop_maps_top_left_and_resizes_resized_ones():
    model_map = np.arange(16 * 24, dtype=np.float32).reshape(16, 24)
    placed = image_map(model_map, 29, 21, "crop")
    assert placed.shape == (21, 29)
    assert np.array_equal(placed[:16, :24], model_map)
    assert np.array_equal(placed[20, :24], model_map[15]) and placed[0, 28] == model_map[0, 23]
    resized = image_map(model_map, 48, 32, "resize")
    assert resized.shape == (32, 48) and resized.min() >= 0 and resized.max() <= model_map.max()
    with pytest.raises(ValueError, match="does not fit"):
        image_map(model_map, 20, 21, "crop")


def test_scorer_keeps_evidence_only_when_asked_and_refuses_sampled_crops(random_tiny, image_folder):
    path = next(image_folder.iterdir())
    plain = Scorer([random_tiny], ScoreSettings(robust="off")).score_file(path)[0]
    mapped = Scorer([random_tiny], local_maps=True).score_file(path)[0]  # robust off by default
    assert plain.evidence is None and "evidence" not in mapped.as_dict()
    assert mapped.evidence.shape == (2, mapped.height - mapped.height % 8,
                                     mapped.width - mapped.width % 8)  # fmt: skip
    assert (mapped.loss1, mapped.loss2) == (plain.loss1, plain.loss2)  # the same reconstructions
    with pytest.raises(SettingsError, match="local maps"):
        Scorer([random_tiny], ScoreSettings(crop=32), local_maps=True)
    with pytest.raises(SettingsError, match="local maps"):
        Scorer([random_tiny], ScoreSettings(measurement="inversion"), local_maps=True)


def test_the_whole_image_statistic_is_the_map_over_one_window_of_every_pixel(
    random_tiny, image_folder
):
    path = sorted(image_folder.iterdir())[0]
    every = ScoreSettings(border=0)
    mapped = Scorer([random_tiny], every, local_maps=True).score_file(path)[0]
    weighted, weight = (float(layer.astype(np.float64).mean()) for layer in mapped.evidence)
    expected = (weighted + PRIOR_WEIGHT * PRIOR_EVIDENCE) / (weight + PRIOR_WEIGHT)
    assert mapped.highpass_log_ratio == pytest.approx(expected, rel=1e-5)
    assert highpass_log_ratio(weighted, weight) == pytest.approx(expected)
    with pytest.raises(ValueError, match="non-negative weight"):
        highpass_log_ratio(0.1, -0.5)
    with pytest.raises(ValueError, match="finite"):
        highpass_log_ratio(float("nan"), 0.5)


def test_the_border_leaves_the_edges_out_of_the_whole_image_means():
    generator = torch.Generator().manual_seed(0)
    x1 = torch.rand((1, 3, 64, 96), generator=generator) * 2 - 1
    lost = torch.zeros_like(x1)
    lost[..., :, :6] = torch.randn((1, 3, 64, 6), generator=generator) * 0.3  # the left edge
    x = x1 + lost  # lost by the first reconstruction only, and only along the edge
    every = evidence_means(x, x1, x1).tolist()[0]
    inside = evidence_means(x, x1, x1, border=16).tolist()[0]
    assert every[0] > 0.01 and every[1] > 0.05  # the edge's evidence counts
    assert inside == [0.0, 0.0]  # 16 px in, nothing was lost: no evidence, no weight
    assert highpass_log_ratio(*inside) == PRIOR_EVIDENCE
    corner = (..., slice(0, 32), slice(0, 32))
    small = evidence_means(x[corner], x1[corner], x1[corner], border=16).tolist()[0]
    maps = pixel_evidence(x[corner], x1[corner], x1[corner])[0, :, 8:24, 8:24]  # a quarter in
    assert small == pytest.approx([float(m.astype(np.float64).mean()) for m in maps], rel=1e-5)
    with pytest.raises(ValueError, match="at least 0"):
        evidence_means(x, x1, x1, border=-1)


def test_the_border_setting_moves_highpass_alone(random_tiny, image_folder):
    """Measured with a border, the statistic is the map's mean over the interior; the losses,
    and the maps themselves, are those of every pixel."""
    path = sorted(image_folder.iterdir())[0]
    every = Scorer([random_tiny], ScoreSettings(border=0), local_maps=True).score_file(path)[0]
    inside = Scorer([random_tiny], ScoreSettings(border=8), local_maps=True).score_file(path)[0]
    assert (inside.loss1, inside.loss2, inside.ac_log_ratio) == (
        every.loss1, every.loss2, every.ac_log_ratio,
    )  # fmt: skip
    assert np.array_equal(inside.evidence, every.evidence)
    weighted, weight = (
        float(layer[8:-8, 8:-8].astype(np.float64).mean()) for layer in every.evidence
    )
    assert inside.highpass_log_ratio == pytest.approx(
        highpass_log_ratio(weighted, weight), rel=1e-5
    )
    assert inside.highpass_log_ratio != pytest.approx(every.highpass_log_ratio, rel=1e-4)


# -- deciding ------------------------------------------------------------------------------------


def test_local_threshold_is_the_quantile_of_own_map_values_weighing_images_alike():
    small = np.zeros((64, 64), np.float32)
    big = np.ones((512, 512), np.float32)
    samples = [map_samples(small), map_samples(big)]
    assert abs(samples[0].size - samples[1].size) < 0.2 * samples[1].size
    ramp = np.linspace(0, 1, 100 * 100, dtype=np.float32).reshape(100, 100)
    fitted = fit_local_threshold([ramp.ravel(), ramp.ravel()], 48, alpha=0.1)
    assert fitted["threshold"] == pytest.approx(0.9, abs=1e-3)
    assert fitted["window"] == 48.0 and fitted["n_images"] == 2
    with pytest.raises(LocalCalibrationError, match="at least 2 images"):
        fit_local_threshold([ramp.ravel()], 48)
    with pytest.raises(LocalCalibrationError, match="non-finite"):
        fit_local_threshold([ramp.ravel(), np.array([np.nan, 1.0])], 48)
    with pytest.raises(LocalCalibrationError, match="alpha"):
        fit_local_threshold([ramp.ravel()] * 2, 48, alpha=1.0)


def test_regions_are_boxed_largest_first_and_small_ones_dropped():
    statistic = np.ones((100, 100), np.float32)
    statistic[10:30, 20:70] = -1  # 10% of the image
    statistic[60:90, 60:90] = -1  # 9%
    statistic[0:3, 0:3] = -1  # 0.09%: below the reported minimum
    regions = consistent_regions(statistic, 0.0)
    assert [r.box for r in regions] == [(20, 10, 70, 30), (60, 60, 90, 90)]
    assert [r.share for r in regions] == [pytest.approx(0.10), pytest.approx(0.09)]
    assert consistent_regions(statistic, -2.0) == []


def test_calibration_files_without_a_local_section_keep_their_digest(tmp_path):
    from conftest import TEST_PROVENANCE

    from aedr.decide.calibration import calibrate

    records = [{"loss1": 1.0 + i / 10, "loss2": 1.0, "homogeneity": 0.5,
                "provenance": TEST_PROVENANCE} for i in range(5)]  # fmt: skip
    plain = calibrate(records, "m", 0.05, "aedr")
    assert "local" not in plain.as_dict()  # the same content and digest as before local maps
    plain.local = {"window": 48.0, "alpha": 0.05, "threshold": 0.3, "n_images": 2,
                   "n_values": 10}  # fmt: skip
    plain.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json").local["threshold"] == 0.3
    data = json.loads((tmp_path / "c.json").read_text())
    data["local"]["window"] = -1
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"local\.window"):
        Calibration.load(tmp_path / "bad.json")


# -- the commands, with the shared taesd --------------------------------------------------------


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def composite_case(tmp_path_factory, tae_dir, shared_dir):
    """taesd's own images to calibrate on, and a test folder: a photo with a rectangle that
    taesd's decoder wrote, the untouched photo off the grid, a second size, and a bad file."""
    from aedr.autoencoders import create_autoencoder
    from aedr.synthesis import decoder_images, photo_crops, save_images

    root = tmp_path_factory.mktemp("localize")
    autoencoder = create_autoencoder("taesd", tae_dir)
    crops = photo_crops([shared_dir / "images" / "real" / "kodak"], 256)
    save_images(decoder_images(autoencoder, crops[:6], 6, seed=1), root / "own", "own-")
    photo = crops[10]
    made = decoder_images(autoencoder, [photo], 1, seed=2, reconstructions=1)[0]
    mask = np.zeros(photo.shape[:2], bool)
    mask[40:168, 64:192] = True  # a quarter of the image
    test = root / "test"
    test.mkdir()
    Image.fromarray(np.where(mask[..., None], made, photo)).save(test / "composite.png")
    Image.fromarray(crops[11][:250, :251]).save(test / "photo.png")
    Image.fromarray(crops[12][:128, :192]).save(test / "small.png")
    (test / "broken.png").write_bytes(b"not an image")
    calibration = root / "taesd.json"
    assert run("calibrate", root / "own", "--model", "taesd", "--weights-dir", tae_dir,
               "--out", calibration, "--local", "--no-cache", "--no-default-negatives", "-q") == 0  # fmt: skip
    return root, test, mask, calibration


def test_calibrate_local_stores_the_threshold_and_window(composite_case):
    _, _, _, calibration = composite_case
    local = Calibration.load(calibration).local
    assert local["window"] == 48.0 and local["n_images"] == 6 and local["alpha"] == 0.05
    assert np.isfinite(local["threshold"])


def test_localize_writes_maps_heatmaps_and_records_and_finds_the_pasted_region(
    composite_case, tae_dir, tmp_path
):
    _, test, mask, calibration = composite_case
    out = tmp_path / "maps"
    code = run("localize", test, "--calibration", calibration, "--weights-dir", tae_dir,
               "--out", out, "--no-cache", "-q")  # fmt: skip
    assert code == 1  # the broken file
    rows = {Path(r["path"]).name: r for r in map(json.loads, (out / "localize.jsonl").open())}
    assert set(rows) == {"composite.png", "photo.png", "small.png", "broken.png"}
    assert "not a recognised image format" in rows["broken.png"]["error"]
    assert rows["broken.png"]["map"] == "" and not list(out.glob("broken*"))
    for name, size in (("composite.png", (256, 256)), ("photo.png", (250, 251)),
                       ("small.png", (128, 192))):  # fmt: skip
        row = rows[name]
        assert row["error"] == "" and row["model"] == "taesd"
        statistic = np.load(out / row["map"])
        assert statistic.shape == size and statistic.dtype == np.float32
        assert Image.open(out / row["heatmap"]).size[0] > 300  # a readable figure
    composite = rows["composite.png"]
    assert composite["verdict"] == "partial" and composite["regions"]
    found = np.load(out / composite["map"]) < composite["threshold"]
    iou = (found & mask).sum() / (found | mask).sum()
    left, top, right, bottom = composite["regions"][0]["box"]
    assert iou > 0.4, iou
    assert left >= 64 - 32 and right <= 192 + 32 and top >= 40 - 32 and bottom <= 168 + 32
    assert rows["photo.png"]["verdict"] != "partial"  # untouched: no region named
    artifacts = Path(os.environ.get("AEDR_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "localize-composite.png").write_bytes((out / composite["heatmap"]).read_bytes())


def test_attribute_names_partial_with_the_region_share(composite_case, tae_dir, tmp_path):
    _, test, mask, calibration = composite_case
    out = tmp_path / "a.jsonl"
    code = run("attribute", test / "composite.png", test / "photo.png", "--calibration",
               calibration, "--weights-dir", tae_dir, "--out", out, "--no-cache", "-q")  # fmt: skip
    assert code == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.open())}
    composite = rows["composite.png"]
    assert composite["verdict"] == "partial" and composite["candidates"] == "taesd"
    assert composite["verdict_group"] == "taesd"
    assert 0.05 <= composite["region_share"] <= 2 * mask.mean()
    assert rows["photo.png"]["verdict"] != "partial" and rows["photo.png"]["region_share"] is None


def test_localize_usage_errors_exit_2(composite_case, tae_dir, tmp_path, capsys):
    _, test, _, calibration = composite_case
    common = ("--weights-dir", tae_dir, "--no-cache", "-q")
    assert run("localize", test, "--out", tmp_path / "o", *common) == 2
    assert "--model MODEL or --calibration" in capsys.readouterr().err
    assert run("localize", test, "--calibration", calibration, "--window", "24",
               "--out", tmp_path / "o", *common) == 2  # fmt: skip
    assert "window 48 px, not 24" in capsys.readouterr().err
    assert run("localize", test, "--model", "taesd", "--window", "0", "--out", tmp_path / "o",
               *common) == 2  # fmt: skip
    assert "positive number of pixels" in capsys.readouterr().err
    assert run("localize", test, "--calibration", calibration, "--resize",
               "--out", tmp_path / "o", *common) == 2  # fmt: skip
    assert "calibrations' settings decide" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert run("localize", test, "--model", "taesd", "--out", tmp_path / "file", *common) == 2
    assert "not a folder" in capsys.readouterr().err


def test_localize_without_a_calibration_writes_maps_only(composite_case, tae_dir, tmp_path):
    _, test, _, _ = composite_case
    out = tmp_path / "plain"
    code = run("localize", test / "small.png", "--model", "taesd", "--weights-dir", tae_dir,
               "--window", "32", "--out", out, "--no-cache", "-q")  # fmt: skip
    assert code == 0
    (row,) = map(json.loads, (out / "localize.jsonl").open())
    assert row["window"] == 32.0 and row["threshold"] is None and row["verdict"] == ""
    assert row["share"] is None and row["regions"] == []
    assert np.load(out / row["map"]).shape == (128, 192) and (out / row["heatmap"]).is_file()
    assert run("localize", test / "small.png", "--model", "taesd", "--weights-dir", tae_dir,
               "--out", out, "--no-cache", "-q") == 2  # fmt: skip  # records exist: no overwrite
