"""aedr.measure.fileinfo: what a file says about itself, read defensively."""

import doctest
import hashlib
import io

import numpy as np
import pytest
from conftest import c2pa_signed_jpeg, smooth_image
from PIL import Image, ImageCms, PngImagePlugin

import aedr.measure.fileinfo
from aedr.measure.fileinfo import MAX_TEXT, file_facts, jpeg_quality


def encoded(rgb: np.ndarray, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, file_format, **options)
    return buffer.getvalue()


def test_docstring_examples():
    failed, tried = doctest.testmod(aedr.measure.fileinfo)
    assert tried > 0 and failed == 0


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 85, 90, 95, 100])
def test_jpeg_quality_is_read_back_from_the_files_own_tables(quality):
    data = encoded(smooth_image(0), "JPEG", quality=quality)
    facts = file_facts(data)
    assert facts.jpeg_quality == quality and facts.jpeg_subsampling == "4:2:0"
    assert file_facts(encoded(smooth_image(0), "JPEG", subsampling=0)).jpeg_subsampling == "4:4:4"
    with pytest.raises(ValueError, match="64 entries"):
        jpeg_quality([1] * 63)


def test_identity_exif_icc_and_png_text():
    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "Canon", "GIMP 2.10"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(smooth_image(1), "JPEG", exif=exif, icc_profile=profile)
    facts = file_facts(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest() and facts.bytes == len(data)
    assert (facts.width, facts.height, facts.mode) == (48, 64, "RGB")  # smooth_image: (H, W)
    assert facts.exif == {"camera make": "Canon", "software": "GIMP 2.10",
                          "taken": "2024:05:01 10:00:00"}  # fmt: skip
    assert facts.icc_profile == "sRGB built-in" and facts.problems == []
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a red fox, Steps: 30, Sampler: DPM++ 2M, Model: sdxl")
    text.add_text("long", "x" * (MAX_TEXT + 50))
    png = file_facts(encoded(smooth_image(2), "PNG", pnginfo=text))
    assert png.png_text["parameters"].endswith("Model: sdxl") and png.jpeg_quality is None
    assert len(png.png_text["long"]) == MAX_TEXT + 3 and png.exif == {}


def test_malformed_metadata_is_a_problem_noted_never_an_exception():
    broken_profile = encoded(smooth_image(3), "JPEG", icc_profile=b"not a profile" * 20)
    facts = file_facts(broken_profile)
    assert facts.icc_profile is None and any("ICC" in p for p in facts.problems)
    truncated = encoded(smooth_image(4), "PNG")[:300]
    assert file_facts(truncated).png_text == {}
    with pytest.raises(ValueError, match="not a readable image"):
        file_facts(b"<html>no image</html>")


def test_a_c2pa_manifest_declaring_a_generator_is_reported_with_its_signer():
    signed = file_facts(c2pa_signed_jpeg(smooth_image(5), "Example Diffusion 3"))
    c2pa = signed.c2pa
    assert c2pa["status"] == "present" and c2pa["generated"] is True
    assert c2pa["generators"] == ["Example Diffusion 3"]
    assert c2pa["signer"] == "aedr test signer / aedr tests"
    assert "signingCredential.untrusted" in c2pa["validation_failures"]  # a throw-away CA
    assert file_facts(encoded(smooth_image(5), "JPEG")).c2pa == {"status": "absent"}
    assert file_facts(encoded(smooth_image(5), "BMP")).c2pa["status"] == "not checked"


@pytest.mark.parametrize("file_format", ["PNG", "JPEG", "WEBP", "BMP"])
def test_data_appended_after_the_image_is_counted(file_format):
    from aedr.measure.fileinfo import appended_bytes

    buffer = io.BytesIO()
    options = {"progressive": True, "exif": Image.Exif()} if file_format == "JPEG" else {}
    Image.fromarray(smooth_image(1, (40, 56))).save(buffer, file_format, **options)
    data = buffer.getvalue()
    assert appended_bytes(data, file_format) == 0
    assert file_facts(data + b"PK\x03\x04" + bytes(996)).appended_bytes == 1000
    assert appended_bytes(data[: len(data) // 2], file_format) is None  # truncated: no end


def test_formats_whose_end_is_not_read_say_so():
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(2, (16, 16))).save(buffer, "GIF")
    assert file_facts(buffer.getvalue() + b"extra").appended_bytes is None
