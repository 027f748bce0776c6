"""``--paper`` against an independent replica of the authors' scoring loop.

The replica below is written from the published ``cal_loss_ratio.py`` (wangchao0708/AEDR) as test
code: PIL ``Image.open(path).convert("RGB")`` (no EXIF transpose), ``image.resize`` with Pillow's
default filter when a side is off the 8-pixel grid (Kandinsky 2.1 always to 512 x 512),
``ToTensor`` then ``* 2 - 1``, diffusers' own ``retrieve_latents`` with one CPU generator seeded
1, and ``nn.MSELoss`` between each reconstruction and its input. It shares nothing with
``aedr.measure`` but the network weights.
"""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from aedr.cli import main
from aedr.records import read_records

TOLERANCE = 1e-6  # relative, the bar


def authors_order(folder: Path) -> list[Path]:
    """Their ``sorted(..., key=extract_numbers)`` over .png/.jpg/.jpeg names."""
    names = [p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return sorted(names, key=lambda p: tuple(map(int, re.findall(r"\d+", p.name))))


def authors_criterion(distance: str):
    """``cal_loss_ratio.py``'s ``--distance_metric`` criteria, called (reconstruction, input)."""
    if distance == "l2":
        return torch.nn.MSELoss()
    if distance == "l1":
        return torch.nn.L1Loss()
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    if distance == "ssim":
        ssim = StructuralSimilarityIndexMeasure(data_range=2.0)
        return lambda a, b: 1 - ssim((a + 1) / 2, (b + 1) / 2)
    psnr = PeakSignalNoiseRatio(data_range=2.0)
    return lambda a, b: -psnr((a + 1) / 2, (b + 1) / 2)


def authors_losses(
    autoencoder, paths: list[Path], model_name: str = "", distance: str = "l2"
) -> list[list[float]]:
    """``cal_loss_ratio.py``'s loop: (L1, L2) per image, one CPU generator for the whole run."""
    generator = torch.Generator().manual_seed(1)
    criterion = authors_criterion(distance)
    rows = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        width, height = image.size
        if model_name == "KD2.1":
            image = image.resize((512, 512))
        elif width % 8 != 0 or height % 8 != 0:
            image = image.resize((int(round(width / 8)) * 8, int(round(height / 8)) * 8))  # noqa: RUF046
        # T.ToTensor(): HWC uint8 -> CHW float32 / 255
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        current = tensor * 2.0 - 1.0
        values = []
        for _ in range(2):
            with torch.no_grad():
                latents = retrieve_latents(autoencoder.encode(current), generator=generator)
                reconstruction = autoencoder.decode(latents, return_dict=False)[0]
                values.append(criterion(reconstruction, current).item())
            current = reconstruction.detach()
        rows.append(values)
    return rows


def retrieve_latents(encoder_output, generator):
    """diffusers' ``retrieve_latents`` with its default ``sample_mode="sample"`` (that module
    imports transformers, which aedr does not need): the posterior's seeded sample, or the
    deterministic encoder's latents."""
    if hasattr(encoder_output, "latent_dist"):
        return encoder_output.latent_dist.sample(generator)
    return encoder_output.latents


class DiffusersTiny:
    """A shared tiny autoencoder called as diffusers' ``AutoencoderTiny`` computes it."""

    def __init__(self, tiny):
        self.encoder, self.decoder = tiny.module["encoder"], tiny.module["decoder"]

    def encode(self, x):
        return SimpleNamespace(latents=self.encoder(x.add(1).div(2)))

    def decode(self, latents, return_dict=True):
        return (self.decoder(latents).mul(2).sub(1),)


def paper_scores(tmp_path: Path, model: str, paths: list[Path], *extra: str) -> list[dict]:
    out = tmp_path / f"scores-{len(list(tmp_path.iterdir()))}.jsonl"
    code = main(["score", *map(str, paths), "--model", model, "--paper", "--no-cache",
                 "--out", str(out), "--quiet", *extra])  # fmt: skip
    assert code == 0
    return list(read_records(out))


def assert_agree(records: list[dict], expected: list[list[float]], paths: list[Path]) -> None:
    by_path = {r["path"]: r for r in records}
    for path, (loss1, loss2) in zip(paths, expected, strict=True):
        record = by_path[str(path)]
        assert record["loss1"] == pytest.approx(loss1, rel=TOLERANCE), path
        assert record["loss2"] == pytest.approx(loss2, rel=TOLERANCE), path


@pytest.fixture(scope="module")
def samples(shared_dir) -> list[Path]:
    root = shared_dir / "images" / "generated" / "aedr-samples"
    paths = [p for folder in sorted(root.iterdir()) for p in authors_order(folder)]
    assert len(paths) == 45 and any(p.suffix == ".jpg" for p in paths)
    return paths


@pytest.fixture(scope="module")
def sampling_vae(tmp_path_factory):
    """A cheap diffusers AutoencoderKL with random weights and a real posterior to sample from
    (the SD VAE's 8x factor; the tiny autoencoders have no posterior), saved as a folder."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    module = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4), latent_channels=4, norm_num_groups=4,
        layers_per_block=1, mid_block_add_attention=False,
    ).eval()  # fmt: skip
    folder = tmp_path_factory.mktemp("vae") / "sampling-vae"
    module.save_pretrained(folder)
    return module, folder


def test_paper_mode_equals_the_authors_loop_on_every_sample(samples, sampling_vae, tmp_path):
    module, folder = sampling_vae
    expected = authors_losses(module, samples)
    records = paper_scores(tmp_path, str(folder), samples)
    assert all(r["provenance"]["preset"] == "paper" for r in records)
    assert_agree(records, expected, samples)
    # The sampled noise matters: the posterior mode gives other losses.
    mode = paper_scores(tmp_path, str(folder), samples[:3], "--latent", "mode")
    assert all(abs(m["loss1"] / e[0] - 1) > 1e-3 for m, e in zip(mode, expected, strict=False))


def test_sampled_latents_do_not_depend_on_the_batch_size(samples, sampling_vae, tmp_path):
    _, folder = sampling_vae
    same_size = [p for p in samples if p.parent.name in ("VQDM", "Real")]  # one size, and others

    def by_path(*extra: str) -> dict[str, dict]:
        return {r["path"]: r for r in paper_scores(tmp_path, str(folder), same_size, *extra)}

    one, three = by_path("--batch-size", "1"), by_path("--batch-size", "3")
    assert one.keys() == three.keys() and len(one) == 10
    for path, a in one.items():
        assert three[path]["loss1"] == pytest.approx(a["loss1"], rel=1e-5)
        assert three[path]["loss2"] == pytest.approx(a["loss2"], rel=1e-5)
    # Per-batch noise from the model's device (the default) does depend on it.
    batch_one, batch_three = (by_path("--noise", "batch", "--batch-size", n) for n in "13")
    assert any(abs(a["loss2"] / batch_three[p]["loss2"] - 1) > 1e-3 for p, a in batch_one.items())


@pytest.mark.parametrize(
    ("model", "name"),
    [("taesd", "004.jpg"), ("taef1", "003.jpg")],  # taef1: its 16 grid vs the paper's 8
)
def test_paper_mode_equals_the_authors_loop_on_off_grid_photos(
    model, name, samples, tmp_path, tae_dir
):
    from aedr.autoencoders import create_autoencoder

    paths = [p for p in samples if p.parent.name == "Real" and p.name == name]
    tiny = create_autoencoder(model, tae_dir)
    expected = authors_losses(DiffusersTiny(tiny), paths)
    assert_agree(paper_scores(tmp_path, model, paths), expected, paths)


@pytest.mark.parametrize("distance", ["l1", "ssim", "psnr"])
def test_paper_mode_distances_equal_the_authors_criteria(distance, samples, sampling_vae, tmp_path):
    """On- and off-grid images (the Real photos are off the 8-pixel grid): the ratio agrees with
    the authors' nn.L1Loss and torchmetrics' SSIM and PSNR to 1e-4, the issue's bar."""
    module, folder = sampling_vae
    paths = [p for p in samples if p.parent.name in ("Real", "SD1.5")][::2]
    assert any(Image.open(p).size[0] % 8 for p in paths)  # off the grid
    assert any(not Image.open(p).size[0] % 8 for p in paths)
    expected = authors_losses(module, paths, distance=distance)
    records = {
        r["path"]: r for r in paper_scores(tmp_path, str(folder), paths, "--distance", distance)
    }
    for path, (loss1, loss2) in zip(paths, expected, strict=True):
        record = records[str(path)]
        assert record["provenance"]["distance"] == distance
        assert record["ratio"] == pytest.approx(loss1 / loss2, rel=1e-4), path
        assert record["loss1"] == pytest.approx(loss1, rel=1e-4), path


def test_paper_grid_and_forced_size():
    from aedr.autoencoders.loading import resolve_model
    from aedr.measure.scorer import Scorer
    from aedr.measure.settings import ScoreSettings

    kandinsky = resolve_model("kandinsky21", random_weights=True)
    flux = resolve_model("taef1", random_weights=True)
    scorer = Scorer([kandinsky, flux], ScoreSettings.paper())
    assert [m.grid() for m in scorer.models] == [(8, 512), (8, None)]
    default = Scorer([kandinsky, flux], ScoreSettings(alignment="resize"))
    assert [m.grid() for m in default.models] == [(64, None), (16, None)]


def test_paper_dtype_is_the_authors_on_every_device():
    from aedr.autoencoders.registry import dtype_name, get_spec

    for name, expected in (("sd15", "fp32"), ("kandinsky21", "fp32"), ("flux1", "bf16"),
                           ("sd35", "bf16"), ("taesd", "fp32")):  # fmt: skip
        assert dtype_name("paper", get_spec(name), "cuda") == expected
        assert dtype_name("paper", get_spec(name), "cpu") == expected
    assert dtype_name("auto", get_spec("sd15"), "cuda") == "fp16"


def test_paper_mode_keeps_the_stored_orientation(tmp_path):
    from aedr.measure.images import read_image

    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    shown, stored = read_image(path), read_image(path, exif_transpose=False)
    assert shown.rgb.shape == (16, 8, 3) and stored.rgb.shape == (8, 16, 3)
    assert stored.gray.shape == shown.gray.shape == (16, 8)  # OpenCV's grey is oriented


def test_calibration_with_paper_fits_the_first_images(tmp_path, model_file, image_folder):
    from aedr.decide.calibration import Calibration

    out = tmp_path / "paper.json"
    main(["calibrate", str(image_folder), "--model", str(model_file), "--paper", "--first", "3",
          "--out", str(out), "--quiet", "--no-cache", "--no-default-negatives"])  # fmt: skip
    calibration = Calibration.load(out)
    assert calibration.statistic == "aedr" and calibration.n == 3
    assert calibration.provenance["preset"] == "paper"
    assert "first 3" in calibration.tuning["belonging_images"]
    rows = tmp_path / "rows.jsonl"
    code = main(["attribute", str(image_folder), "--calibration", str(out), "--paper",
                 "--out", str(rows), "--quiet", "--no-cache"])  # fmt: skip
    assert code == 0
    assert {r["statistic"] for r in read_records(rows)} == {"aedr"}
