"""The distances loss1 and loss2 can measure: SSIM and PSNR against torchmetrics, LPIPS against the
lpips package's own network, the weights LPIPS needs, and where a distance applies.

(``test_paper`` checks l1, ssim and psnr end to end against the authors' loop.)"""

import doctest
import json
import sys
import types

import pytest
import torch

import aedr.measure.distances
import aedr.measure.reconstruction
from aedr.cli import main
from aedr.decide.calibration import CalibrationError, calibrate
from aedr.measure.distances import (
    ALEXNET_FILE,
    DistanceError,
    check_distance,
    distance_losses,
    lpips_network,
)
from aedr.measure.settings import ScoreSettings, SettingsError
from tests.conftest import import_or_skip


def test_docstring_examples():
    for module in (aedr.measure.distances, aedr.measure.reconstruction):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0, module.__name__


@pytest.fixture
def pair():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 56) * 2 - 1
    return x, (x + 0.1 * torch.randn_like(x)).clamp(-1.2, 1.2)


def test_ssim_and_psnr_are_torchmetrics_per_image(pair):
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    x, y = pair
    ssim = distance_losses("ssim", x, y)
    psnr = distance_losses("psnr", x, y)
    for i in range(2):
        a, b = (y[i : i + 1] + 1) / 2, (x[i : i + 1] + 1) / 2
        expected = 1 - structural_similarity_index_measure(a, b, data_range=2.0)
        assert float(ssim[i]) == pytest.approx(float(expected), rel=1e-5)
        expected = -peak_signal_noise_ratio(a, b, data_range=2.0)
        assert float(psnr[i]) == pytest.approx(float(expected), rel=1e-5)
    assert float(distance_losses("ssim", x, x).abs().max()) < 1e-6


def alexnet_features() -> torch.nn.Sequential:
    """torchvision's AlexNet ``features`` layout (test code: torchvision's CUDA wheels do not load
    with the CPU torch CI installs, so the lpips package gets this network through a stub)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )  # fmt: skip


@pytest.fixture
def random_alexnet(tmp_path, monkeypatch):
    """Random AlexNet weights saved where torch's hub cache keeps torchvision's file; the lpips
    package's linear layers from the installed package. Returns the features."""
    torch.manual_seed(1)
    features = alexnet_features()
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()},
               checkpoints / ALEXNET_FILE)  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    lpips_network.cache_clear()
    yield features
    lpips_network.cache_clear()


@pytest.fixture
def lpips_package(random_alexnet, monkeypatch):
    """The lpips package's LPIPS (AlexNet, v0.1, its shipped linear layers) on the same random
    backbone: torchvision stubbed with the features above."""
    stub = types.ModuleType("torchvision")
    stub.models = types.SimpleNamespace(
        alexnet=lambda pretrained=False, **_: types.SimpleNamespace(features=random_alexnet)
    )
    monkeypatch.setitem(sys.modules, "torchvision", stub)
    monkeypatch.setitem(sys.modules, "torchvision.models", stub.models)
    lpips = import_or_skip("lpips", "the lpips package (.ci/run installs it with --no-deps)")
    return lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)


def test_lpips_is_the_lpips_packages_computation(lpips_package, pair):
    x, y = pair
    ours = distance_losses("lpips", x, y)
    with torch.no_grad():
        theirs = lpips_package(y, x).flatten()
    assert ours.shape == (2,) and float(ours.min()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_lpips_losses_of_a_double_reconstruction(lpips_package, random_tiny):
    from aedr.measure.reconstruction import reconstruction_measures

    torch.manual_seed(2)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    measured = reconstruction_measures(random_tiny, x, distance="lpips")
    with torch.no_grad():
        x1 = random_tiny.decode(random_tiny.encode(x))
        x2 = random_tiny.decode(random_tiny.encode(x1))
        expected1, expected2 = lpips_package(x1, x).flatten(), lpips_package(x2, x1).flatten()
    torch.testing.assert_close(measured.loss1, expected1.double(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(measured.loss2, expected2.double(), rtol=1e-4, atol=1e-7)


def test_lpips_through_the_cli(random_alexnet, tmp_path, image_folder, tae_dir):
    out = tmp_path / "lpips.jsonl"
    code = main(["score", str(image_folder), "--model", "taesd", "--distance", "lpips",
                 "--no-cache", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["provenance"]["distance"] == "lpips"
        assert "robust" not in record["provenance"]  # off: robust measurement needs l2
        assert record["ratio"] == pytest.approx(record["loss1"] / record["loss2"])


def test_missing_lpips_weights_are_named_before_any_image(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("AEDR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(aedr.measure.distances, "find_spec", lambda name: None)
    with pytest.raises(DistanceError) as raised:
        check_distance("lpips")
    message = str(raised.value)
    assert ALEXNET_FILE in message and "lpips-alex-v0.1.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / ALEXNET_FILE) in message
    assert "download.pytorch.org" in raised.value.hint
    check_distance("ssim")  # needs no files


def test_the_cli_refuses_lpips_without_its_weights(tmp_path, monkeypatch, capsys, image_folder):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(aedr.measure.distances, "find_spec", lambda name: None)
    out = tmp_path / "scores.jsonl"
    code = main(["score", str(image_folder), "--model", "taesd", "--distance", "lpips",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2 and not out.exists()
    assert ALEXNET_FILE in capsys.readouterr().err


def test_the_distance_is_recorded_and_l2_keeps_old_provenances():
    assert "distance" not in ScoreSettings().recorded()  # stores and digests made before it
    assert ScoreSettings(distance="ssim").recorded()["distance"] == "ssim"
    assert ScoreSettings.from_recorded({"measurement": "reconstruction"}).distance == "l2"
    inversion = ScoreSettings(measurement="inversion")
    assert "distance" not in inversion.recorded()
    with pytest.raises(SettingsError, match="distance applies only to the reconstruction"):
        ScoreSettings(measurement="inversion", distance="l1")
    with pytest.raises(SettingsError, match="must be one of l2, l1, ssim, psnr, lpips"):
        ScoreSettings(distance="cosine")


def test_robust_measurement_needs_l2():
    assert ScoreSettings(distance="ssim").resolved().robust == "off"
    assert ScoreSettings().resolved().robust == "auto"
    with pytest.raises(SettingsError, match="l2 distance"):
        ScoreSettings(distance="psnr", robust="auto")


def test_only_the_statistics_of_the_losses_take_a_distance():
    records = [
        {"measurement": "reconstruction", "loss1": -20.0 - i, "loss2": -30.0 - i,
         "homogeneity": 0.3 + 0.01 * i, "highpass_log_ratio": 0.1 * i, "highpass_weight": 0.9,
         "provenance": ScoreSettings(distance="psnr").provenance("weights").as_dict()}
        for i in range(8)
    ]  # fmt: skip
    calibration = calibrate(records, "m", statistic="aedr")
    assert calibration.provenance["distance"] == "psnr"
    with pytest.raises(CalibrationError, match="highpass does not read loss1 and loss2"):
        calibrate(records, "m", statistic="highpass")


def test_the_cli_says_which_statistics_a_distance_applies_to(tmp_path, capsys):
    scores = tmp_path / "scores.jsonl"
    provenance = ScoreSettings(distance="l1").provenance("weights").as_dict()
    rows = [{"path": f"{i}.png", "model": "m", "measurement": "reconstruction",
             "loss1": 0.02 + i / 1000, "loss2": 0.01, "ratio": 2.0 + i / 10, "homogeneity": 0.4,
             "highpass_log_ratio": 0.1, "highpass_weight": 0.8, "ac_log_ratio": 0.1,
             "provenance": provenance} for i in range(6)]  # fmt: skip
    scores.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code = main(["calibrate", "--scores", str(scores), "--out", str(tmp_path / "cal.json")])
    assert code == 2
    assert "the distance applies to fitted, aedr, ratio, single-loss" in capsys.readouterr().err


def test_a_calibrations_distance_decides_how_attribute_measures(tmp_path, tae_dir):
    from PIL import Image

    from tests.conftest import smooth_image

    images = tmp_path / "images"
    images.mkdir()
    for seed in range(4):
        Image.fromarray(smooth_image(seed, (64, 64))).save(images / f"{seed}.png")
    calibration, attributed = tmp_path / "cal.json", tmp_path / "attributed.jsonl"
    assert main(["calibrate", str(images), "--model", "taesd", "--distance", "l1",
                 "--statistic", "aedr", "--no-default-negatives", "--out", str(calibration),
                 "--quiet"]) == 0  # fmt: skip
    assert json.loads(calibration.read_text())["provenance"]["distance"] == "l1"
    assert main(["attribute", str(images), "--calibration", str(calibration),
                 "--out", str(attributed), "--quiet"]) == 0  # fmt: skip
    signals = {r["path"]: r["signal"] for r in map(json.loads, attributed.read_text().splitlines())}
    for distance in ("l1", "l2"):
        scores = tmp_path / f"{distance}.jsonl"
        assert main(["score", str(images), "--model", "taesd", "--distance", distance,
                     "--no-cache", "--out", str(scores), "--quiet"]) == 0  # fmt: skip
        records = list(map(json.loads, scores.read_text().splitlines()))
        same = [r["ratio"] * r["homogeneity"] == pytest.approx(signals[r["path"]], rel=1e-9)
                for r in records]  # fmt: skip
        assert all(same) if distance == "l1" else not any(same)
