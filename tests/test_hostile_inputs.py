"""The hostile-input corpus: every file gets a score or a specific error, and the run goes on."""

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from aedr.measure.images import ImageError, iter_image_files, read_image


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares a huge image (a decompression bomb) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def build_corpus(folder):
    """(file name -> expected error substring, or None for a file that must be scored)."""
    rgb = Image.fromarray(smooth_image(0, (64, 64)))
    png, jpeg = encoded(rgb, "PNG"), encoded(rgb, "JPEG", quality=90)
    frames = [Image.fromarray(smooth_image(i, (64, 64))) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    webp = io.BytesIO()
    frames[0].save(webp, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    sixteen = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    files = {
        "empty.png": (b"", "empty file"),
        "page.png": (b"<html><body>hello</body></html>", "not a recognised image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "jpeg-named.png": (jpeg, None),
        "bomb.png": (png_declaring(100_000, 100_000), "over the limit"),
        "tiny.png": (encoded(Image.new("RGB", (4, 30)), "PNG"), "smaller than"),
        "strip.png": (encoded(Image.new("RGB", (500, 1)), "PNG"), "smaller than"),
        "grey.png": (encoded(rgb.convert("L"), "PNG"), None),
        "palette.png": (encoded(rgb.convert("P"), "PNG"), None),
        "rgba.png": (encoded(rgb.convert("RGBA"), "PNG"), None),
        "sixteen-bit.png": (encoded(sixteen, "PNG"), None),
        "cmyk.jpg": (encoded(rgb.convert("CMYK"), "JPEG"), None),
        "animated.gif": (gif.getvalue(), None),
        "animated.webp": (webp.getvalue(), None),
        "image.tiff": (encoded(rgb, "TIFF"), None),
        "valid.png": (png, None),
    }
    for name, (content, _) in files.items():
        (folder / name).write_bytes(content)
    (folder / "dangling.png").symlink_to(folder / "no-such-target.png")
    expected = {name: message for name, (_, message) in files.items()}
    expected["dangling.png"] = "broken symbolic link"
    undecodable = os.fsencode(folder) + b"/caf\xe9.png"
    with open(undecodable, "wb") as stream:
        stream.write(png)
    expected["caf\\xe9.png"] = None
    return expected


def test_sixteen_bit_grey_is_reduced_like_opencv(tmp_path):
    import cv2

    values = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert (image.gray == cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_GRAYSCALE)).all()
    colour = cv2.imread(str(tmp_path / "deep.png"), cv2.IMREAD_COLOR)
    assert (image.rgb == colour[..., ::-1]).all()


def test_broken_symlink_and_empty_file_are_named(tmp_path):
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="broken symbolic link"):
        read_image(tmp_path / "link.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.png"
    Image.fromarray(smooth_image(0)).save(path)
    path.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        read_image(path)


def test_folders_are_streamed(tmp_path):
    """The walk yields a folder's files before it lists the next folder: a file added to a later
    folder after the first one came out is still found, which an eager listing would miss."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for index in range(3):
            (tmp_path / folder / f"{index}.png").touch()
    walker = iter_image_files([tmp_path])
    assert next(walker).relative_to(tmp_path).as_posix() == "a/0.png"
    (tmp_path / "b" / "late.png").touch()
    rest = [p.relative_to(tmp_path).as_posix() for p in walker]
    assert rest == ["a/1.png", "a/2.png", "b/0.png", "b/1.png", "b/2.png", "b/late.png"]


def test_corpus_through_the_cli(tmp_path, tae_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = build_corpus(corpus)
    out = tmp_path / "scores.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "aedr", "score", str(corpus), "--model", "taesd",
         "--weights-dir", str(tae_dir), "--out", str(out), "-q"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # some inputs failed, the rest were scored
    with open(out) as stream:
        rows = [json.loads(line) for line in stream]
    records = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    assert set(records) == set(expected)
    for name, message in expected.items():
        record = records[name]
        if message is None:
            assert not record["error"] and record["ratio"] > 0, (name, record["error"])
        else:
            assert message in record["error"], (name, record["error"])
