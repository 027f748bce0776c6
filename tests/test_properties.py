"""Property tests (hypothesis) for homogeneity, the KDE threshold and the signal, and a bounded
fuzz test of the image-loading path with random and mutated bytes."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from aedr.decide.calibration import CalibrationError, kde_threshold
from aedr.decide.statistics import get_statistic
from aedr.measure.homogeneity import glcm_homogeneity
from aedr.measure.images import ImageError, read_image
from aedr.measure.reconstruction import SignalError, loss_ratio

grey_images = arrays(
    np.uint8, st.tuples(st.integers(1, 12), st.integers(2, 12)), elements=st.integers(0, 255)
)


@given(grey_images)
def test_homogeneity_lies_in_0_1_and_is_symmetric(gray):
    value = glcm_homogeneity(gray)
    assert 0.0 < value <= 1.0
    assert value == pytest.approx(glcm_homogeneity(gray[:, ::-1]))  # the GLCM is symmetric


@given(grey_images)
def test_homogeneity_is_one_exactly_for_images_without_level_changes(gray):
    flat = (gray // 8) * 8  # same levels, values within a level do not matter
    assert glcm_homogeneity(flat) == pytest.approx(glcm_homogeneity(gray))
    assert glcm_homogeneity(np.full_like(gray, gray[0, 0])) == 1.0


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=2, max_size=60), st.floats(0.01, 0.5))
def test_kde_threshold_is_within_the_grid_and_monotone_in_alpha(values, alpha):
    values = np.asarray(values)
    if values.std(ddof=1) == 0:
        with pytest.raises(CalibrationError):
            kde_threshold(values, alpha)
        return
    threshold = kde_threshold(values, alpha)
    spread = values.std(ddof=1)
    assert values.min() - spread <= threshold <= values.max() + spread
    assert kde_threshold(values, alpha / 2) >= threshold - 1e-9  # smaller alpha, higher threshold


@given(st.lists(finite, min_size=2, max_size=40), finite, st.floats(0.1, 10))
def test_kde_threshold_moves_with_shifts_and_scales(values, shift, scale):
    values = np.asarray(values)
    if values.std(ddof=1) < 1e-3:
        return
    base = kde_threshold(values, 0.05)
    assert kde_threshold(values * scale + shift, 0.05) == pytest.approx(
        base * scale + shift, rel=1e-6, abs=1e-6 * scale * (1 + abs(base))
    )


positive = st.floats(1e-12, 1e6, allow_nan=False)


@given(positive, positive, st.floats(1e-6, 1.0))
def test_signal_is_finite_positive_and_scale_free(loss1, loss2, homogeneity):
    ratio = loss_ratio(loss1, loss2)
    assert np.isfinite(ratio) and ratio > 0
    assert loss_ratio(loss1 * 7, loss2 * 7) == pytest.approx(ratio)
    record = {"loss1": loss1, "loss2": loss2, "homogeneity": homogeneity}
    assert get_statistic("aedr").value(record) <= ratio


@given(st.sampled_from([0.0, float("nan"), float("inf")]), positive)
def test_undefined_losses_are_errors_never_nan(bad, good):
    for loss1, loss2 in ((good, bad), (bad, good)):
        if bad == 0.0 and loss2 != 0.0:
            continue  # loss1 == 0 is a valid (perfect) first reconstruction
        with pytest.raises(SignalError):
            loss_ratio(loss1, loss2)


def seed_files() -> list[bytes]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    seeds = []
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = seed_files()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       st.integers(0, 10_000))  # fmt: skip
def test_fuzzed_files_give_an_image_or_an_image_error(tmp_path, seed, flips, cut):
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(data[: max(1, len(data) - cut % len(data))]))
    assert_image_or_image_error(path)


def assert_image_or_image_error(path) -> None:
    """Reading gives a well-formed image or a specific ImageError (what the pipeline turns into
    an error record); any other exception fails the test."""
    try:
        image = read_image(path, max_pixels=1_000_000)
    except ImageError as exc:
        assert str(exc)
        return
    assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3
    assert image.gray.shape == image.rgb.shape[:2]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2048))
def test_random_bytes_give_an_image_or_an_image_error(tmp_path, data):
    path = tmp_path / "random.png"
    path.write_bytes(data)
    assert_image_or_image_error(path)
