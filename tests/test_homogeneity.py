from pathlib import Path

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

from aedr.measure.homogeneity import glcm_homogeneity, homogeneity_of_file, quantize

REFERENCE_SETS = ("FLUX", "KD2.1", "Real", "SD2base", "SD3.5", "SDXL", "VQDM")


def skimage_homogeneity(gray: np.ndarray) -> float:
    matrix = graycomatrix(gray // 8, [1], [0], levels=32, symmetric=True, normed=True)
    return float(graycoprops(matrix, "homogeneity")[0, 0])


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_image_glcm(seed):
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, size=(rng.integers(2, 60), rng.integers(2, 60)), dtype=np.uint8)
    assert glcm_homogeneity(gray) == pytest.approx(skimage_homogeneity(gray), abs=1e-12)


def test_flat_and_extreme_images():
    assert glcm_homogeneity(np.full((5, 7), 200, np.uint8)) == 1.0
    stripes = np.zeros((4, 8), np.uint8)
    stripes[:, 1::2] = 255  # levels 0 and 31 alternate: weight 1 / (1 + 31^2)
    assert glcm_homogeneity(stripes) == pytest.approx(1 / (1 + 31**2))


def test_rejects_images_without_pixel_pairs():
    with pytest.raises(ValueError, match="1 pixel wide"):
        glcm_homogeneity(np.zeros((10, 1), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        glcm_homogeneity(np.zeros((4, 4, 3), np.uint8))


def test_quantize_uses_integer_division():
    assert quantize(np.array([0, 7, 8, 255], np.uint8)).tolist() == [0, 0, 1, 31]
    with pytest.raises(ValueError):
        quantize(np.zeros(3, np.uint8), levels=30)


@pytest.mark.parametrize("name", REFERENCE_SETS)
def test_reproduces_authors_glcm_values(shared_dir, reference_dir, name):
    images = sorted((shared_dir / "images" / "generated" / "aedr-samples" / name).iterdir())
    expected = np.loadtxt(reference_dir / "GLCM" / f"{name}.txt")
    ours = np.array([homogeneity_of_file(path) for path in images])
    assert len(ours) == len(expected)
    # the reference files hold 6 decimals, so 5e-7 is the rounding and 1e-6 the acceptance bound
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_homogeneity_of_file_reads_png(tmp_path: Path):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "flat.png")
    assert homogeneity_of_file(tmp_path / "flat.png") == 1.0


@pytest.mark.parametrize(
    "image",
    [np.zeros((8, 8), dtype=np.float32), np.zeros((8, 8), dtype=np.uint16), np.zeros((8, 8))],
)
def test_only_8_bit_grey_is_accepted(image):
    with pytest.raises(ValueError, match="expected an 8-bit"):
        glcm_homogeneity(image)


def test_docstring_examples():
    import doctest

    import aedr.decide.calibration
    import aedr.decide.statistics
    import aedr.measure.homogeneity

    for module in (aedr.measure.homogeneity, aedr.decide.statistics, aedr.decide.calibration):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0, module.__name__
