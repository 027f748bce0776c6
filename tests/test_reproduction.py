"""``aedr reproduce``: the paper's tables from image folders, end to end on the published
architectures with random weights (the hub path is the only part a user's machine adds)."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from aedr.cli import main
from aedr.reproduction import (
    PAPER_MODELS,
    ReproductionError,
    generate_images,
    image_labels,
)

SIZE = 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory, shared_dir):
    """The authors' layout: SD1.5/ and FLUX/ hold images their (random-weight) decoders made,
    Real/ photo crops."""
    from aedr.autoencoders import create_autoencoder
    from aedr.synthesis import decoder_images, photo_crops, save_images

    root = tmp_path_factory.mktemp("imgs")
    photos = photo_crops([shared_dir / "images" / "real"], SIZE, limit=12)
    for paper_name in ("SD1.5", "FLUX"):
        autoencoder = create_autoencoder(PAPER_MODELS[paper_name], random_weights=True)
        save_images(decoder_images(autoencoder, photos[:6], 3, seed=1), root / paper_name, "")
    save_images(photos[6:9], root / "Real", "")
    return root


def test_the_tables_from_random_weight_models_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "tables"
    code = main(["reproduce", str(folders), "--random-weights", "--device", "cpu",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for title in ("Table 1", "Table 2", "Table 3"):
        assert title in printed
    assert "| model | paper (published) | aedr --paper | aedr default |" in printed
    assert (out / "tables.md").read_text() == printed
    saved = json.loads((out / "metrics.json").read_text())
    for table in ("vs_models", "vs_real"):
        rows = saved["tables"][table]
        assert set(rows) == {"sd15", "flux1"}
        for model, row in rows.items():
            for mode in ("paper", "default"):
                assert row[mode] == saved["results"][mode]["mean"][model][table]
                assert 0 <= row[mode] <= 1
                assert f"{row[mode]:.4f}" in printed
    assert saved["results"]["paper"]["statistic"] == "aedr"
    assert saved["results"]["default"]["statistic"] == "highpass"
    assert all(saved["seconds"][mode][m] > 0 for mode in ("paper", "default") for m in rows)
    # the paper's own images (odd positions) are tested against the others' and the photos
    pairwise = saved["results"]["paper"]["models"]["sd15"]["pairwise"]
    assert {row["source"] for row in pairwise} == {"flux1", "real"}


def test_folders_are_read_by_the_papers_names_or_the_registrys(tmp_path):
    for name in ("SD1.5", "sdxl", "Real"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (16, 16)).save(tmp_path / name / "a.png")
    labels = image_labels(tmp_path)
    assert sorted(set(labels.values())) == ["real", "sd15", "sdxl"]
    (tmp_path / "midjourney").mkdir()
    with pytest.raises(ReproductionError, match="folders that name no model: midjourney"):
        image_labels(tmp_path)


def test_a_folder_without_real_photos_is_refused(tmp_path, capsys):
    (tmp_path / "SDXL").mkdir()
    assert main(["reproduce", str(tmp_path), "--random-weights"]) == 2
    assert "needs a Real folder" in capsys.readouterr().err


def test_generation_cycles_the_prompts_with_one_seed_per_image(tmp_path):
    calls = []

    def pipeline(hub_id, device):
        def make(prompt, generator):
            calls.append((hub_id, prompt, generator.initial_seed()))
            return SimpleNamespace(images=[Image.new("RGB", (8, 8))])

        return make

    saved = generate_images("sd15", ["a cat", "a dog"], 3, tmp_path / "SD1.5", device="cpu",
                            seed=5, pipeline=pipeline)  # fmt: skip
    assert [p.name for p in saved] == ["000.png", "001.png", "002.png"]
    hub = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert calls == [(hub, "a cat", 5), (hub, "a dog", 6), (hub, "a cat", 7)]
    with pytest.raises(ReproductionError, match="no prompts"):
        generate_images("sd15", [], 1, tmp_path, pipeline=pipeline)


def test_generate_needs_prompts(tmp_path, capsys):
    assert main(["reproduce", str(tmp_path), "--generate", "2"]) == 2
    assert "--generate needs N of at least 1 and --prompts FILE" in capsys.readouterr().err
    code = main(["reproduce", str(tmp_path), "--generate", "2", "--prompts", str(tmp_path / "x")])
    assert code == 2 and "cannot read" in capsys.readouterr().err
