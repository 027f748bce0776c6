"""What an image file says about itself: identity, format, compression and provenance metadata.

These are facts read from the file, not evidence from the autoencoders: a C2PA manifest that
names a generator is direct evidence of its own kind and is reported beside an AEDR verdict,
never blended into it. Every reader here is defensive: metadata is attacker-controlled, so a
malformed block becomes a note in ``problems``, never an exception, and every text is cut to
``MAX_TEXT`` characters.

>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> Image.new("RGB", (32, 16), (90, 120, 200)).save(buffer, "JPEG", quality=75)
>>> facts = file_facts(buffer.getvalue())
>>> facts.format, facts.width, facts.height, facts.jpeg_quality, facts.jpeg_subsampling
('JPEG', 32, 16, 75, '4:2:0')
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MAX_TEXT = 2000
"""Longest metadata text kept (PNG parameters of some generators run to many kilobytes)."""
MAX_ENTRIES = 32
"""Most PNG text chunks (and C2PA list items) kept: a file of 30,000 text chunks must not make
every record that quotes it 60 MB."""
EXIF_FIELDS = {  # tag -> label; 0x8769 is the Exif sub-IFD holding the capture dates
    0x010F: "camera make", 0x0110: "camera model", 0x0131: "software", 0x0132: "modified",
    0x013B: "artist", 0x8298: "copyright", 0x9003: "taken", 0x9004: "digitised",
    0xA434: "lens model",
}  # fmt: skip
GENERATED_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                          "algorithmicMedia", "compositeSynthetic")  # fmt: skip
"""IPTC digital source types (the end of their URIs) by which a C2PA action declares generation."""
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip
"""The JPEG standard's (Annex K) luminance table, which the IJG's quality setting scales."""


@dataclass(frozen=True)
class FileFacts:
    """Facts about one file; ``None`` where the file has no such thing."""

    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    mode: str
    jpeg_quality: int | None = None  # IJG-scale estimate from the luminance table
    jpeg_subsampling: str | None = None
    exif: dict[str, str] = field(default_factory=dict)
    png_text: dict[str, str] = field(default_factory=dict)
    icc_profile: str | None = None
    c2pa: dict[str, Any] = field(default_factory=dict)  # see ``c2pa_summary``
    # bytes after the image's end (PNG's IEND chunk, JPEG's end marker, the RIFF or BMP size):
    # not part of the picture that was scored; None for formats not checked (GIF, TIFF)
    appended_bytes: int | None = None
    problems: list[str] = field(default_factory=list)  # metadata that could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def jpeg_quality(table: Sequence[int] | np.ndarray) -> int:
    """The IJG quality (1-100) whose scaled standard luminance table is closest to ``table``.

    Compared as sorted values, so natural or zig-zag order gives the same answer; an encoder
    with its own tables gets the nearest IJG equivalent.

    >>> jpeg_quality([max(1, min(255, (v * 50 + 50) // 100)) for v in _IJG_LUMINANCE])
    75
    """
    values = np.sort(np.asarray(table, dtype=np.int64).ravel())
    if values.size != 64:
        raise ValueError(f"a JPEG quantisation table has 64 entries, not {values.size}")
    qualities = np.arange(1, 101)
    scales = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    scaled = np.clip((_IJG_LUMINANCE[None] * scales[:, None] + 50) // 100, 1, 255)
    errors = np.abs(np.sort(scaled, axis=1) - values[None]).sum(axis=1)
    return int(qualities[np.argmin(errors)])


def file_facts(data: bytes) -> FileFacts:
    """The facts of an image file given as bytes (raises ``ValueError`` if it is no image)."""
    from PIL import Image, UnidentifiedImageError

    problems: list[str] = []
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    with image:
        facts: dict[str, Any] = {
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "format": image.format or "unknown", "width": image.width, "height": image.height,
            "mode": image.mode,
        }  # fmt: skip
        if image.format == "JPEG":
            facts.update(_jpeg_facts(image, problems))
        facts["exif"] = _exif(image, problems)
        facts["png_text"] = _png_text(image, problems)
        facts["icc_profile"] = _icc_name(image.info.get("icc_profile"), problems)
    facts["c2pa"] = c2pa_summary(data, facts["format"])
    facts["appended_bytes"] = appended_bytes(data, facts["format"])
    return FileFacts(**facts, problems=problems)


def appended_bytes(data: bytes, image_format: str) -> int | None:
    """How many bytes follow the end of the image in ``data`` (a file with something hidden or
    left after it); None where the format's end is not checked or cannot be found.

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (8, 8)).save(buffer, "PNG")
    >>> appended_bytes(buffer.getvalue(), "PNG"), appended_bytes(buffer.getvalue() + b"zip", "PNG")
    (0, 3)
    """
    end = {"PNG": _png_end, "JPEG": _jpeg_end, "WEBP": _riff_end, "BMP": _bmp_end}.get(
        image_format, lambda _: None
    )(data)
    return None if end is None or end > len(data) else len(data) - end


def _png_end(data: bytes) -> int | None:
    """The offset after the IEND chunk, walking the chunks from the signature."""
    offset = 8
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length
        if kind == b"IEND":
            return offset
    return None


def _jpeg_end(data: bytes) -> int | None:
    """The offset after the end-of-image marker, walking the segments and the entropy-coded
    data (where 0xFF is followed by 0x00 or a restart marker) of every scan."""
    offset = 2  # after the start-of-image marker
    while offset + 2 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xD9:
            return offset + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            offset += 2
            continue
        if offset + 4 > len(data):
            return None
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
        if marker == 0xDA:  # a scan: its data runs to the next marker that is not escaped
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= len(data):
                    return None
                following = data[offset + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    offset += 1 if following == 0xFF else 2
                    continue
                break
    return None


def _riff_end(data: bytes) -> int | None:
    return 8 + int.from_bytes(data[4:8], "little") if len(data) >= 8 else None


def _bmp_end(data: bytes) -> int | None:
    return int.from_bytes(data[2:6], "little") if len(data) >= 6 else None


def _cut(text: str) -> str:
    text = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _jpeg_facts(image, problems: list[str]) -> dict[str, Any]:
    from PIL import JpegImagePlugin

    facts: dict[str, Any] = {}
    try:
        tables = getattr(image, "quantization", None) or {}
        if 0 in tables:
            facts["jpeg_quality"] = jpeg_quality(list(tables[0]))
        sampling = JpegImagePlugin.get_sampling(image)
        facts["jpeg_subsampling"] = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(sampling)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        problems.append(f"JPEG tables: {exc}")
    return facts


def _exif(image, problems: list[str]) -> dict[str, str]:
    try:
        exif = image.getexif()
        entries = dict(exif.items())
        entries.update(exif.get_ifd(0x8769).items())
    except Exception as exc:
        problems.append(f"EXIF: {exc}")
        return {}
    out = {}
    for tag, label in EXIF_FIELDS.items():
        value = entries.get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value not in (None, ""):
            out[label] = _cut(str(value).strip("\x00 "))
    return out


def _png_text(image, problems: list[str]) -> dict[str, str]:
    try:
        chunks = getattr(image, "text", None) or {}  # reads to the end of a PNG: may fail
    except Exception as exc:
        problems.append(f"PNG text: {exc}")
        return {}
    if len(chunks) > MAX_ENTRIES:
        problems.append(f"PNG text: {len(chunks)} chunks, the first {MAX_ENTRIES} kept")
    entries = list(chunks.items())[:MAX_ENTRIES]
    return {_cut(str(key)): _cut(str(value)) for key, value in entries}


def _icc_name(profile: bytes | None, problems: list[str]) -> str | None:
    if not profile:
        return None
    try:
        from PIL import ImageCms

        name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
        return _cut(name.strip())
    except Exception as exc:
        problems.append(f"ICC profile: {exc}")
        return None


def c2pa_summary(data: bytes, image_format: str) -> dict[str, Any]:
    """The file's C2PA manifest in a few fields, read and validated with ``c2pa-python``.

    ``status`` is ``absent``, ``present``, ``unreadable`` or ``not checked`` (c2pa-python is not
    installed, or the format is not one it reads). When present: the claim generator, the
    signer, ``generated`` (an action declares a generative-AI source type), the software agents
    named by those actions, and the validation failures (an untrusted test certificate shows
    as ``signingCredential.untrusted``: the manifest is intact, its signer unknown).
    """
    mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
            "TIFF": "image/tiff", "GIF": "image/gif"}.get(image_format)  # fmt: skip
    try:
        import c2pa
    except ImportError:
        return {"status": "not checked", "reason": "c2pa-python is not installed"}
    if mime is None:
        return {"status": "not checked", "reason": f"C2PA is not read from {image_format} files"}
    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in str(exc) or "JUMBF" in str(exc):
            return {"status": "absent"}
        return {"status": "unreadable", "reason": _cut(str(exc))}
    except (ValueError, OSError) as exc:
        return {"status": "unreadable", "reason": _cut(str(exc))}
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    actions = [
        action
        for assertion in manifest.get("assertions", [])
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in (assertion.get("data") or {}).get("actions", [])
    ]
    generative = [
        a for a in actions if str(a.get("digitalSourceType", "")).endswith(GENERATED_SOURCE_TYPES)
    ]
    agents = [
        (a.get("softwareAgent") or {}).get("name") if isinstance(a.get("softwareAgent"), dict)
        else a.get("softwareAgent") for a in generative
    ]  # fmt: skip
    signature = manifest.get("signature_info") or {}
    return {
        "status": "present",
        "claim_generator": _cut(", ".join(
            str(g.get("name", "")) for g in manifest.get("claim_generator_info", [])
        ) or str(manifest.get("claim_generator", ""))),
        "title": _cut(str(manifest.get("title", ""))),
        "signer": _cut(" / ".join(
            str(signature[k]) for k in ("common_name", "issuer") if signature.get(k)
        )),
        "signed": signature.get("time"),
        "generated": bool(generative),
        "generators": [_cut(str(a)) for a in agents if a][:MAX_ENTRIES],
        "validation_failures": [
            _cut(str(s.get("code", ""))) for s in store.get("validation_status", [])
        ][:MAX_ENTRIES],
    }  # fmt: skip
