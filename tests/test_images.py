import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from aedr.measure.images import (
    ImageError,
    aligned_crop,
    area_resize,
    is_grey,
    iter_image_files,
    read_image,
    resize_to,
    rounded_size,
    to_model_input,
)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_gray_matches_opencv_imread_grayscale(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(smooth_image(3, (40, 56))).save(path)
    expected = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(read_image(path).gray, expected)


def test_rgb_matches_pillow_and_shape(tmp_path):
    pixels = smooth_image(1)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    image = read_image(tmp_path / "x.png")
    np.testing.assert_array_equal(image.rgb, pixels)
    assert (image.width, image.height, image.format) == (48, 64, "PNG")


def test_grayscale_and_palette_files_are_expanded(tmp_path):
    gray = smooth_image(2)[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(smooth_image(2)).convert("P").save(tmp_path / "p.png")
    loaded = read_image(tmp_path / "g.png")
    assert loaded.rgb.shape == (64, 48, 3)
    np.testing.assert_array_equal(loaded.gray, gray)
    assert read_image(tmp_path / "p.png").rgb.shape == (64, 48, 3)


@pytest.mark.parametrize(
    ("mode", "suffix", "grey"),
    [("L", ".png", True), ("L", ".jpg", True), ("RGB", ".jpg", True), ("RGB", ".png", True),
     ("colour", ".png", False), ("colour", ".jpg", False)],
)  # fmt: skip
def test_an_image_without_colour_is_grey_however_it_is_stored(tmp_path, mode, suffix, grey):
    """A grey file, a colour file of grey pixels (a JPEG of them included); not a colour image."""
    colour = Image.fromarray(smooth_image(4))
    image = colour if mode == "colour" else colour.convert("L").convert(mode)
    image.save(tmp_path / f"x{suffix}", quality=75)
    assert read_image(tmp_path / f"x{suffix}").grey is grey
    one = np.asarray(colour.convert("L").convert("RGB")).copy()
    one[0, 0, 0] += 3  # one pixel with colour: not grey
    assert is_grey(one) is False


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([smooth_image(4), np.full((64, 48), 10, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").rgb, rgba[..., :3])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"<html><body>not an image</body></html>", "not a recognised image"),
    ],
)
def test_bad_files_raise_specific_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_png_and_missing_file(tmp_path):
    Image.fromarray(smooth_image(0, (128, 128))).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "missing.png")


def test_pixel_limit_refuses_before_decoding(tmp_path):
    Image.fromarray(smooth_image(0)).save(tmp_path / "x.png")
    with pytest.raises(ImageError, match="over the limit of 100"):
        read_image(tmp_path / "x.png", max_pixels=100)


def test_exif_orientation_is_applied_like_opencv(tmp_path):
    pixels = smooth_image(5, (40, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(pixels).save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "o.jpg")
    assert (image.width, image.height) == (40, 64)
    expected = cv2.imread(str(tmp_path / "o.jpg"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(image.gray, expected)


def test_aligned_crop_keeps_top_left_grid():
    rgb = np.arange(21 * 19 * 3, dtype=np.uint8).reshape(21, 19, 3)
    cropped = aligned_crop(rgb, 8)
    assert cropped.shape == (16, 16, 3)
    np.testing.assert_array_equal(cropped, rgb[:16, :16])
    with pytest.raises(ImageError, match="smaller than the autoencoder's size multiple 8"):
        aligned_crop(rgb[:5], 8)


def test_resize_rounds_to_nearest_multiple():
    assert rounded_size(13, 21, 8) == (16, 24) and rounded_size(3, 3, 8) == (8, 8)
    assert rounded_size(500, 324, 8) == (496, 320)  # Python's round: 62.5 -> 62, 40.5 -> 40
    rgb = np.arange(21 * 13 * 3, dtype=np.uint8).reshape(21, 13, 3)
    assert resize_to(rgb, (16, 24)).shape == (24, 16, 3)
    assert resize_to(rgb, (13, 21)) is rgb  # already that size: untouched
    bicubic, bilinear = resize_to(rgb, (16, 24), "bicubic"), resize_to(rgb, (16, 24))
    assert not np.array_equal(bicubic, bilinear)
    with pytest.raises(ValueError, match="resize filter"):
        resize_to(rgb, (16, 24), "lanczos")


@pytest.mark.parametrize("shape", [(700, 600), (300, 300), (400, 534), (1024, 572)])
def test_area_resize_is_opencvs_inter_area(shape):
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = cv2.resize(rgb, (512, 512), interpolation=cv2.INTER_AREA)
    difference = np.abs(area_resize(rgb, 512).astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.15  # OpenCV's fixed point


def test_model_input_range_and_layout():
    rgb = np.array([[[0, 128, 255]]], np.uint8)
    x = to_model_input(rgb)
    assert x.shape == (3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [-1.0, 2 * 128 / 255 - 1, 1.0], atol=1e-7)


def test_iter_image_files_walks_sorted_and_filters(tmp_path):
    for name in ["b.png", "a.JPG", "notes.txt", "z/c.webp", "y/d.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.JPG", "b.png", "y/d.png", "z/c.webp"]
    explicit = tmp_path / "notes.txt"
    assert list(iter_image_files([explicit])) == [explicit]


@pytest.mark.skipif(os.name != "posix", reason="byte file names are a POSIX feature")
def test_non_utf8_file_names_are_readable(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    Image.fromarray(smooth_image(0)).save(Path(tmp_path, name))
    (found,) = iter_image_files([tmp_path])
    assert read_image(found).width == 48
