"""The enlargement estimate: the factor of enlarged images, nothing for images left alone or shrunk,
and its use by a plain measurement (undone, said in the row, kept apart in the store)."""

import io

import numpy as np
import pytest
from PIL import Image

from aedr.decide.attribution import caution_of
from aedr.measure.degradation import describe
from aedr.measure.images import read_image
from aedr.measure.provenance import Provenance
from aedr.measure.resampling import STRENGTH, estimate_enlargement
from aedr.measure.scorer import Scorer, store_key
from aedr.measure.settings import ScoreSettings
from aedr.measure.store import ScoreStore
from aedr.synthesis import decoder_images, photo_crops


def resized(rgb: np.ndarray, factor: float, resample=Image.Resampling.BICUBIC) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(rgb).resize(size, resample))


def as_jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.fixture(scope="module")
def made(tae_dir, shared_dir):
    """Images taesd's decoder made (256 px), and the photos they were made from."""
    from aedr.autoencoders import create_autoencoder

    photos = photo_crops([shared_dir / "images" / "real"], 256)[:4]
    return decoder_images(create_autoencoder("taesd", tae_dir), photos, 4, seed=3), photos


@pytest.mark.parametrize("factor", [1.25, 1.5, 1.75, 2.0])
@pytest.mark.parametrize("resample", [Image.Resampling.BICUBIC, Image.Resampling.BILINEAR])
def test_an_enlarged_decoder_image_gets_its_factor_within_two_percent(made, factor, resample):
    for rgb in made[0]:
        found = estimate_enlargement(resized(rgb, factor, resample))
        assert found is not None and abs(found.factor / factor - 1) <= 0.02, found
        assert found.strength >= STRENGTH


@pytest.mark.parametrize("factor", [1.0, 0.5, 0.75])
def test_images_left_alone_or_shrunk_are_not_called_enlarged(made, factor):
    for rgb in [*made[0], *made[1]]:
        view = rgb if factor == 1 else resized(rgb, factor)
        assert estimate_enlargement(view) is None
        assert estimate_enlargement(as_jpeg(view, 85), jpeg=True) is None


def test_a_jpeg_skips_its_block_frequencies_and_still_finds_x1_5():
    """x1.5 peaks at a third of the sampling rate, away from the blocks' k/8; without the skip
    a JPEG's own blocks (x1.143, x1.333, x2 at k/8) would be read as enlargements."""
    noise = np.random.default_rng(2).integers(0, 256, (256, 256, 3), np.uint8)
    found = estimate_enlargement(as_jpeg(resized(noise, 1.5), 90), jpeg=True)
    assert found is not None and abs(found.factor / 1.5 - 1) <= 0.02, found
    assert estimate_enlargement(as_jpeg(noise, 50), jpeg=True) is None


def test_an_eight_pixel_grid_is_not_an_enlargement():
    """Flat 8 x 8 blocks repeat at k/8, where x2 and x1.333 would peak: no factor is named."""
    blocks = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    grid = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
    assert estimate_enlargement(grid) is None


def test_a_large_image_is_read_in_its_central_window():
    """Above LARGEST_SIDE only the centre is read (bounded cost and memory), which holds the
    same period: a 1536 x 1200 enlargement of noise is called enlarged, and not once its
    central window is replaced by noise left alone."""
    from aedr.measure.resampling import LARGEST_SIDE

    rng = np.random.default_rng(3)
    enlarged = resized(rng.integers(0, 256, (1024, 800, 3), np.uint8), 1.5)
    assert min(enlarged.shape[:2]) > LARGEST_SIDE
    assert abs(estimate_enlargement(enlarged).factor / 1.5 - 1) <= 0.02
    framed = enlarged.copy()  # enlarged all round the central window, which is left alone
    framed[256:1280, 88:1112] = rng.integers(0, 256, (1024, 1024, 3), np.uint8)
    assert estimate_enlargement(framed) is None


def test_bad_pixels_and_small_images():
    with pytest.raises(ValueError, match="uint8"):
        estimate_enlargement(np.zeros((64, 64), np.uint8))
    small = resized(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8), 1.5)
    assert estimate_enlargement(small) is None  # 48 px: too few periods
    assert estimate_enlargement(np.full((96, 96, 3), 7, np.uint8)) is None  # flat: no residue


def test_a_plain_measurement_undoes_the_enlargement_it_finds(made, tae_dir, tmp_path):
    """The default settings map an enlarged image back by the factor found, say so in the record
    and the caution, and measure it as a stated factor would; ``enlargement="off"`` does not."""
    from aedr.autoencoders import create_autoencoder

    Image.fromarray(resized(made[0][0], 1.5)).save(tmp_path / "enlarged.png")
    autoencoder = create_autoencoder("taesd", tae_dir)
    found = Scorer([autoencoder]).score_file(tmp_path / "enlarged.png")[0]
    factor = read_image(tmp_path / "enlarged.png").enlargement.factor
    stated = Scorer([autoencoder], ScoreSettings(resized_by=factor))
    plain = Scorer([autoencoder], ScoreSettings(enlargement="off"))
    assert found.degradation["resized_by"] == pytest.approx(1.5, rel=0.02)
    assert found.degradation["enlargement_strength"] >= STRENGTH
    assert found.loss1 == stated.score_file(tmp_path / "enlarged.png")[0].loss1
    assert plain.score_file(tmp_path / "enlarged.png")[0].degradation == {}
    words = describe(found.degradation)
    assert words.startswith("enlarged x1.5 (estimated from its interpolation") and "undone" in words
    assert caution_of(384, 384, found.degradation).startswith("tentative: enlarged x1.5")


def test_the_setting_keeps_library_keys_and_splits_the_store():
    """Looking for enlargements is the default and leaves provenances (library keys) as they
    were; the store keys it apart, so measurements stored before it are not reused."""
    default, off = ScoreSettings(), ScoreSettings(enlargement="off")
    assert "enlargement" not in default.recorded() and off.recorded()["enlargement"] == "off"
    assert "enlargement" not in ScoreSettings.paper().recorded()
    before = Provenance("weights:1", default, aedr_version="0.12.0")
    assert store_key(before) != before.digest()
    plain = ScoreSettings(robust="off")  # nor a grid-phase search: the key is the digest
    assert store_key(Provenance("weights:1", plain)) == Provenance("weights:1", plain).digest()
    assert not ScoreSettings(resized_by=1.5).estimates_enlargement()
    assert not ScoreSettings(robust="off").estimates_enlargement()


def test_a_measurement_stored_without_looking_is_measured_again(tmp_path, random_tiny):
    Image.fromarray(resized(np.full((64, 64, 3), 128, np.uint8), 1.5)).save(tmp_path / "a.png")
    store = ScoreStore(tmp_path / "store.sqlite")
    first = Scorer([random_tiny], store=store).score_file(tmp_path / "a.png")[0]
    provenance = first.provenance
    content = first.content_sha256
    assert store.get(content, store_key(provenance)) is not None
    assert store.get(content, provenance.digest()) is None  # where 0.12 kept it: not read
